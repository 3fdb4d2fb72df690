"""Runs of a pipeline with a store: ``Pipeline(..., store=store).run(...)`` records
the run, as ``legato run`` does, so history, resume, the dashboard and the journal
see runs started from Python.

The engine does not import the store: ``store`` is any :class:`RunRecorder` (the
run store is one), whose ``record_run`` starts a durable run that calls
``pipeline.run`` again to execute it. While that happens the options the store
does not take (executor, step cache, deadline, ledger) wait in a context variable
and are applied to that inner call; runs started inside it (a cycle's body, a
pipeline a step runs) are not recorded again.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from legato.engine._bus import Subscriber
    from legato.engine._context import RunControl
    from legato.engine._result import RunResult

__all__ = ["RunRecorder"]


@runtime_checkable
class RunRecorder(Protocol):
    """Where runs of a pipeline are recorded (:class:`legato.store.RunStore`)."""

    async def record_run(
        self,
        pipeline: Any,
        inputs: Mapping[str, Any],
        /,
        *,
        run_id: str | None = None,
        subscribers: Iterable[Subscriber] = (),
        control: RunControl | None = None,
    ) -> RunResult: ...


_pending: contextvars.ContextVar[tuple[Any, dict[str, Any]] | None] = contextvars.ContextVar(
    "legato_recording", default=None
)


def should_record(pipeline: Any, resuming: bool) -> bool:
    """A run to hand to the pipeline's store (not a resume, not inside a recorded run)."""
    return pipeline.store is not None and not resuming and _pending.get() is None


@contextlib.contextmanager
def recording(pipeline: Any, options: dict[str, Any]) -> Iterator[None]:
    token = _pending.set((pipeline, options))
    try:
        yield
    finally:
        _pending.reset(token)


def pending_options(pipeline: Any) -> dict[str, Any]:
    """The options the recorded run of ``pipeline`` was started with, once."""
    pending = _pending.get()
    if pending is None or pending[0] is not pipeline or not pending[1]:
        return {}
    options = dict(pending[1])
    pending[1].clear()
    return options
