"""The legato MCP server (official ``mcp`` SDK): the journal and runs as tools.

Tools:

- ``process_thoughts``: write a journal entry (reflect after work).
- ``search_journal``, ``list_recent_entries``, ``read_journal_entry``: search and
  read the journal (search before work).
- ``list_pipelines``, ``run_pipeline``, ``get_run``: the pipelines this server
  serves, run one durably (waits for it to finish; an ``idempotency_key`` makes a
  retried call return the same run), and read a stored run.

Serve it over stdio (``legato mcp``) or streamable HTTP (:func:`mcp_http_app`,
which the gateway mounts). Tool errors (unknown pipeline, bad inputs, unknown run)
are returned to the client as tool errors with a message that names the problem.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from legato.engine import Pipeline, RunResult, Subscriber
from legato.errors import IdempotencyConflict, InputError, RunNotFound, StoreError
from legato.store import DurableRunner, Journal, RunStore

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from starlette.applications import Starlette

__all__ = ["create_mcp_server", "mcp_http_app"]

INSTRUCTIONS = """legato keeps a journal of what was learned while running AI pipelines (failures,
slow steps, provider quirks, fixes). Search it before starting work (search_journal), and
record what you learned afterwards (process_thoughts). Pipelines can be listed, run and
inspected (list_pipelines, run_pipeline, get_run)."""


def _pipeline_info(name: str, p: Pipeline) -> dict[str, Any]:
    return {
        "name": name,
        "description": p.description,
        "inputs": {
            k: {"type": d.type_name or (getattr(d.type, "__name__", None) if d.type else None), "required": d.required}
            for k, d in p.inputs.items()
        },
        "steps": list(p.steps),
    }


def _result_dict(r: RunResult) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "run_id": r.run_id,
        "pipeline": r.pipeline,
        "status": str(r.status),
        "outputs": r.result,
        "duration_s": round(r.duration_s, 6),
    }
    if not r.ok:
        doc["error"] = r.error
        doc["failed_step"] = r.failed_step
    return doc


def create_mcp_server(
    store: RunStore,
    *,
    pipelines: Mapping[str, Pipeline] | None = None,
    journal: Journal | None = None,
    runner: DurableRunner | None = None,
    name: str = "legato",
    subscribers: Sequence[Subscriber] = (),
) -> MCPServer[Any]:
    """An MCP server whose tools use ``store`` (open) and serve ``pipelines``;
    ``subscribers`` get the events of the runs its tools start (metrics, spans...)."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    from legato._version import __version__

    served = dict(pipelines or {})
    journal = journal or Journal(store)
    runner = runner or DurableRunner(store)
    server: MCPServer[Any] = MCPServer(name=name, version=__version__, instructions=INSTRUCTIONS, log_level="WARNING")

    @server.tool()
    async def process_thoughts(
        thoughts: str,
        title: str | None = None,
        tags: list[str] | None = None,
        pipeline: str | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """Record what you learned (a decision, a failure and its fix, a provider quirk) as a
        journal entry. `thoughts` is the body; `title` defaults to its first line."""
        text = thoughts.strip()
        if not text:
            raise ToolError("thoughts must not be empty")
        heading = (title or text.splitlines()[0]).strip()[:200]
        entry = await journal.add(heading, text, tags=tags or (), pipeline=pipeline, run_id=run_id, author="human")
        return entry.to_dict()

    @server.tool()
    async def search_journal(query: str, limit: int = 5, pipeline: str | None = None) -> list[dict[str, Any]]:
        """Search the journal for entries related to `query` (plain words), best first."""
        if not 1 <= limit <= 50:
            raise ToolError("limit must be between 1 and 50")
        return [e.to_dict() for e in await journal.search(query, limit=limit, pipeline=pipeline)]

    @server.tool()
    async def list_recent_entries(limit: int = 10, pipeline: str | None = None) -> list[dict[str, Any]]:
        """The newest journal entries (optionally only those about one pipeline)."""
        if not 1 <= limit <= 100:
            raise ToolError("limit must be between 1 and 100")
        return [e.to_dict() for e in await journal.recent(limit, pipeline=pipeline)]

    @server.tool()
    async def read_journal_entry(entry_id: int) -> dict[str, Any]:
        """One journal entry in full."""
        try:
            return (await journal.get(entry_id)).to_dict()
        except StoreError as exc:
            raise ToolError(str(exc)) from None

    @server.tool()
    async def list_pipelines() -> list[dict[str, Any]]:
        """The pipelines this server can run, with their inputs and steps."""
        return [_pipeline_info(n, p) for n, p in sorted(served.items())]

    @server.tool()
    async def run_pipeline(
        name: str, inputs: dict[str, Any] | None = None, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Run a pipeline durably and wait for its result. With `idempotency_key`, a retried
        call with the same inputs returns the same run instead of starting another."""
        pipeline = served.get(name)
        if pipeline is None:
            raise ToolError(f"no pipeline {name!r}; available: {', '.join(sorted(served)) or 'none'}")
        try:
            result = await runner.run(pipeline, inputs or {}, idempotency_key=idempotency_key, subscribers=subscribers)
        except (InputError, IdempotencyConflict) as exc:
            raise ToolError(str(exc)) from None
        return _result_dict(result)

    @server.tool()
    async def get_run(run_id: str) -> dict[str, Any]:
        """A stored run: status, inputs, outputs, error and each step attempt."""
        try:
            record = await store.get_run(run_id)
        except RunNotFound as exc:
            raise ToolError(str(exc)) from None
        steps = await store.steps(record.id)
        return {
            "run_id": record.id,
            "pipeline": record.pipeline,
            "status": record.status,
            "inputs": record.inputs,
            "outputs": record.outputs,
            "error": record.error,
            "failed_step": record.failed_step,
            "recoveries": record.recoveries,
            "dead_reason": record.dead_reason,
            "created_at": record.created_at,
            "finished_at": record.finished_at,
            "steps": [
                {
                    "step": s.step,
                    "attempt": s.attempt,
                    "status": s.status,
                    "duration_s": s.duration_s,
                    "error": f"{s.error_type}: {s.error}" if s.error_type else None,
                }
                for s in steps
            ],
        }

    return server


def mcp_http_app(server: MCPServer[Any], *, path: str = "/mcp") -> Starlette:
    """The streamable-HTTP ASGI app of ``server``.

    Mounted inside another app, its session manager must run for the app's lifetime:
    ``async with server.session_manager.run(): ...`` in the host's lifespan (a
    standalone app returned here runs it itself)."""
    return server.streamable_http_app(streamable_http_path=path)
