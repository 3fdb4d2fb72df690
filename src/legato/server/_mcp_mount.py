"""The MCP server at ``/mcp``, built when the first authorised request reaches it.

The MCP SDK and its types cost an idle gateway about 15 MB of memory and most
gateways never serve an MCP client, so :func:`legato.server._app.create_app` mounts
an :class:`McpOnDemand` behind the key check (:class:`legato.server._mcp_guard.McpGuard`)
instead of the server itself. The first request with a ``runs:write`` key wakes
:meth:`McpOnDemand.run`, a task of the app's lifespan, which builds the server and
runs its session manager until the lifespan ends; every request is then handed to
the session manager, as before. A request without a valid key never builds it.

A server that cannot be built (a broken ``mcp`` install) is logged once and every
request to ``/mcp`` gets 503 naming the cause; the rest of the gateway keeps serving.
Without a running :meth:`McpOnDemand.run` (an app served without its lifespan) a
request gets 503 at once rather than waiting for a server nobody builds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from legato.server._errors import GatewayError

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

__all__ = ["McpOnDemand"]

log = logging.getLogger("legato.server")


class McpOnDemand:
    """An ASGI endpoint whose MCP server ``build`` makes on first use.

    :meth:`run` must run for the app's lifetime (a lifespan task); requests wait for
    the server it builds."""

    def __init__(self, build: Callable[[], MCPServer[Any]]) -> None:
        self._build = build
        self._wanted = anyio.Event()
        self._ready = anyio.Event()
        self._handle: Callable[..., Any] | None = None
        self._failure: str | None = None
        self._running = False

    @property
    def built(self) -> bool:
        return self._handle is not None

    async def run(self) -> None:
        """Wait for the first request, build the server and run its session manager
        until cancelled (the end of the lifespan)."""
        self._running = True
        await self._wanted.wait()
        try:
            server = self._build()
        except Exception as exc:  # an import or construction error: /mcp answers 503, the rest serves
            log.error("the MCP server could not be built: %s: %s", type(exc).__name__, exc)
            self._failure = f"the MCP server is unavailable ({type(exc).__name__}: {exc})"
            self._ready.set()
            return
        async with server.session_manager.run():
            self._handle = server.session_manager.handle_request
            self._ready.set()
            await anyio.sleep_forever()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not self._running:  # no lifespan runs it: nothing would ever build the server
            raise GatewayError(503, "internal", "the MCP server is not running", code="mcp_unavailable")
        self._wanted.set()
        await self._ready.wait()
        if self._handle is None:
            message = self._failure or "the MCP server is not running"
            raise GatewayError(503, "internal", message, code="mcp_unavailable")
        await self._handle(scope, receive, send)
