"""The MCP tools, each answering for the caller that invoked it.

Every tool resolves its caller first (``identify`` maps the transport's request to
a :class:`legato.store.Principal`; on stdio there is no request and the caller is
the single local owner) and then reads through the store's ownership rule: runs
via :func:`legato.store.visible_run`, journal entries with ``viewer=``. A run
``run_pipeline`` starts and an entry ``process_thoughts`` writes belong to the
caller's tenant. Another tenant's run or entry is reported exactly like an id that
does not exist.

This module imports the ``mcp`` SDK at the top (the SDK reads each tool's
``Context`` annotation from the module globals); :mod:`legato.mcp._server`
imports it only when a server is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from legato.engine import Pipeline, Subscriber
from legato.errors import IdempotencyConflict, InputError, InvalidAnswer, RunNotFound, StepNotWaiting, StoreError
from legato.store import LOCAL, DurableRunner, Journal, Principal, RunRecord, RunStore, visible_run

__all__ = ["Identify", "register_tools"]

Identify = Callable[[Any], "Principal | None"]
"""The transport request carrying a tool call (None on stdio) -> its caller, or None when unknown."""


def local_owner(request: Any) -> Principal:
    """Every caller is the local owner: stdio, or an HTTP app the embedding application guards itself."""
    return LOCAL


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


def _step_dict(s: Any) -> dict[str, Any]:
    return {
        "step": s.step,
        "attempt": s.attempt,
        "status": s.status,
        "duration_s": s.duration_s,
        "error": f"{s.error_type}: {s.error}" if s.error_type else None,
    }


def _run_summary(r: RunRecord) -> dict[str, Any]:
    return {
        "run_id": r.id,
        "pipeline": r.pipeline,
        "status": r.status,
        "error": r.error,
        "tags": list(r.tags),
        "cost_usd": r.cost,
        "priority": r.priority,
        "created_at": r.created_at,
        "finished_at": r.finished_at,
    }


class Tools:
    """The tools' shared parts: the store, the journal, the runner, the served pipelines."""

    def __init__(
        self,
        store: RunStore,
        journal: Journal,
        runner: DurableRunner,
        pipelines: Mapping[str, Pipeline],
        subscribers: Sequence[Subscriber],
        identify: Identify,
    ) -> None:
        self.store = store
        self.journal = journal
        self.runner = runner
        self.pipelines = dict(pipelines)
        self.subscribers = list(subscribers)
        self.identify = identify

    def caller(self, ctx: Context) -> Principal:
        try:
            request = ctx.request_context.request
        except ValueError:  # called in-process, outside of any transport request
            request = None
        principal = self.identify(request)
        if principal is None:
            raise ToolError("this server could not tell who is calling: send the request with your API key")
        return principal

    async def run(self, ctx: Context, run_id: str) -> dict[str, Any]:
        try:
            record = await visible_run(self.store, self.caller(ctx), run_id)
        except RunNotFound as exc:
            raise ToolError(str(exc)) from None
        steps = await self.store.steps(record.id)
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
            "steps": [_step_dict(s) for s in steps],
        }

    async def runs(self, ctx: Context, filters: dict[str, Any]) -> dict[str, Any]:
        """A page of the runs the caller may see, filtered as ``GET /v1/runs`` is (the same
        reading of the same parameters, the same ownership rule)."""
        from legato.store import QueryError, next_cursor, run_query

        viewer = self.caller(ctx)
        try:
            query = run_query(filters, tenant=viewer.tenant_filter, strict=True, default_limit=20)
        except QueryError as exc:
            raise ToolError(str(exc)) from None
        page = await self.store.list_runs(
            query.where, limit=query.limit + 1, oldest_first=query.oldest_first, cursor=query.cursor
        )
        return {"runs": [_run_summary(r) for r in page[: query.limit]], "next_cursor": next_cursor(page, query.limit)}

    async def start(
        self, ctx: Context, name: str, inputs: dict[str, Any] | None, idempotency_key: str | None
    ) -> dict[str, Any]:
        caller = self.caller(ctx)
        pipeline = self.pipelines.get(name)
        if pipeline is None:
            raise ToolError(f"no pipeline {name!r}; available: {', '.join(sorted(self.pipelines)) or 'none'}")
        try:
            result = await self.runner.run(
                pipeline,
                inputs or {},
                idempotency_key=idempotency_key,
                tenant=caller.tenant,
                subscribers=self.subscribers,
            )
        except (InputError, IdempotencyConflict) as exc:
            raise ToolError(str(exc)) from None
        return result.to_dict()

    async def respond(self, ctx: Context, run_id: str, step: str, approved: bool | None, value: Any) -> dict[str, Any]:
        """Answer a waiting step of a run the caller may see; resume the run here when
        this server serves its pipeline (else it stays pending for one that does)."""
        from legato.store import respond

        if (approved is None) == (value is None):
            raise ToolError("give exactly one of approved (true or false) or value")
        try:
            record = await visible_run(self.store, self.caller(ctx), run_id)
            caller = self.caller(ctx)
            record = await respond(
                self.store, record.id, step, approved if approved is not None else value, by=f"MCP {caller.tenant}"
            )
        except (RunNotFound, InvalidAnswer, StepNotWaiting) as exc:
            raise ToolError(str(exc)) from None
        pipeline = self.pipelines.get(record.pipeline)
        if pipeline is None:
            return await self.run(ctx, record.id)
        try:
            result = await self.runner.resume(pipeline, record.id, subscribers=self.subscribers)
        except StoreError as exc:  # another worker took it at the same moment
            raise ToolError(f"answered; resuming here failed: {exc}") from None
        return result.to_dict()

    async def write(
        self, ctx: Context, thoughts: str, title: str | None, tags: list[str] | None, pipeline: str | None,
        run_id: str | None,
    ) -> dict[str, Any]:  # fmt: skip
        caller = self.caller(ctx)
        text = thoughts.strip()
        if not text:
            raise ToolError("thoughts must not be empty")
        if run_id is not None:  # an entry about a run may only name a run its author can see
            try:
                run_id = (await visible_run(self.store, caller, run_id)).id
            except RunNotFound as exc:
                raise ToolError(str(exc)) from None
        heading = (title or text.splitlines()[0]).strip()[:200]
        entry = await self.journal.add(
            heading, text, tags=tags or (), pipeline=pipeline, run_id=run_id, author="human", owner=caller.tenant
        )
        return entry.to_dict()

    async def analyze(self, ctx: Context, name: str, last: int, volume: str) -> dict[str, Any]:
        from legato.observe import analyze_runs, build_options, parse_volume, step_shapes

        pipeline = self.pipelines.get(name)
        if pipeline is None:
            raise ToolError(f"no pipeline {name!r}; available: {', '.join(sorted(self.pipelines)) or 'none'}")
        if not 1 <= last <= 10_000:
            raise ToolError(f"last must be between 1 and 10000, got {last}")
        try:
            per_month = parse_volume(volume)
        except ValueError as exc:
            raise ToolError(str(exc)) from None
        viewer = self.caller(ctx)  # only the caller's own runs (every tenant's for an admin)
        records = await self.store.list_runs(pipeline=name, tenant=viewer.tenant_filter, limit=last)
        runs = [(r, await self.store.steps(r.id)) for r in records]
        shapes = step_shapes(pipeline)
        graph = {n: list(s.deps) for n, s in shapes.items()}
        analysis = analyze_runs(name, runs, graph, shapes=shapes)
        report = build_options(analysis, runs, graph, shapes, volume_per_month=per_month) if runs else None
        return {"analysis": analysis.to_dict(), "options": report.to_dict() if report is not None else None}

    async def entry(self, ctx: Context, entry_id: int) -> dict[str, Any]:
        try:
            return (await self.journal.get(entry_id, viewer=self.caller(ctx))).to_dict()
        except StoreError as exc:
            raise ToolError(str(exc)) from None


