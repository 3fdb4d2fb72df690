"""Model tokens streamed out of a running step, straight to whoever asked for them.

A caller that wants tokens (``Pipeline.stream``, ``legato run --stream``, the runs
API's event stream) opens :func:`stream_tokens` around the run with a callback; a
step that produces text as it goes (``llm:``) asks :func:`token_sink` for a sink
and, when it gets one, streams from its model and hands each piece of text to it.

Tokens do not go through the run's event bus: subscribers such as the run store
never see (nor wait for) them, and a run nobody streams pays one context-variable
lookup per model call. The callback must not block: it is called synchronously,
in the step's task, for every piece of text (a memory stream's ``send_nowait``
with an unbounded buffer, or a write to a terminal).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from legato.engine._context import _current as _step_var
from legato.engine._events import Event

if TYPE_CHECKING:
    from legato.engine._result import RunResult

__all__ = ["StepToken", "TokenSink", "stream_events", "stream_tokens", "token_sink"]


@dataclass(frozen=True, slots=True)
class StepToken(Event):
    """A piece of text a step's model produced (``index``: the map item, if any)."""

    step: str
    index: int | None
    text: str


TokenSink = Callable[[str], None]

_tokens: contextvars.ContextVar[Callable[[StepToken], None] | None] = contextvars.ContextVar(
    "legato_tokens", default=None
)


@contextlib.contextmanager
def stream_tokens(callback: Callable[[StepToken], None]) -> Iterator[None]:
    """Send the tokens of every step run inside this block (in this task and the
    tasks it starts) to ``callback``."""
    token = _tokens.set(callback)
    try:
        yield
    finally:
        _tokens.reset(token)


def token_sink() -> TokenSink | None:
    """A function that publishes text as tokens of the step running this code, or
    None when nobody streams (then a step should not stream from its model)."""
    callback = _tokens.get()
    ctx = _step_var.get()
    if callback is None or ctx is None:
        return None
    if isinstance(ctx, tuple):
        run_id, step, index = ctx[0], ctx[2], ctx[4]
    else:
        run_id, step, index = ctx.run_id, ctx.step, ctx.index

    def sink(text: str) -> None:
        if text:
            callback(StepToken(run_id, time.time(), step, index, text))

    return sink


async def stream_events(
    run: Callable[[list[Callable[[Event], None]]], Awaitable[RunResult]],
) -> AsyncIterator[Event]:
    """Run ``run(subscribers)`` and yield its events as they happen, tokens included.

    The events sit in an unbounded buffer, so a slow consumer never holds the run
    back. The last event is the run's :class:`RunFinished`; an error that stops the
    run before it starts (invalid inputs) is raised here.
    """
    send, receive = anyio.create_memory_object_stream[Event](math.inf)

    def forward(event: Event) -> None:
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            send.send_nowait(event)

    async def runner() -> None:
        async with send:
            with stream_tokens(forward):
                await run([forward])

    async with anyio.create_task_group() as tg, receive:
        tg.start_soon(runner)
        async for event in receive:
            yield event
