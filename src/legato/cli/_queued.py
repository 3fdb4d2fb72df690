"""``legato run --queue NAME``: enqueue a run for a ``legato worker`` and (by default) wait for it.

The run is recorded with status ``queued`` (or, for an idempotency key already used
with the same inputs, the existing run is found); its id goes to stderr at once.
Waiting polls the store until the run ends, backing off to one look a second;
Ctrl-C stops the wait and leaves the run to its worker (exit 130).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from legato.cli._console import fail, new_console, print_error

if TYPE_CHECKING:
    from legato.engine import Pipeline, RunControl, RunResult
    from legato.store import RunRecord, RunStore

__all__ = ["enqueue"]

_err = new_console(stderr=True)
_POLL_S = (0.05, 1.0)


async def enqueue(
    store: RunStore,
    pipeline: Pipeline,
    inputs: dict[str, Any],
    *,
    queue: str,
    priority: int = 0,
    idempotency_key: str | None,
    source: str,
    run_id: str,
    estimated_cost: float | None,
    wait: bool,
    control: RunControl,
    tags: tuple[str, ...] = (),
) -> tuple[RunRecord, RunResult | None]:
    """Enqueue (or find, by idempotency key) the run; with ``wait``, also its result."""
    import typer

    from legato.errors import IdempotencyConflict
    from legato.store import NewRun, pipeline_version, result_from_record

    try:
        record, created = await store.create_run(
            NewRun(
                pipeline=pipeline.name,
                version_hash=pipeline_version(pipeline),
                inputs=inputs,
                idempotency_key=idempotency_key,
                run_id=run_id,
                estimated_cost=estimated_cost,
                source=source,
                queue=queue,
                tags=tags,
                priority=priority,
            )
        )
    except IdempotencyConflict as exc:
        raise fail(str(exc), 2) from None
    where = f"queued on {queue!r}" if created else f"already {record.status} (same idempotency key)"
    _err.print(f"run {record.id} {where}", soft_wrap=True)
    if not wait or record.terminal:
        return record, (await result_from_record(store, record)) if record.terminal else None
    pause = _POLL_S[0]
    while not record.terminal:
        if control.cancelled:
            print_error(
                f"stopped waiting for run {record.id}; it stays queued for a worker: `legato runs show {record.id}`"
            )
            raise typer.Exit(130)
        await anyio.sleep(pause)
        pause = min(pause * 1.5, _POLL_S[1])
        record = await store.get_run(record.id)
    return record, await result_from_record(store, record)
