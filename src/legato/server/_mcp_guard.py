"""The gate in front of the MCP server at ``/mcp``.

Every request must carry a key with the required scope (401/403 otherwise, before
the MCP app reads anything). The key is left in the request's state, where the MCP
tools find their caller (:func:`legato.server._auth.request_principal`).

An MCP session belongs to the key that opened it: the guard remembers which key
received each ``mcp-session-id`` and answers 404 to another key presenting it, as
for a session that does not exist. The tools already answer for the key of each
request, so this is defence in depth: another key cannot read the session's
server-to-client stream or end it. Sessions live in the replica that created them
(the SDK keeps them in memory), so the table does too, bounded to ``max_sessions``.

One key holds at most ``sessions_per_key`` sessions. The SDK caps the sessions of a
replica as a whole (answering 503 beyond it), so without a cap per key one client
opening sessions in a loop would lock every other client out of ``/mcp``. When a key
at its cap opens another session, the guard ends that key's least recently used one
first (an MCP ``DELETE`` through the SDK, as if the client had ended it), so a client
that forgets to end its sessions loses only its own oldest ones, never anybody
else's, and is never locked out by sessions the SDK has already let expire.

A posted JSON-RPC message is parsed as strictly as every other body of the gateway
(:func:`legato.server._body.parse_json`: invalid UTF-8, lone surrogates, NaN and
excessive nesting are refused) before the MCP app sees it: a JSON-RPC parse error
(-32700) with HTTP 400 naming the problem and where it is, and no session is opened.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from legato.errors import LegatoError
from legato.server._auth import check_scope
from legato.server._body import InvalidBody, parse_json, replay
from legato.server._errors import GatewayError, error_response, from_exception

__all__ = ["McpGuard"]

SESSION_HEADER = "mcp-session-id"


class McpGuard:
    """ASGI wrapper: the wrapped app answers only callers whose key has ``scope``,
    and each MCP session only the key that opened it."""

    def __init__(self, app: Any, scope: str, *, max_sessions: int = 10_000, sessions_per_key: int = 16) -> None:
        self.app = app
        self.scope = scope
        self.max_sessions = max_sessions
        self.sessions_per_key = sessions_per_key
        self._owners: OrderedDict[str, str] = OrderedDict()  # session id -> key id
        self._held: dict[str, OrderedDict[str, None]] = {}  # key id -> its sessions, least recently used first

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        try:
            key = await check_scope(request, self.scope)
        except LegatoError as exc:
            await error_response(request, from_exception(exc))(scope, receive, send)
            return
        session = request.headers.get(SESSION_HEADER)
        if session is not None and self._owners.get(session, key.id) != key.id:
            refused = GatewayError(404, "not_found", "no MCP session with that id", code="session_not_found")
            await error_response(request, refused)(scope, receive, send)
            return

        async def remember(message: Any) -> None:
            if message["type"] == "http.response.start":
                for name, value in message.get("headers", ()):
                    if name.decode("latin-1").lower() == SESSION_HEADER:
                        self._remember(value.decode("latin-1"), key.id)
            await send(message)

        if session is not None:
            self._touch(session, key.id)
        if scope.get("method") == "POST":
            body = await request.body()
            try:
                parse_json(body, "the message")
            except InvalidBody as exc:
                error = {"code": -32700, "message": f"Parse error: {exc.detail}"}
                await JSONResponse({"jsonrpc": "2.0", "id": None, "error": error}, 400)(scope, receive, send)
                return
            receive = replay(body, receive)
            if session is None:
                await self._make_room(scope, key.id)
        await self.app(scope, receive, remember)
        if session is not None and scope.get("method") == "DELETE":
            self._forget(session)

    def _remember(self, session: str, key_id: str) -> None:
        self._owners.setdefault(session, key_id)
        self._touch(session, self._owners[session])
        while len(self._owners) > self.max_sessions:
            self._forget(next(iter(self._owners)))

    def _touch(self, session: str, key_id: str) -> None:
        if self._owners.get(session) != key_id:
            return
        self._owners.move_to_end(session)
        held = self._held.setdefault(key_id, OrderedDict())
        held[session] = None
        held.move_to_end(session)

    def _forget(self, session: str) -> None:
        key_id = self._owners.pop(session, None)
        if key_id is None:
            return
        held = self._held.get(key_id, OrderedDict())
        held.pop(session, None)
        if not held:
            self._held.pop(key_id, None)

    async def _make_room(self, scope: Any, key_id: str) -> None:
        """Before ``key_id`` opens a session: end its least recently used ones beyond the cap."""
        held = self._held.get(key_id)
        while held and len(held) >= self.sessions_per_key:
            oldest = next(iter(held))
            self._forget(oldest)
            await self._end(scope, oldest)
            held = self._held.get(key_id)

    async def _end(self, scope: Any, session: str) -> None:
        """End ``session`` through the SDK, as a client's ``DELETE`` would (a 404 when the
        SDK already let it expire is fine: either way it is gone)."""
        headers = [(n, v) for n, v in scope.get("headers", ()) if n.lower() in _KEPT_HEADERS]
        delete = {**scope, "method": "DELETE", "headers": [*headers, (SESSION_HEADER.encode(), session.encode())]}

        async def nothing() -> Any:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def discard(message: Any) -> None:
            return None

        await self.app(delete, nothing, discard)


_KEPT_HEADERS = (b"host", b"authorization", b"x-api-key", b"origin")
