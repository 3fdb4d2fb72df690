"""Runs API: start pipelines, list and read runs, follow their events, cancel them.

Runs execute durably (:class:`legato.store.DurableRunner`) in the gateway's task
group: ``POST /v1/pipelines/{name}/runs`` records the run, answers 202 with its id
and executes it in the background. A run with a ``queue`` (the body's, or the
queue whose ``pipelines:`` in ``legato.yaml`` names it) is enqueued instead, for
``legato worker`` to execute; a gateway started with ``--no-execute`` enqueues
every run (on ``default`` when nothing names a queue) and executes none. An ``Idempotency-Key`` already used by the same
key for the same request returns the existing run (200), for a different request
409. Every read comes from the store, so any replica answers for any run, and
``/events`` replays what is stored and then follows new events live (SSE, resumable
with ``Last-Event-ID``).

``POST /v1/runs/{id}/steps/{step}/respond`` answers a run paused on a wait step
(``{"approved": true}`` or ``{"value": ...}``): a bad answer is a 400 naming the
problem, a step that is not waiting a 409; the replica that takes the answer resumes
the run. ``POST /v1/runs/{id}/rerun`` (``{"from": STEP, "inputs": {...}}``) starts a
new run linked to it (``rerun_of``) that keeps the stored outputs of the steps STEP
does not affect and runs STEP and its downstream again. ``POST /v1/runs/{id}/resume``
resumes a run whose worker died or whose lease expired (``running`` with nobody
holding it) from its last checkpoint on this replica; any other run is a 409
``run_not_interrupted``.
Runs belong to the API key that started them (the store's ``tenant``): a key sees
its own runs, a key with the ``admin`` scope sees all (:func:`legato.store.visible_run`,
the same rule as the MCP tools and the dashboard). Another key's run is a 404, like
an id that does not exist. ``{run_id}`` may be a unique prefix of the id; a prefix
that matches several of the key's runs is a 409 ``ambiguous_run_id`` naming them
(never another key's runs). At start-up the runs whose
worker died (lease expired) are taken over; on SIGTERM the runs in flight get
``drain_timeout_s`` to finish and are then cancelled with their lease released, so
another replica resumes them from their last checkpoint: no run is left half-recorded.

Pipelines come from the ``pipelines:`` section of ``legato.yaml``: a mapping
``name: path``, a list of files or directories, or one directory of ``*.yaml``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
from anyio.abc import TaskGroup
from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import ConfigDict, Field, StringConstraints
from starlette.responses import Response, StreamingResponse

from legato.config import LegatoConfig
from legato.errors import (
    AmbiguousRunId,
    ConfigError,
    IdempotencyConflict,
    InputError,
    InvalidAnswer,
    RunNotFound,
    SpecError,
    StepNotWaiting,
    StoreError,
)
from legato.server._auth import principal_of, require
from legato.server._body import StrictJSONRoute, WireModel
from legato.server._errors import GatewayError
from legato.server._gateway import _ERRORS, gateway, json_response
from legato.server._keys import ApiKey
from legato.server._token_feed import TokenFeeds

if TYPE_CHECKING:
    from legato.engine import Pipeline, RunControl, Subscriber
    from legato.store import QueuesSection, RunRecord, RunStore, SchedulesSection, ScheduleState, ScheduleView

__all__ = ["RunsService", "load_pipelines", "router", "runs_service"]

log = logging.getLogger("legato.server")
router = APIRouter(route_class=StrictJSONRoute, tags=["Runs"], responses=_ERRORS)
_TAG = r"[A-Za-z0-9_.:/@+-]{1,64}"  # a run's tag (legato.store._search.check_tags)


def _pipeline_files(raw: Any, base: Path) -> dict[str | None, Path]:
    """``{declared name or None: file}`` from the ``pipelines:`` section."""
    if raw is None:
        return {}
    if isinstance(raw, str):
        raw = [raw]
    files: dict[str | None, Path] = {}
    if isinstance(raw, Mapping):
        for name, path in raw.items():
            files[str(name)] = base / str(path)
        return files
    if not isinstance(raw, list):
        raise ConfigError("pipelines: expected a mapping of name: path, a list of paths, or a directory")
    for i, entry in enumerate(raw):
        path = base / str(entry)
        if path.is_dir():
            for f in sorted([*path.glob("*.yaml"), *path.glob("*.yml")]):
                files[f"#{i}:{f.name}"] = f
        else:
            files[f"#{i}"] = path
    return files


def load_pipelines(config: LegatoConfig) -> dict[str, Pipeline]:
    """Load every pipeline of the ``pipelines:`` section; :class:`ConfigError` names the bad one."""
    from legato.spec import load_pipeline

    pipelines: dict[str, Pipeline] = {}
    for declared, path in _pipeline_files(config.raw("pipelines"), config.base_dir).items():
        if not path.exists():
            raise ConfigError(f"pipelines: file not found: {path}")
        try:
            pipeline = load_pipeline(path, config=config)
        except SpecError as exc:
            raise ConfigError(f"pipelines: {path} is invalid:\n{exc}") from exc
        name = declared if declared is not None and not declared.startswith("#") else pipeline.name
        pipelines[name] = pipeline
    return pipelines


class RunsService:
    """Starts, follows and cancels runs; owns the background run tasks."""

    def __init__(
        self,
        store: RunStore,
        pipelines: Mapping[str, Pipeline],
        *,
        poll_s: float = 0.25,
        subscribers: list[Subscriber] | None = None,
        execute: bool = True,
        queues: QueuesSection | None = None,
        schedules: SchedulesSection | None = None,
    ) -> None:
        from legato.store import DurableRunner, QueuesSection, SchedulesSection

        self.execute = execute
        self.queues = queues if queues is not None else QueuesSection()
        self.schedules = schedules if schedules is not None else SchedulesSection()
        self.store = store
        self.subscribers = list(subscribers or [])
        self.pipelines = dict(pipelines)
        self.runner = DurableRunner(store)
        self.poll_s = poll_s
        self._tg: TaskGroup | None = None
        self._controls: dict[str, RunControl] = {}
        self.accepting = True
        self._idle: anyio.Event | None = None
        self.tokens = TokenFeeds()

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the run tasks until cancelled; take over orphaned runs first."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            if self.pipelines and self.execute:
                tg.start_soon(self._recover)
            await anyio.sleep_forever()

    async def _recover(self) -> None:
        from legato.store import recover_expired_runs

        try:
            outcomes = await recover_expired_runs(
                self.store, self.pipelines.get, runner=self.runner, subscribers=self.subscribers
            )
        except Exception:
            log.exception("recovering orphaned runs failed")
            return
        for o in outcomes:
            log.info("recovered run %s of %s: %s %s", o.run_id, o.pipeline, o.action, o.detail)

    async def drain(self, deadline_s: float) -> None:
        """Stop taking runs; wait up to ``deadline_s`` for those in flight, then stop them.

        Stopped runs are not marked cancelled: their tasks are cancelled, the runner
        releases their leases, and they stay resumable from their last checkpoint."""
        self.accepting = False
        with anyio.move_on_after(deadline_s):
            while self._controls:
                self._idle = anyio.Event()
                await self._idle.wait()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def pipeline(self, name: str) -> Pipeline:
        pipeline = self.pipelines.get(name)
        if pipeline is None:
            known = ", ".join(sorted(self.pipelines)) or "none"
            raise GatewayError(404, "not_found", f"no pipeline {name!r} (served: {known})", code="pipeline_not_found")
        return pipeline

    def queue_for(self, name: str, queue: str | None) -> str | None:
        """Where a run of pipeline ``name`` is enqueued (None: executed here)."""
        from legato.store import default_queue

        chosen = queue or default_queue(self.queues, name)
        return chosen if chosen is not None or self.execute else "default"

    async def start(
        self,
        name: str,
        inputs: dict[str, Any],
        *,
        tenant: str,
        idempotency_key: str | None,
        stream: bool = False,
        queue: str | None = None,
        tags: Sequence[str] = (),
        priority: int = 0,
        subject: str | None = None,
    ) -> tuple[RunRecord, bool]:
        from legato.store import NewRun, pipeline_version

        if not self.accepting or self._tg is None:
            raise GatewayError(503, "overloaded", "the server is shutting down", headers={"Retry-After": "1"})
        pipeline = self.pipeline(name)
        queue = self.queue_for(name, queue)
        if priority and queue is None:
            raise GatewayError(
                400, "invalid_request", "priority orders queued runs: give a queue as well", param="priority"
            )
        try:
            pipeline.check_inputs(dict(inputs))
            record, created = await self.store.create_run(
                NewRun(
                    pipeline=name,
                    version_hash=pipeline_version(pipeline),
                    inputs=inputs,
                    idempotency_key=idempotency_key,
                    tenant=tenant,
                    queue=queue,
                    tags=tags,
                    priority=priority,
                    subject=subject,
                )
            )
        except InputError as exc:
            raise GatewayError(400, "invalid_request", str(exc), param="inputs") from None
        except IdempotencyConflict as exc:
            raise GatewayError(409, "conflict", str(exc), code="idempotency_conflict") from None
        if created and queue is None:
            self._tg.start_soon(self._execute, pipeline, record.id, stream)
        return record, created

    async def _execute(self, pipeline: Pipeline, run_id: str, stream: bool = False) -> None:
        from legato.engine import RunControl, stream_tokens

        control = RunControl()
        self._controls[run_id] = control
        try:
            with contextlib.ExitStack() as streaming:
                if stream:
                    streaming.enter_context(self.tokens.streaming(run_id))
                    streaming.enter_context(stream_tokens(self.tokens.publisher(run_id)))
                await self.runner.resume(pipeline, run_id, control=control, subscribers=self.subscribers)
        except Exception:
            log.exception("run %s could not be executed", run_id)
        finally:
            self._controls.pop(run_id, None)
            if not self._controls and self._idle is not None:
                self._idle.set()

    async def list_schedules(self) -> list[ScheduleView]:
        """The schedules of legato.yaml with their state (see :mod:`legato.server._schedules`)."""
        from legato.store import list_schedules

        return await list_schedules(self.store, self.schedules, self.queues)

    async def pause_schedule(self, name: str, paused: bool, *, by: str) -> ScheduleState:
        """Pause or resume schedule ``name`` on every worker; :class:`ScheduleNotFound` for
        a name legato.yaml does not declare."""
        from legato.store import set_paused

        return await set_paused(self.store, self.schedules, name, paused, by=by)

    async def cancel(self, run_id: str, *, by: str = "") -> RunRecord:
        """Record the cancel (who asked, when) and stop the run: at once when this
        process executes it, through the store's notification otherwise."""
        record = await self.store.request_cancel(run_id, by=by)
        control = self._controls.get(record.id)
        if control is not None:
            control.cancel(by or "the runs API")
        return record

    async def respond(self, record: RunRecord, step: str, answer: Any, *, by: str) -> RunRecord:
        """Record the answer to a waiting step (checked against its schema), then resume
        the run here when this process serves its pipeline; otherwise the run stays
        ``pending`` for a replica (or ``legato runs recover``) that does."""
        from legato.store import respond

        try:
            record = await respond(self.store, record.id, step, answer, by=by)
        except InvalidAnswer as exc:
            raise GatewayError(400, "invalid_request", str(exc), param="value", code="invalid_answer") from None
        except StepNotWaiting as exc:
            raise GatewayError(409, "conflict", str(exc), code="step_not_waiting") from None
        pipeline = self.pipelines.get(record.pipeline)
        if pipeline is not None and self.accepting and self._tg is not None:
            self._tg.start_soon(self._execute, pipeline, record.id)
        return record

    async def resume(self, record: RunRecord) -> RunRecord:
        """Resume an interrupted run (its worker died or its lease expired) from its last
        checkpoint: its finished steps are not run again. A run of a queue goes back on
        its queue for the next worker; any other run is executed here, in the
        background. 409 for a run that is not interrupted, whose pipeline changed
        since, or that this server (``--no-execute``) would not execute."""
        from legato.store import interrupted, pipeline_version, requeue

        if not self.accepting or self._tg is None:
            raise GatewayError(503, "overloaded", "the server is shutting down", headers={"Retry-After": "1"})
        pipeline = self.pipeline(record.pipeline)
        current = await self.store.get_run(record.id)
        if not interrupted(current, self.store.clock()):
            alive = " and its worker holds its lease" if current.status == "running" else ""
            message = f"run {current.id} is {current.status}{alive}: only an interrupted run is resumed"
            raise GatewayError(409, "conflict", message, code="run_not_interrupted")
        if current.queue is not None and await requeue(self.store, current.id, current.lease_owner or ""):
            return await self.store.get_run(current.id)
        if not self.execute:
            message = f"this server executes no runs: resume run {current.id} with `legato runs resume`"
            raise GatewayError(409, "conflict", message, code="not_executed_here")
        if current.version_hash != pipeline_version(pipeline):
            message = f"run {current.id} was started by another version of pipeline {current.pipeline!r}"
            raise GatewayError(409, "conflict", message, code="pipeline_changed")
        self._tg.start_soon(self._execute, pipeline, current.id)
        return current

    async def rerun(self, record: RunRecord, from_step: str, inputs: dict[str, Any], *, tenant: str) -> RunRecord:
        """Record a new run re-running ``record`` from ``from_step`` (owned by ``tenant``)
        and execute it in the background, like a started run."""
        from legato.store import prepare_rerun

        if not self.accepting or self._tg is None:
            raise GatewayError(503, "overloaded", "the server is shutting down", headers={"Retry-After": "1"})
        pipeline = self.pipeline(record.pipeline)
        try:
            new = await prepare_rerun(self.store, pipeline, record.id, from_step, inputs=inputs, tenant=tenant)
        except InputError as exc:
            raise GatewayError(400, "invalid_request", str(exc), param="from") from None
        self._tg.start_soon(self._execute, pipeline, new.id)
        return new


