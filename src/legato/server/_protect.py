"""Overload and body-size protection, as one small ASGI middleware.

- Bounded in-flight work: at most ``max_in_flight`` requests are served at once
  (a streamed response counts until its last byte). One more is answered at once
  with 429 and ``Retry-After`` instead of queueing until everything collapses.
- Body size: a ``Content-Length`` over ``max_body_bytes`` is answered 413 before
  the body is read; a chunked body is counted as it arrives and cut off at the limit.
- Draining: once :meth:`Protection.drain` is called (SIGTERM), new requests get 503
  with ``Connection: close`` while those in flight finish.

Health and metrics endpoints are exempt, so a busy replica still answers its probes.
A pure ASGI class rather than Starlette's ``BaseHTTPMiddleware``: it costs a few
microseconds and does not buffer streams.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from legato.server._errors import GatewayError, render_error, wants_anthropic

__all__ = ["BodyTooLarge", "Load", "Protection", "body_too_large"]

EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})


def body_too_large(limit: int) -> GatewayError:
    return GatewayError(413, "too_large", f"request body exceeds {limit} bytes", code="request_too_large")


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit. An HTTPException
    so that FastAPI's body reader lets it through rather than calling it a parse error."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")


class Load:
    """Shared by the middleware, ``/readyz`` and the shutdown path of ``legato serve``."""

    def __init__(self, *, max_in_flight: int, max_body_bytes: int) -> None:
        self.max_in_flight = max_in_flight
        self.max_body_bytes = max_body_bytes
        self.in_flight = 0
        self.draining = False

    def drain(self) -> None:
        """Refuse new requests from now on (those in flight finish)."""
        self.draining = True


class Protection:
    def __init__(self, app: ASGIApp, *, load: Load) -> None:
        self.app = app
        self.load = load

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        load = self.load
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        anthropic = wants_anthropic(scope["path"], headers)
        if load.draining:
            err = GatewayError(
                503, "overloaded", "the server is shutting down", headers={"Connection": "close", "Retry-After": "1"}
            )
            await render_error(err, anthropic)(scope, receive, send)
            return
        if load.in_flight >= load.max_in_flight:
            err = GatewayError(
                429,
                "rate_limit",
                f"the server is at capacity ({load.max_in_flight} requests in flight); retry shortly",
                code="server_overloaded",
                headers={"Retry-After": "1"},
            )
            await render_error(err, anthropic)(scope, receive, send)
            return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > load.max_body_bytes:
            await render_error(body_too_large(load.max_body_bytes), anthropic)(scope, receive, send)
            return
        load.in_flight += 1
        try:
            await self.app(scope, self._counting(receive), send)
        finally:
            load.in_flight -= 1

    def _counting(self, receive: Receive) -> Receive:
        seen = 0
        limit = self.load.max_body_bytes

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        return wrapped
