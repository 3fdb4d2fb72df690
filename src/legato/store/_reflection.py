"""Automatic reflection: a journal entry written from a failed or notable run's data.

A run is notable when it failed, was cancelled or dead-lettered, needed retries
or fallbacks, was recovered after its worker died, or cost more than its
estimate. The entry says what failed, which retries and fallbacks were taken, the
cost against the estimate and the slowest step, so the next search finds it.
Uneventful successful runs write nothing. A run that succeeded despite retries,
fallbacks or a crash is a recurring cause more than news: its entry is named by
the cause (the steps retried and the errors, not their counts) and updated by
each run with the same cause ("Seen N times; latest in run R"), so a flaky step
is one entry with a count instead of one entry per run. Failed runs keep one
entry each.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from legato.store._journal import Journal, JournalEntry
from legato.store._records import EventRecord, RunRecord, StepRecord
from legato.store._runs import RunStore

__all__ = ["reflect_on_run"]


def _fallbacks(steps: list[StepRecord], events: list[EventRecord]) -> list[str]:
    """Fallbacks seen in a run: a step answered by more than one priced model (its
    ledger's ``by_model``: a fallback or a cascade), fallbacks reported in step
    metadata (``fallbacks`` / ``fallback``), or events whose type names a fallback."""
    found: list[str] = []
    for s in steps:
        models = s.meta.get("by_model") or {}
        if len(models) > 1:
            found.append(f"{s.step}: answered by {', '.join(sorted(models))}")
        for key in ("fallbacks", "fallback"):
            value = s.meta.get(key)
            if value:
                found.append(f"{s.step}: {value}")
    for e in events:
        if "fallback" in e.type.lower():
            found.append(f"{e.step or 'run'}: {e.data}")
    return found


async def reflect_on_run(store: RunStore, record: RunRecord) -> JournalEntry | None:
    """Write the reflection entry for ``record`` if the run was failed or notable;
    returns it (None for an uneventful run). The entry belongs to the run's tenant."""
    steps = await store.steps(record.id)
    events = await store.events(record.id)
    retries = [e for e in events if e.type == "StepRetried"]
    fallbacks = _fallbacks(steps, events)
    over_budget = (
        record.estimated_cost is not None and record.cost is not None and record.cost > record.estimated_cost * 1.0001
    )
    failed = record.status in ("failed", "dead", "cancelled")
    if not (failed or retries or fallbacks or over_budget or record.recoveries):
        return None

    tags: list[str] = [record.status]
    lines: list[str] = []
    duration = (record.finished_at or record.updated_at) - (record.started_at or record.created_at)
    lines.append(f"Run {record.id} of pipeline {record.pipeline!r} ended {record.status} after {duration:.2f}s.")
    failures = [s for s in steps if s.status == "failed"]
    if failures:
        for s in failures:
            lines.append(f"Step {s.step!r} failed (attempt {s.attempt}): {s.error_type}: {s.error}")
            tags.extend([s.step, s.error_type or "error"])
    elif record.error:
        lines.append(f"Error: {record.error}")
    if record.status == "dead":
        lines.append(f"Dead-lettered: {record.dead_reason}")
    if retries:
        per_step = Counter(e.step for e in retries)
        kinds = Counter(str(e.data.get("error_type")) for e in retries)
        lines.append(
            "Retries: "
            + ", ".join(f"{step} x{n}" for step, n in per_step.items())
            + " (errors: "
            + ", ".join(f"{k} x{n}" for k, n in kinds.items())
            + ")"
        )
        tags.append("retries")
        tags.extend(k for k in kinds if k != "None")
    if fallbacks:
        lines.append("Fallbacks: " + "; ".join(fallbacks))
        tags.append("fallback")
    if record.recoveries:
        lines.append(f"Recovered {record.recoveries} time(s) after its worker stopped (resumed from checkpoints).")
        tags.append("recovered")
    if record.cost is not None or record.estimated_cost is not None:
        cost_line = f"Cost: ${record.cost or 0.0:.6f}"
        if record.estimated_cost is not None:
            cost_line += f" vs estimate ${record.estimated_cost:.6f}"
            if record.estimated_cost > 0 and record.cost is not None:
                cost_line += f" ({(record.cost / record.estimated_cost - 1) * 100:+.0f}%)"
        lines.append(cost_line)
        if over_budget:
            tags.append("over-estimate")
    timed = [s for s in steps if s.duration_s is not None and s.status == "succeeded"]
    if timed:
        slow = max(timed, key=lambda s: s.duration_s or 0.0)
        share = f" of {duration:.2f}s" if duration > 0 else ""
        lines.append(f"Slowest step: {slow.step!r} ({slow.duration_s:.3f}s{share}).")
    title = _title(record, failures, retries, fallbacks, over_budget)
    journal = Journal(store)
    if not failed:  # a run that got through: one entry per recurring cause, with a count
        return await journal.recur(
            title, "\n".join(lines), tags=["auto", *tags], pipeline=record.pipeline, run_id=record.id,
            owner=record.tenant,
        )  # fmt: skip
    return await journal.add(
        title,
        "\n".join(lines),
        tags=["auto", *tags],
        pipeline=record.pipeline,
        run_id=record.id,
        author="auto",
        owner=record.tenant,  # what the system learns about a run belongs to the run's owner
    )


def _title(
    record: RunRecord, failures: list[StepRecord], retries: list[EventRecord], fallbacks: list[str], over: bool
) -> str:
    if failures:
        first = failures[0]
        return f"{record.pipeline}: step {first.step} failed with {first.error_type}"
    if record.status in ("failed", "dead", "cancelled"):
        return f"{record.pipeline}: run {'dead-lettered' if record.status == 'dead' else record.status}"
    parts: list[Any] = []  # the causes, not their counts: the same causes make the same title
    if retries:
        steps = sorted({str(e.step) for e in retries})
        kinds = sorted({str(e.data.get("error_type")) for e in retries if e.data.get("error_type")})
        parts.append(f"retries of {', '.join(steps)}" + (f" ({', '.join(kinds)})" if kinds else ""))
    if fallbacks:
        parts.append("fallbacks")
    if over:
        parts.append("over cost estimate")
    if record.recoveries:
        parts.append("recovered after a crash")
    return f"{record.pipeline}: run succeeded with " + ", ".join(map(str, parts))