class RunCreate(WireModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    inputs: dict[str, Any] = Field(default_factory=dict)
    queue: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        description="Enqueue the run here for `legato worker` instead of executing it in the gateway.",
    )
    priority: int = Field(
        0,
        ge=-1_000_000,
        le=1_000_000,
        description="Priority of the queued run in its queue: higher is claimed first (within per-key fairness).",
    )
    stream: bool = Field(
        False, description="Send the model tokens of llm: steps to followers of /events on this server as they arrive."
    )
    tags: list[Annotated[str, StringConstraints(pattern=f"^{_TAG}$")]] = Field(
        default_factory=list, max_length=16, description="Labels to find the run by (GET /v1/runs?tags=...)."
    )
    subject: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        description="The data subject (a customer id) the run is about, for erasure with DELETE /v1/subjects/{id}; "
        "stored as a digest. Default: the input the pipeline's retention rule names.",
    )


class RunRerun(WireModel):
    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)

    from_step: str = Field(alias="from", min_length=1, max_length=255)
    inputs: dict[str, Any] = Field(default_factory=dict)


class StepAnswer(WireModel):
    """Exactly one of ``approved`` (an approval step) or ``value`` (any JSON value,
    checked against the step's schema)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    approved: bool | None = None
    value: Any = None

    def answer(self) -> Any:
        given = self.model_fields_set
        if len(given) != 1:
            raise GatewayError(
                400, "invalid_request", "give exactly one of 'approved' (true or false) or 'value'", param="value"
            )
        return self.approved if "approved" in given else self.value


def runs_service(request: Request) -> RunsService:
    """The replica's runs service."""
    return gateway(request).runs


