"""The run-store subscriber: turns a run's events into committed checkpoints.

The engine awaits its subscribers before moving on, so when :meth:`Checkpointer.__call__`
returns for a ``StepFinished`` (or ``StepSkipped``) the step is durably recorded,
and only then do its dependents start. Events that do not finish a step
(``StepStarted``, ``StepRetried``, failures) are buffered and written with the next
checkpoint: they cost no extra commit.

Each finished item of a map step (``MapItemFinished``) is committed the same
way before its worker takes the next item, so a crash re-runs at most the items
in flight; the item rows are dropped when the whole step is committed.

Entries of step journals (``StepProgress``: an agent's model turns and tool
calls, see :func:`legato.engine.step_journal`) are committed the same way, before
the step goes on, as rows of the same table under the key ``journal:<step>`` (or
``journal:<step>[<index>]`` for a map item) with the entry's number as the item; a
resume hands them back to the run (:func:`journals_from_rows`). They are dropped with
the step's map items when the whole step is committed.

Group commit: steps (or map items) finishing at the same moment wait for one
transaction between them instead of one each. Whoever takes the lock first
commits everything queued so far; the others find their record already durable.

Outputs are encoded here, when their event arrives, so a value the store cannot
hold fails the step that returned it (:class:`~legato.errors.OutputNotStorable`,
which the engine reports as that step's failure) and never the batch it would
have been committed with.

Each commit also reads whether a cancel was recorded for the run; if so,
``on_cancel`` is called before the engine hears that the step is done, so none of
its dependents starts. Attempt numbers continue across resumes: a resumed run's
attempts are stored (and its events numbered) after ``attempts_before``.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import anyio.lowlevel

from legato.engine import (
    Event,
    MapItemFinished,
    ModelCalled,
    RunFinished,
    RunStarted,
    StepFailed,
    StepFinished,
    StepProgress,
    StepRetried,
    StepSkipped,
    StepStarted,
    StepWaiting,
    journal_key,
)
from legato.errors import LeaseLost, OutputNotStorable
from legato.store._calls import call_values, record_calls
from legato.store._codec import Encoded, NotSerialisable, encode
from legato.store._item_times import ItemTimes
from legato.store._records import CancelRequest, EventRecord, MapItemRecord, StepRecord
from legato.store._runs import RunStore

__all__ = ["JOURNAL_ROWS", "Checkpointer", "journals_from_rows"]

JOURNAL_ROWS = "journal:"  # item rows under this prefix hold step journal entries (no step name has a colon)


def journals_from_rows(rows: Mapping[str, Mapping[int, Any]], steps: Container[str]) -> dict[str, list[Any]]:
    """Step journals (by :func:`~legato.engine.journal_key`) from the store's item rows,
    for the unfinished ``steps`` only."""
    found: dict[str, list[Any]] = {}
    for key, entries in rows.items():
        if key.startswith(JOURNAL_ROWS):
            journal = key.removeprefix(JOURNAL_ROWS)
            if journal.partition("[")[0] in steps:
                found[journal] = [entries[seq] for seq in sorted(entries)]
    return found


@dataclass(slots=True)
class _Pending:
    attempts: list[StepRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    items: list[MapItemRecord] = field(default_factory=list)
    maps_done: list[str] = field(default_factory=list)
    generation: int = 0


class Checkpointer:
    """Event subscriber that records one run in a :class:`RunStore` under ``owner``'s lease."""

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        owner: str,
        *,
        lease_ttl: float,
        on_cancel: Callable[[CancelRequest], None] | None = None,
        attempts_before: Mapping[str, int] | None = None,
        mapped: frozenset[str] = frozenset(),
        journaled: Iterable[str] = (),
        keep_payloads: bool = True,
    ) -> None:
        self.store = store
        self.keep_payloads = keep_payloads  # False: outputs are not stored (metadata-only pipelines)
        self.on_cancel = on_cancel
        self.attempts_before = dict(attempts_before or {})
        self.run_id = run_id
        self.owner = owner
        self.lease_ttl = lease_ttl
        self.lost: LeaseLost | None = None
        self.cost = 0.0
        self.notable = False  # retries or fallbacks seen: worth a reflection even if the run succeeds
        self._pending = _Pending()
        self._committed_generation = -1
        self._committing: anyio.Event | None = None  # set when the commit under way ends
        self._failure: tuple[int, BaseException] | None = None  # the generation whose commit failed
        self._mapped = set(mapped)  # map steps with item rows in the store
        self._item_times = ItemTimes()  # each item's attempts and duration, kept with its step
        self._journals: dict[str, set[str]] = {}  # step -> its journal row keys in the store
        for key in journaled:
            self._journals.setdefault(key.partition("[")[0], set()).add(JOURNAL_ROWS + key)

    async def __call__(self, event: Event) -> None:
        base = self.attempts_before.get(getattr(event, "step", None) or "", 0)
        if isinstance(event, MapItemFinished):
            output = _stored(event.output, event.step, event.index) if self.keep_payloads else _NOTHING
            self._pending.items.append(
                MapItemRecord(
                    event.run_id, event.step, event.index, output, base + event.attempt, event.at, event.duration_s
                )
            )
            self._mapped.add(event.step)
            self._item_times.add(event.step, event.index, base + event.attempt, event.duration_s, event.at)
            await self._flush()
            return
        if isinstance(event, StepProgress):
            await self._journal_entry(event, base)
            return
        if isinstance(event, ModelCalled):
            await self._model_call(event, base)
            return
        if isinstance(event, StepFinished):
            output = _stored(event.output, event.step, None) if self.keep_payloads else _NOTHING
            finished = _finished(event, base, output)
            finished = replace(finished, meta={**finished.meta, **self._item_times.take(event.step)})
        self._pending.events.append(_event_record(event, base))
        if isinstance(event, StepRetried):
            self.notable = True
        if isinstance(event, StepFinished):
            self.cost += float(event.meta.get("cost") or 0.0)
            if event.meta.get("fallbacks") or event.meta.get("fallback") or len(event.meta.get("by_model") or {}) > 1:
                self.notable = True
            self._pending.attempts.append(finished)
            if event.step in self._mapped:
                self._pending.maps_done.append(event.step)
                self._mapped.discard(event.step)
            self._pending.maps_done.extend(self._journals.pop(event.step, ()))
            await self._flush()
        elif isinstance(event, StepSkipped):
            self._pending.attempts.append(StepRecord(self.run_id, event.step, "skipped", finished_at=event.at))
            await self._flush()
        elif isinstance(event, StepFailed):
            failed = _failed(event, base)
            self._pending.attempts.append(replace(failed, meta={**failed.meta, **self._item_times.take(event.step)}))
        elif isinstance(event, StepWaiting):
            self._pending.attempts.append(_waiting(event, base, self.store.clock()))

    async def _journal_entry(self, event: StepProgress, base: int) -> None:
        key = JOURNAL_ROWS + journal_key(event.step, event.index)
        entry = _stored(event.entry, event.step, event.index)
        self._pending.items.append(MapItemRecord(event.run_id, key, event.seq, entry, base + 1, event.at, None))
        self._journals.setdefault(event.step, set()).add(key)
        await self._flush()

    async def _model_call(self, event: ModelCalled, base: int) -> None:
        """A call is written at once, in its own transaction: it is kept even when the
        step fails afterwards, and a run's checkpoints do not wait for it."""
        row = call_values(
            event.call, self.store, source="step", run_id=event.run_id, step=event.step, item=event.index,
            attempt=base + event.attempt,
        )  # fmt: skip
        await record_calls(self.store, [row])

    def take_pending(self) -> tuple[list[StepRecord], list[EventRecord]]:
        """What has not been committed yet (written by the runner with the run's end)."""
        pending, self._pending = self._pending, _Pending(generation=self._pending.generation + 1)
        return pending.attempts, pending.events

    async def _flush(self) -> None:
        # Shielded: a step that finished is recorded even when the run is being
        # cancelled (a sibling failed, a deadline passed), so a resume need not redo it.
        with anyio.CancelScope(shield=True):
            await self._flush_now()

    async def _flush_now(self) -> None:
        mine = self._pending.generation
        while self._committed_generation < mine:
            if self._committing is None:
                await self._commit()  # raises its own failure
                return
            await self._committing.wait()  # another task is committing: then look again
        failure = self._failure
        if failure is not None and failure[0] == mine:
            raise failure[1]

    async def _commit(self) -> None:
        """Commit everything queued. One committer at a time; the tasks waiting for
        it all wake when it ends, and the first with records still queued commits
        them (and whatever else arrived meanwhile) next."""
        self._committing = done = anyio.Event()
        try:
            if self._pending.items:
                # Let the other map workers that are ready append their items first:
                # one commit for all of them instead of a lone item, then the rest.
                await anyio.lowlevel.cancel_shielded_checkpoint()
            batch = self._pending
            self._pending = _Pending(generation=batch.generation + 1)
            try:
                request = await self.store.checkpoint(
                    self.run_id,
                    self.owner,
                    attempts=batch.attempts,
                    new_events=batch.events,
                    items=batch.items,
                    maps_done=batch.maps_done,
                    lease_ttl=self.lease_ttl,
                )
                if request is not None and self.on_cancel is not None:
                    self.on_cancel(request)
            except BaseException as exc:
                if isinstance(exc, LeaseLost):
                    self.lost = exc
                self._failure = (batch.generation, exc)
                raise
            finally:
                self._committed_generation = batch.generation
        finally:
            self._committing = None
            done.set()