def register_tools(server: MCPServer[Any], tools: Tools) -> None:
    """Add the journal and run tools to ``server``."""

    @server.tool()
    async def process_thoughts(
        ctx: Context,
        thoughts: str,
        title: str | None = None,
        tags: list[str] | None = None,
        pipeline: str | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """Record what you learned (a decision, a failure and its fix, a provider quirk) as a
        journal entry. `thoughts` is the body; `title` defaults to its first line."""
        return await tools.write(ctx, thoughts, title, tags, pipeline, run_id)

    @server.tool()
    async def search_journal(
        ctx: Context, query: str, limit: int = 5, pipeline: str | None = None
    ) -> list[dict[str, Any]]:
        """Search the journal for entries related to `query` (plain words), best first."""
        if not 1 <= limit <= 50:
            raise ToolError("limit must be between 1 and 50")
        found = await tools.journal.search(query, limit=limit, pipeline=pipeline, viewer=tools.caller(ctx))
        return [e.to_dict() for e in found]

    @server.tool()
    async def list_recent_entries(ctx: Context, limit: int = 10, pipeline: str | None = None) -> list[dict[str, Any]]:
        """The newest journal entries (optionally only those about one pipeline)."""
        if not 1 <= limit <= 100:
            raise ToolError("limit must be between 1 and 100")
        return [e.to_dict() for e in await tools.journal.recent(limit, pipeline=pipeline, viewer=tools.caller(ctx))]

    @server.tool()
    async def read_journal_entry(ctx: Context, entry_id: int) -> dict[str, Any]:
        """One journal entry in full."""
        return await tools.entry(ctx, entry_id)

    @server.tool()
    async def list_pipelines() -> list[dict[str, Any]]:
        """The pipelines this server can run, with their inputs and steps."""
        return [_pipeline_info(n, p) for n, p in sorted(tools.pipelines.items())]

    @server.tool()
    async def run_pipeline(
        ctx: Context, name: str, inputs: dict[str, Any] | None = None, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Run a pipeline durably and wait for its result. With `idempotency_key`, a retried
        call with the same inputs returns the same run instead of starting another."""
        return await tools.start(ctx, name, inputs, idempotency_key)

    @server.tool()
    async def respond_to_run(
        ctx: Context, run_id: str, step: str, approved: bool | None = None, value: Any = None
    ) -> dict[str, Any]:
        """Answer a run paused on a wait step: `approved` (true/false) for an approval,
        or `value` (JSON valid against the step's schema) for a question. The run resumes."""
        return await tools.respond(ctx, run_id, step, approved, value)

    @server.tool()
    async def analyze_pipeline(ctx: Context, name: str, last: int = 50, volume: str = "100000/month") -> dict[str, Any]:
        """Where a served pipeline's time and money go (per step, critical path, advice) and
        its options: alternatives with predicted p50/p95, success rate and cost per run and
        per month at `volume`, each with its risk and YAML change, from your last `last` runs."""
        return await tools.analyze(ctx, name, last, volume)

    @server.tool()
    async def list_runs(
        ctx: Context,
        q: str | None = None,
        status: str | None = None,
        pipeline: str | None = None,
        tags: list[str] | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Your runs, newest first: `q` searches inputs, outputs and errors (or a run id
        prefix); `status`, `pipeline`, `tags` (all must match) and `since`/`until`
        (YYYY-MM-DD, UTC) narrow them; `limit` 1-500. Pass the `next_cursor` of a page
        as `cursor` for the next one (null: the last page)."""
        filters = {"q": q, "status": status, "pipeline": pipeline, "tags": ",".join(tags) if tags else None,
                   "since": since, "until": until, "limit": limit, "cursor": cursor}  # fmt: skip
        return await tools.runs(ctx, filters)

    @server.tool()
    async def get_run(ctx: Context, run_id: str) -> dict[str, Any]:
        """A stored run: status, inputs, outputs, error and each step attempt."""
        return await tools.run(ctx, run_id)