def _public(record: RunRecord) -> dict[str, Any]:
    data = asdict(record)
    data.pop("request_hash", None)
    data.pop("version_hash", None)
    data.pop("tenant", None)
    return data


async def _own_run(service: RunsService, run_id: str, key: ApiKey) -> RunRecord:
    """The caller's run by id or unique prefix; an ambiguous prefix is a 409 listing the
    matching ids, all of them runs this key may see."""
    from legato.store import visible_run

    try:
        return await visible_run(service.store, principal_of(key), run_id)
    except AmbiguousRunId as exc:
        raise GatewayError(409, "conflict", str(exc), code="ambiguous_run_id") from None
    except RunNotFound:
        raise GatewayError(404, "not_found", f"no run with id {run_id!r}", code="run_not_found") from None


@router.post("/v1/pipelines/{name}/runs", status_code=202, summary="Start a run (honours Idempotency-Key)")
async def start_run(
    name: str,
    body: RunCreate,
    request: Request,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=255),
    key: ApiKey = Depends(require("runs:write")),
) -> Response:
    record, created = await runs_service(request).start(
        name,
        body.inputs,
        tenant=key.id,
        idempotency_key=idempotency_key,
        stream=body.stream,
        queue=body.queue,
        tags=body.tags,
        subject=body.subject,
        priority=body.priority,
    )
    return json_response(_public(record), status=202 if created else 200, headers={"Location": f"/v1/runs/{record.id}"})