_NOTHING = Encoded(encode(None))


def _stored(value: Any, step: str, index: int | None) -> Encoded:
    """``value`` as stored text, or :class:`OutputNotStorable` naming the step, the type and the fix."""
    try:
        return Encoded(encode(value))
    except NotSerialisable as exc:
        kind = type(value)
        type_name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        where = f"step {step!r}" if index is None else f"item {index} of map step {step!r}"
        raise OutputNotStorable(
            f"{where} returned a {type_name} that cannot be stored to resume the run ({exc}). "
            "Return plain data (strings, numbers, lists, dicts, dataclasses, pydantic models) and open "
            "locks, connections, clients or files inside the step that uses them",
            step=step,
            index=index,
            type_name=type_name,
        ) from None


def _finished(e: StepFinished, base: int, output: Encoded) -> StepRecord:
    by_model = e.meta.get("by_model") or {}
    return StepRecord(
        run_id=e.run_id,
        step=e.step,
        status="succeeded",
        attempt=base + e.attempt,
        output=output,
        started_at=e.started_at or None,
        finished_at=e.at,
        duration_s=e.duration_s,
        model=", ".join(sorted(by_model)) or None,
        input_tokens=e.meta.get("input_tokens"),
        output_tokens=e.meta.get("output_tokens"),
        cost=e.meta.get("cost"),
        meta=dict(e.meta),
    )


