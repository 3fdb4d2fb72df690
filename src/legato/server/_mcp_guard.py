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

    def __init__(self, app: Any, scope: str, *, max_sessions: int = 10_000) -> None:
        self.app = app
        self.scope = scope
        self.max_sessions = max_sessions
        self._owners: OrderedDict[str, str] = OrderedDict()  # session id -> key id

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

        if scope.get("method") == "POST":
            body = await request.body()
            try:
                parse_json(body, "the message")
            except InvalidBody as exc:
                error = {"code": -32700, "message": f"Parse error: {exc.detail}"}
                await JSONResponse({"jsonrpc": "2.0", "id": None, "error": error}, 400)(scope, receive, send)
                return
            receive = replay(body, receive)
        await self.app(scope, receive, remember)

    def _remember(self, session: str, key_id: str) -> None:
        self._owners.setdefault(session, key_id)
        self._owners.move_to_end(session)
        while len(self._owners) > self.max_sessions:
            self._owners.popitem(last=False)