@router.get("/v1/runs", summary="List and search runs, newest first")
async def list_runs(
    request: Request,
    q: str | None = Query(None, max_length=500, description="Words of inputs, outputs or errors, or a run id prefix."),
    status: str | None = Query(None, pattern="^(pending|queued|running|waiting|succeeded|failed|cancelled|dead)$"),
    pipeline: str | None = Query(None, max_length=255),
    key: str | None = Query(None, max_length=255, description="Runs started by this key (id or prefix)."),
    tags: str | None = Query(
        None, pattern=f"^{_TAG}(,{_TAG}){{0,15}}$", description="Comma-separated; all must match."
    ),
    since: date | None = Query(None, description="Created on or after this day (UTC)."),
    until: date | None = Query(None, description="Created on or before this day (UTC)."),
    min_cost: float | None = Query(None, ge=0, allow_inf_nan=False),
    max_cost: float | None = Query(None, ge=0, allow_inf_nan=False),
    min_duration_s: float | None = Query(None, ge=0, allow_inf_nan=False),
    max_duration_s: float | None = Query(None, ge=0, allow_inf_nan=False),
    sort: Literal["newest", "oldest"] = Query("newest"),
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = Query(None, pattern=r"^[0-9]+(\.[0-9]+)?_[A-Za-z0-9_-]{1,64}$", description="next_cursor"),
    key_: ApiKey = Depends(require("runs:read")),
) -> Response:
    """Filters combine (AND); ``next_cursor`` (null on the last page) is the ``cursor`` of the next page."""
    from legato.store._query import QueryError, next_cursor, resolve_key, run_query

    service = runs_service(request)
    given = {"q": q, "status": status, "pipeline": pipeline, "key": key, "tags": tags, "since": since,
             "until": until, "min_cost": min_cost, "max_cost": max_cost, "min_duration_s": min_duration_s,
             "max_duration_s": max_duration_s, "sort": sort, "limit": limit, "cursor": cursor}  # fmt: skip
    try:
        found = run_query(given, tenant=principal_of(key_).tenant_filter, strict=True)
    except QueryError as exc:
        raise GatewayError(400, "invalid_request", exc.message, param=exc.param) from None
    found = await resolve_key(found, gateway(request).keys)
    page = await service.store.list_runs(
        found.where, limit=found.limit + 1, oldest_first=found.oldest_first, cursor=found.cursor
    )
    following = next_cursor(page, found.limit)
    return json_response({"data": [_public(r) for r in page[: found.limit]], "next_cursor": following})
    service = runs_service(request)
    tenant = principal_of(key).tenant_filter
    records = await service.store.list_runs(status=status, pipeline=pipeline, tenant=tenant, limit=limit)
    return json_response({"data": [_public(r) for r in records]})


