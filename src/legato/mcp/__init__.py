"""The legato MCP server: journal and run tools for agents (stdio and streamable HTTP).

::

    from legato.mcp import create_mcp_server, mcp_http_app

    server = create_mcp_server(store, pipelines={"insights": pipeline})
    await server.run_stdio_async()          # or mount mcp_http_app(server) in an ASGI app

See docs/mcp.md.
"""

from legato.mcp._server import create_mcp_server, mcp_http_app

__all__ = ["create_mcp_server", "mcp_http_app"]
