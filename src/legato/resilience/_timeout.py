"""``Timeout``: give up on a call after a number of seconds.

Placement decides the meaning: ``Retry(Timeout(model, 10))`` bounds each attempt,
``Timeout(Retry(model), 30)`` bounds the whole call including backoff. The
cancelled call raises :class:`ProviderTimeout` (retryable) and the inner call is
cancelled (structured concurrency: its connection is released, nothing keeps
running in the background).

For a stream, ``seconds`` bounds the wait for each chunk (time to first token,
then the longest silence between chunks); ``total`` optionally bounds the whole
stream. A timeout after the first chunk raises ``StreamInterrupted``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from legato.errors import ProviderTimeout
from legato.providers import ChatChunk, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Model, ModelWrapper
from legato.resilience._clock import Clock, SystemClock
from legato.resilience._events import EventHub, TimedOut, default_hub
from legato.resilience._streaming import close_stream, interrupted

__all__ = ["Timeout"]

T = TypeVar("T")


class Timeout(ModelWrapper):
    """A Model whose calls to ``inner`` fail with ``ProviderTimeout`` after ``seconds``."""

    def __init__(
        self,
        inner: Model,
        seconds: float,
        *,
        total: float | None = None,
        clock: Clock | None = None,
        events: EventHub | None = None,
        name: str | None = None,
    ) -> None:
        if seconds <= 0:
            raise ValueError("Timeout seconds must be > 0")
        if total is not None and total <= 0:
            raise ValueError("Timeout total must be > 0")
        super().__init__(inner, name=name)
        self.seconds = seconds
        self.total = total
        self.clock: Clock = clock or SystemClock()
        self.events = events or default_hub

    def _timed_out(self, seconds: float, what: str) -> ProviderTimeout:
        if self.events.active:
            self.events.emit(TimedOut(self.name, self.clock.now(), seconds))
        return ProviderTimeout(f"{what} of {self.name!r} took longer than {seconds:g}s", model=self.name)

    async def _bounded(self, fn: Callable[[], Awaitable[T]]) -> T:
        seconds = self.seconds if self.total is None else min(self.seconds, self.total)
        result: T
        with self.clock.move_on_after(seconds) as scope:
            result = await fn()
        if scope.cancelled_caught:
            raise self._timed_out(seconds, "call")
        return result

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return await self._bounded(lambda: self.inner.chat(request))

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        return await self._bounded(lambda: self.inner.embed(request))

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        deadline = None if self.total is None else self.clock.now() + self.total
        inner = self.inner.stream(request)
        delivered = False
        try:
            while True:
                wait = self.seconds
                if deadline is not None:
                    wait = min(wait, deadline - self.clock.now())
                chunk: ChatChunk | None = None
                ended = False
                with self.clock.move_on_after(wait) as scope:
                    try:
                        chunk = await inner.__anext__()
                    except StopAsyncIteration:
                        ended = True
                if scope.cancelled_caught:
                    error = self._timed_out(wait, "stream chunk wait")
                    if delivered:
                        raise interrupted(error, self.name) from error
                    raise error
                if ended or chunk is None:
                    return
                delivered = True
                yield chunk
        finally:
            await close_stream(inner)
