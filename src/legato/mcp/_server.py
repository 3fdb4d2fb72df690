"""The legato MCP server (official ``mcp`` SDK): the journal and runs as tools.

Tools:

- ``process_thoughts``: write a journal entry (reflect after work).
- ``search_journal``, ``list_recent_entries``, ``read_journal_entry``: search and
  read the journal (search before work).
- ``list_pipelines``, ``run_pipeline``, ``get_run``: the pipelines this server
  serves, run one durably (waits for it to finish; an ``idempotency_key`` makes a
  retried call return the same run), and read a stored run.

Serve it over stdio (``legato mcp``) or streamable HTTP (:func:`mcp_http_app`,
which the gateway mounts). Every tool answers for its caller (see
:mod:`legato.mcp._tools`): over the gateway's ``/mcp`` that is the API key of the
request, on stdio the single local owner. Tool errors (unknown pipeline, bad inputs, unknown run)
are returned to the client as tool errors with a message that names the problem.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from legato.engine import Pipeline, Subscriber
from legato.store import DurableRunner, Journal, RunStore

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from starlette.applications import Starlette

    from legato.mcp._tools import Identify

__all__ = ["create_mcp_server", "mcp_http_app"]

INSTRUCTIONS = """legato keeps a journal of what was learned while running AI pipelines (failures,
slow steps, provider quirks, fixes). Search it before starting work (search_journal), and
record what you learned afterwards (process_thoughts). Pipelines can be listed, run and
inspected (list_pipelines, run_pipeline, get_run)."""


def create_mcp_server(
    store: RunStore,
    *,
    pipelines: Mapping[str, Pipeline] | None = None,
    journal: Journal | None = None,
    runner: DurableRunner | None = None,
    name: str = "legato",
    subscribers: Sequence[Subscriber] = (),
    identify: Identify | None = None,
) -> MCPServer[Any]:
    """An MCP server whose tools use ``store`` (open) and serve ``pipelines``;
    ``subscribers`` get the events of the runs its tools start (metrics, spans...).

    ``identify`` maps the request carrying a tool call to its caller
    (:class:`legato.store.Principal`; None: unknown, the call is refused). Without it
    every caller is the local owner, who sees every run and entry: right for stdio,
    and for an HTTP app the embedding application guards itself."""
    from mcp.server.mcpserver import MCPServer

    from legato._version import __version__
    from legato.mcp._tools import Tools, local_owner, register_tools

    journal = journal or Journal(store)
    runner = runner or DurableRunner(store)
    server: MCPServer[Any] = MCPServer(name=name, version=__version__, instructions=INSTRUCTIONS, log_level="WARNING")
    tools = Tools(store, journal, runner, pipelines or {}, subscribers, identify or local_owner)
    register_tools(server, tools)
    return server


def mcp_http_app(server: MCPServer[Any], *, path: str = "/mcp") -> Starlette:
    """The streamable-HTTP ASGI app of ``server``.

    Mounted inside another app, its session manager must run for the app's lifetime:
    ``async with server.session_manager.run(): ...`` in the host's lifespan (a
    standalone app returned here runs it itself)."""
    return server.streamable_http_app(streamable_http_path=path)