@router.get("/v1/runs/{run_id}", summary="A run and its steps")
async def get_run(run_id: str, request: Request, key: ApiKey = Depends(require("runs:read"))) -> Response:
    service = runs_service(request)
    record = await _own_run(service, run_id, key)
    steps = await service.store.steps(record.id)
    return json_response({**_public(record), "steps": [asdict(s) for s in steps]})


@router.post("/v1/runs/{run_id}/cancel", summary="Cancel a run")
async def cancel_run(run_id: str, request: Request, key: ApiKey = Depends(require("runs:write"))) -> Response:
    service = runs_service(request)
    record = await _own_run(service, run_id, key)
    try:
        record = await service.cancel(record.id, by=f"API key {key.name!r} (id {key.id})")
    except StoreError as exc:
        raise GatewayError(409, "conflict", str(exc), code="run_finished") from None
    return json_response(_public(record))


@router.post("/v1/runs/{run_id}/steps/{step}/respond", summary="Answer a waiting step; the run resumes")
async def respond_to_step(
    run_id: str,
    step: str,
    body: StepAnswer,
    request: Request,
    key: ApiKey = Depends(require("runs:write")),
) -> Response:
    service = runs_service(request)
    record = await _own_run(service, run_id, key)
    answer = body.answer()
    record = await service.respond(record, step, answer, by=f"API key {key.name!r} (id {key.id})")
    return json_response(_public(record))


