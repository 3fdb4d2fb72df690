"""Tools of MCP servers, for agents: an MCP client on the official ``mcp`` SDK.

Servers are declared in ``legato.yaml``, each with the tools agents may call listed
explicitly (a tool the server offers but the list omits is never shown to a model)::

    mcp_servers:
      time:                                   # stdio: legato starts the command
        command: mcp-server-time
        args: ["--local-timezone", "UTC"]
        env: {TZ: UTC}                        # values may be env:NAME
        tools: [get_current_time, convert_time]
      search:                                 # streamable HTTP
        url: https://mcp.example.com/mcp
        headers: {Authorization: env:SEARCH_MCP_TOKEN}
        tools: [search]
        timeout: 20                           # seconds per call (default 30)

An agent step lists ``mcp:SERVER/TOOL``; :class:`McpToolbox` connects to the servers
it needs when the step starts (``mcp.Client`` spawns a stdio server as a child
process or opens a streamable HTTP session), checks that each listed tool exists,
and disconnects (stopping the child process) when the step ends. A tool result
with ``isError`` is the tool's failure (the agent sends it back to the model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

from legato.agents._tools import AgentTool
from legato.config import LegatoConfig
from legato.errors import AgentError, ConfigError, ToolFailed
from legato.providers import Tool

if TYPE_CHECKING:
    from mcp import Client

__all__ = ["McpServerConfig", "McpTool", "McpToolbox", "check_servers", "mcp_servers"]


class McpServerConfig(BaseModel):
    """One MCP server: ``command`` (stdio) or ``url`` (streamable HTTP), and its allowed tools."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] | None = None
    cwd: str | None = None
    url: str | None = Field(default=None, pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    tools: list[str] = Field(min_length=1)
    timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either 'command' (a stdio server) or 'url' (a streamable HTTP server)")
        return self


class _Servers(RootModel[dict[str, McpServerConfig]]):
    root: dict[str, McpServerConfig] = Field(default_factory=dict)


def mcp_servers(config: LegatoConfig) -> dict[str, McpServerConfig]:
    """The ``mcp_servers`` section of ``legato.yaml`` (validated; ``env:NAME`` resolved)."""
    return config.section("mcp_servers", _Servers).root


def check_servers(config: LegatoConfig, wanted: Mapping[str, Sequence[str]]) -> None:
    """Raise :class:`ConfigError` unless every server is declared and allows each tool."""
    from legato.expressions import closest

    declared = mcp_servers(config)
    for server, tools in wanted.items():
        found = declared.get(server)
        if found is None:
            hint = closest(server, list(declared))
            raise ConfigError(
                f"no MCP server {server!r} in the mcp_servers section of legato.yaml"
                + (f" (did you mean {hint!r}?)" if hint else "")
            )
        for tool in tools:
            if tool not in found.tools:
                raise ConfigError(
                    f"tool {tool!r} of MCP server {server!r} is not allowed: add it to mcp_servers.{server}.tools "
                    f"(allowed: {', '.join(found.tools)})"
                )


class McpTool(AgentTool):
    """One tool of a connected MCP server."""

    def __init__(self, client: Client, server: str, spec: Tool, timeout: float) -> None:
        self.client = client
        self.server = server
        self.spec = spec
        self.timeout = timeout

    async def invoke(self, arguments: dict[str, Any]) -> Any:
        from mcp_types import TextContent

        result = await self.client.call_tool(self.name, arguments, read_timeout_seconds=self.timeout)
        text = "\n".join(block.text for block in result.content if isinstance(block, TextContent))
        if result.is_error:
            raise ToolFailed(text or "the MCP server reported an error", tool=self.name)
        if result.structured_content is not None:
            return result.structured_content
        return text


class McpToolbox:
    """The MCP tools one agent run uses, connected for the duration of ``async with``."""

    def __init__(self, servers: Mapping[str, McpServerConfig], wanted: Mapping[str, Sequence[str]]) -> None:
        self.servers = dict(servers)
        self.wanted = {k: list(v) for k, v in wanted.items()}
        self.tools: list[McpTool] = []
        self._stack: AsyncExitStack | None = None

    @classmethod
    def from_config(cls, config: LegatoConfig, wanted: Mapping[str, Sequence[str]]) -> McpToolbox:
        if not wanted:
            return cls({}, {})
        check_servers(config, wanted)
        declared = mcp_servers(config)
        servers = {name: _resolve_cwd(declared[name], config) for name in wanted}
        return cls(servers, wanted)

    async def __aenter__(self) -> McpToolbox:
        stack = AsyncExitStack()
        try:
            for name, tools in self.wanted.items():
                client = await self._connect(stack, name, self.servers[name])
                self.tools.extend(await _tools_of(client, name, tools, self.servers[name].timeout))
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(self, *exc: object) -> None:
        stack, self._stack = self._stack, None
        self.tools = []
        if stack is not None:
            await stack.aclose()

    @staticmethod
    async def _connect(stack: AsyncExitStack, name: str, server: McpServerConfig) -> Client:
        from mcp.client.stdio import StdioServerParameters

        from mcp import Client

        target: Any
        if server.command is not None:
            target = StdioServerParameters(command=server.command, args=server.args, env=server.env, cwd=server.cwd)
        else:
            assert server.url is not None
            target = await _http_transport(stack, server)
        client = Client(target, read_timeout_seconds=server.timeout)
        try:
            return await stack.enter_async_context(client)
        except Exception as exc:
            where = server.command or server.url
            raise AgentError(
                f"MCP server {name!r} ({where}) could not be reached: {type(exc).__name__}: {exc}"
            ) from exc


async def _http_transport(stack: AsyncExitStack, server: McpServerConfig) -> Any:
    if not server.headers:
        return server.url
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    assert server.url is not None
    http = await stack.enter_async_context(httpx2.AsyncClient(headers=server.headers, timeout=server.timeout))
    return streamable_http_client(server.url, http_client=http)


async def _tools_of(client: Client, server: str, wanted: Sequence[str], timeout: float) -> list[McpTool]:
    offered: dict[str, Any] = {}
    cursor: str | None = None
    for _ in range(100):  # pages; a server that never stops paging cannot hang the step
        listing = await client.list_tools(cursor=cursor)
        offered.update((t.name, t) for t in listing.tools)
        cursor = listing.next_cursor
        if not cursor:
            break
    missing = [t for t in wanted if t not in offered]
    if missing:
        raise AgentError(
            f"MCP server {server!r} has no tool {missing[0]!r} (it offers: {', '.join(sorted(offered)) or 'none'})"
        )
    tools = []
    for name in wanted:
        remote = offered[name]
        spec = Tool(name=name, description=remote.description, parameters=dict(remote.input_schema))
        tools.append(McpTool(client, server, spec, timeout))
    return tools


def _resolve_cwd(server: McpServerConfig, config: LegatoConfig) -> McpServerConfig:
    if server.cwd is None:
        return server
    return server.model_copy(update={"cwd": str(config.base_dir / server.cwd)})
