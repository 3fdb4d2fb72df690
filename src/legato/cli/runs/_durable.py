"""The durable path of ``legato run``: the run is recorded in the store (``./.legato/legato.db``
unless ``--database-url``), checkpointed step by step, and can be resumed with
``legato runs resume RUN_ID`` after a crash."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from legato.cli._console import new_console

if TYPE_CHECKING:
    from legato.engine import Event, Pipeline, RunControl, RunResult, Subscriber
    from legato.store import RunStore
from legato.cli.runs._common import err_console, fail, open_store

__all__ = ["estimate_cost", "print_recall", "stored_run"]


async def stored_run(
    pipeline: Pipeline,
    inputs: dict[str, Any],
    *,
    subscribers: Iterable[Subscriber] = (),
    progress: Any = None,
    console: Console | None = None,
    database_url: str | None = None,
    idempotency_key: str | None = None,
    recall: bool = False,
    source: str | None = None,
    control: RunControl | None = None,
    run_id: str | None = None,
    wait: bool = True,
    on_wait: Callable[[str], None] | None = None,
    tags: tuple[str, ...] = (),
) -> RunResult:
    """Run ``pipeline`` durably for ``legato run``; ``progress`` is entered around the run,
    ``control`` cancels it (Ctrl-C), ``run_id`` names a new run.

    When ``idempotency_key`` names a run another live process is executing, ``wait``
    polls until it finishes and returns its result (taking the run over if its worker
    dies meanwhile); without ``wait`` the ``RUNNING`` result comes back at once.
    ``on_wait`` is told the id of the run waited for before the wait starts."""
    from legato.engine import RunStatus
    from legato.errors import IdempotencyConflict, StoreError
    from legato.store import DurableRunner

    console = console or new_console()
    started: list[str] = []

    def note_start(event: Event) -> None:
        if not started:
            started.append(event.run_id)

    async with open_store(database_url, create=True) as store:
        if recall:
            await print_recall(store, pipeline, inputs, console)
        runner = DurableRunner(store)

        async def submit() -> RunResult:
            return await runner.run(
                pipeline,
                inputs,
                idempotency_key=idempotency_key,
                subscribers=[note_start, *subscribers],
                source=source,
                estimated_cost=estimate_cost(pipeline),
                control=control,
                run_id=run_id,
                tags=tags,
            )

        try:
            with progress if progress is not None else nullcontext():
                result = await submit()
            if wait and result.status is RunStatus.RUNNING:
                if on_wait is not None:
                    on_wait(result.run_id)
                result = await _wait_for_other(result, submit, control)
            return result
        except IdempotencyConflict as exc:
            raise fail(str(exc), 2) from None
        except StoreError as exc:
            resume = (
                f"; run {started[0]} keeps its finished steps: `legato runs resume {started[0]}`" if started else ""
            )
            raise fail(f"{exc}{resume}", 1) from None


_WAIT_POLL_S = (0.05, 1.0)  # first and longest pause between looks at a run executed elsewhere


async def _wait_for_other(
    result: RunResult, submit: Callable[[], Awaitable[RunResult]], control: RunControl | None
) -> RunResult:
    """Wait for the run another process executes under the same idempotency key.

    Each look submits again: a finished run returns its stored result, a live one
    ``RUNNING`` again, and one whose worker died is taken over and finished here."""
    import anyio

    from legato.engine import RunStatus

    err_console.print(
        f"run {result.run_id} with this idempotency key is in progress in another process; "
        "waiting for its result (--no-wait returns at once)",
        soft_wrap=True,
    )
    pause = _WAIT_POLL_S[0]
    while result.status is RunStatus.RUNNING:
        if control is not None and control.cancelled:
            raise fail(
                f"stopped waiting for run {result.run_id}; it goes on in the other process: "
                f"`legato runs show {result.run_id}`",
                130,
            )
        await anyio.sleep(pause)
        pause = min(pause * 1.5, _WAIT_POLL_S[1])
        result = await submit()
    return result


def estimate_cost(pipeline: Pipeline) -> float | None:
    """The pre-run cost estimate of a YAML pipeline's priced model calls (stored on the
    run; its reflection compares the real cost with it), or None when nothing is priced."""
    if pipeline.spec is None:
        return None
    from legato.cost import estimate_spec_cost

    try:
        plan = estimate_spec_cost(pipeline.spec)
    except (LookupError, TypeError, ValueError):
        return None  # an estimate is advisory: never a reason not to run
    return plan.total_usd if plan.total_usd > 0 else None


async def print_recall(store: RunStore, pipeline: Pipeline, inputs: dict[str, Any], console: Console) -> None:
    """Print the journal entries most related to this pipeline and these inputs."""
    from legato.store import Journal

    words = [pipeline.name.replace("_", " ").replace("-", " "), pipeline.description, *pipeline.steps]
    words += [str(v) for v in inputs.values() if isinstance(v, str | int | float) and len(str(v)) < 200]
    query = " ".join(w for w in words if w)
    journal = Journal(store)
    entries = await journal.search(query, limit=3, mode="text")
    if not entries:
        entries = await journal.recent(3, pipeline=pipeline.name)
    if not entries:
        console.print("[dim]journal: nothing recorded yet about this pipeline[/dim]")
        return
    console.print("[bold]journal: related entries[/bold]")
    for e in entries:
        console.print(f"  #{e.id} [bold]{escape(e.title)}[/bold] [dim]({_ago(e.created_at)}, {escape(e.author)})[/dim]")
        first = e.body.strip().splitlines()[0] if e.body.strip() else ""
        if first:
            console.print(f"      {escape(first[:160])}")


def _ago(at: float) -> str:
    delta = max(0.0, time.time() - at)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            return f"{int(delta // size)}{unit} ago"
    return f"{int(delta)}s ago"