def _failed(e: StepFailed, base: int) -> StepRecord:
    return StepRecord(
        run_id=e.run_id,
        step=e.step,
        status="cancelled" if e.cancelled else "failed",
        attempt=base + e.attempt,
        error_type=e.error_type,
        error=e.message,
        started_at=e.started_at or None,
        finished_at=e.at,
        duration_s=e.duration_s,
    )


def _waiting(e: StepWaiting, base: int, now: float) -> StepRecord:
    """The row of a step waiting for an answer: its request (with the moment a timeout
    falls due on the store's clock, ``expires_at``) in ``meta``; :mod:`legato.store._waits`
    answers it."""
    request = dict(e.request)
    if request.get("timeout") is not None:
        request["expires_at"] = now + float(request["timeout"])
    return StepRecord(
        run_id=e.run_id,
        step=e.step,
        status="waiting",
        attempt=base + 1,
        started_at=e.at,
        finished_at=e.at,
        meta={"request": request},
    )


def _event_record(e: Event, base: int) -> EventRecord:
    record = _event_fields(e)
    if base and "attempt" in record.data:
        record = replace(record, data={**record.data, "attempt": base + record.data["attempt"]})
    return record


def _event_fields(e: Event) -> EventRecord:
    data: dict[str, Any] = {}
    step: str | None = getattr(e, "step", None)
    if isinstance(e, RunStarted):
        data = {"pipeline": e.pipeline, "resumed_steps": list(e.resumed_steps)}
    elif isinstance(e, StepStarted):
        data = {"attempt": e.attempt}
    elif isinstance(e, StepFinished):
        data = {"attempt": e.attempt, "duration_s": e.duration_s, **({"meta": e.meta} if e.meta else {})}
    elif isinstance(e, StepFailed):
        data = {
            "attempt": e.attempt,
            "error_type": e.error_type,
            "message": e.message,
            "duration_s": e.duration_s,
            "cancelled": e.cancelled,
        }
        if e.index is not None:
            data["index"] = e.index
    elif isinstance(e, StepRetried):
        data = {"attempt": e.attempt, "delay_s": e.delay_s, "error_type": e.error_type, "message": e.message}
        if e.index is not None:
            data["index"] = e.index
    elif isinstance(e, StepSkipped):
        data = {"reason": e.reason}
    elif isinstance(e, StepWaiting):
        data = {"request": e.request}
    elif isinstance(e, RunFinished):
        data = {"status": str(e.status), "duration_s": e.duration_s, "error": e.error, "failed_step": e.failed_step}
    return EventRecord(run_id=e.run_id, type=type(e).__name__, at=e.at, step=step, data=data)
