"""Re-running a stored run from one of its steps.

:func:`prepare_rerun` records a new run linked to the original (``rerun_of``,
``rerun_from``): its inputs are the original's with any overrides, and every
finished step that is neither the chosen step nor downstream of it (its upstream
and the independent branches) keeps the original's stored outcome, copied into the
new run as its own finished step, so a crash of the new run resumes like any other. The
new run is ``pending``; resuming it (:meth:`DurableRunner.resume`) runs the chosen
step and everything downstream of it. The original is not touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from legato.engine import Pipeline
from legato.errors import InputError, StoreError
from legato.expressions import closest
from legato.store._durable import pipeline_version
from legato.store._records import RunRecord, StepRecord
from legato.store._rows import step_row
from legato.store._run_writes import NewRun
from legato.store._runs import RunStore
from legato.store._schema import step_attempts

__all__ = ["downstream_of", "prepare_rerun"]


def downstream_of(pipeline: Pipeline, step: str) -> set[str]:
    """``step`` and every step that depends on it, directly or not. Raises
    :class:`InputError` naming the pipeline's steps when ``step`` is not one."""
    plan = pipeline.compile()
    if step not in plan.steps:
        hint = closest(step, list(plan.steps))
        raise InputError(
            f"pipeline {pipeline.name!r} has no step {step!r}"
            + (f" (did you mean {hint!r}?)" if hint else "")
            + f"; its steps: {', '.join(plan.order)}"
        )
    found = {step}
    todo = [step]
    while todo:
        for dependent in plan.steps[todo.pop()].dependents:
            if dependent not in found:
                found.add(dependent)
                todo.append(dependent)
    return found


async def prepare_rerun(
    store: RunStore,
    pipeline: Pipeline,
    run_id: str,
    from_step: str,
    *,
    inputs: Mapping[str, Any] | None = None,
    tenant: str | None = None,
    source: str | None = None,
) -> RunRecord:
    """Record a ``pending`` run that re-runs ``run_id`` from ``from_step`` (see the
    module docstring). ``inputs`` override the original's; ``tenant`` owns the new
    run (default: the original's owner). Raises :class:`InputError` for an unknown
    step or bad inputs, :class:`StoreError` when the run belongs to another pipeline."""
    original = await store.get_run(run_id)
    if original.pipeline != pipeline.name:
        raise StoreError(f"run {original.id} belongs to pipeline {original.pipeline!r}, not {pipeline.name!r}")
    rerun = downstream_of(pipeline, from_step)
    values = {**original.inputs, **dict(inputs or {})}
    pipeline.check_inputs(values)
    finished = await store.completed_steps(original.id)
    kept = {name: s for name, s in finished.items() if name in pipeline.steps and name not in rerun}
    record, _ = await store.create_run(
        NewRun(
            pipeline=pipeline.name,
            version_hash=pipeline_version(pipeline),
            inputs=values,
            tenant=original.tenant if tenant is None else tenant,
            source=source or original.source,
            rerun_of=original.id,
            rerun_from=from_step,
        )
    )
    copies = [
        StepRecord(
            record.id,
            name,
            s.status,
            attempt=1,
            output=s.output,
            started_at=s.started_at,
            finished_at=s.finished_at,
            duration_s=s.duration_s,
            model=s.model,
            input_tokens=s.input_tokens,
            output_tokens=s.output_tokens,
            meta={**s.meta, "reused_from": original.id},
        )
        for name, s in kept.items()
    ]
    if copies:
        rows = [step_row(c, store.redactor, store.sealer) for c in copies]
        await store.run_sync(lambda conn: conn.execute(step_attempts.insert(), rows))
    return record