@router.post("/v1/runs/{run_id}/resume", status_code=202, summary="Resume an interrupted run from its checkpoint")
async def resume_run(run_id: str, request: Request, key: ApiKey = Depends(require("runs:write"))) -> Response:
    service = runs_service(request)
    record = await service.resume(await _own_run(service, run_id, key))
    return json_response(_public(record), status=202)


@router.post("/v1/runs/{run_id}/rerun", status_code=202, summary="Re-run a run from a step as a new run")
async def rerun_run(
    run_id: str, body: RunRerun, request: Request, key: ApiKey = Depends(require("runs:write"))
) -> Response:
    service = runs_service(request)
    record = await _own_run(service, run_id, key)
    new = await service.rerun(record, body.from_step, body.inputs, tenant=key.id)
    return json_response(_public(new), status=202, headers={"Location": f"/v1/runs/{new.id}"})


@router.get("/v1/runs/{run_id}/events", summary="Run events as Server-Sent Events (replay, then live)")
async def run_events(
    run_id: str,
    request: Request,
    after: int = Query(0, ge=0, description="Replay events after this id."),
    last_event_id: str | None = Header(None, alias="Last-Event-ID"),
    key: ApiKey = Depends(require("runs:read")),
) -> Response:
    service = runs_service(request)
    record = await _own_run(service, run_id, key)
    start = int(last_event_id) if last_event_id and last_event_id.isdigit() else after
    return StreamingResponse(
        _follow_with_tokens(service, record.id, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _follow_with_tokens(service: RunsService, run_id: str, after: int) -> AsyncIterator[bytes]:
    """The stored events, plus ``token`` events (no id: they are not stored) while
    the run streams on this server."""
    with service.tokens.follow(run_id) as tokens:
        async for chunk in _follow(service, run_id, after, tokens):
            yield chunk


def _token_event(token: Any) -> bytes:
    data = {"step": token.step, "index": token.index, "text": token.text, "at": token.at}
    return f"event: token\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _follow(service: RunsService, run_id: str, after: int, tokens: Any = None) -> AsyncIterator[bytes]:
    last = after
    while True:
        run = await service.store.get_run(run_id)  # read before the events: nothing is missed at the end
        for ev in await service.store.events(run_id, after_id=last):
            last = ev.id or last
            data = {"type": ev.type, "at": ev.at, "step": ev.step, "data": ev.data}
            payload = json.dumps(data, separators=(",", ":"), default=str)
            yield f"id: {ev.id}\nevent: {ev.type}\ndata: {payload}\n\n".encode()
        if run.terminal:
            yield f"event: end\ndata: {json.dumps({'status': run.status})}\n\n".encode()
            return
        if tokens is None:
            await anyio.sleep(service.poll_s)
            continue
        until = anyio.current_time() + service.poll_s
        while tokens is not None and (wait := until - anyio.current_time()) > 0:
            token = None
            with anyio.move_on_after(wait):  # never yield inside the scope
                try:
                    token = await tokens.receive()
                except anyio.EndOfStream:
                    tokens = None  # the run stopped streaming here: poll the store
            if token is not None:
                yield _token_event(token)
