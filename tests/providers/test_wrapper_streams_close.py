"""Every model wrapper closes the stream it opened as soon as its consumer stops reading.

A consumer that breaks out after the first chunk (or is cancelled, or whose client
went away) closes the wrapper's stream; the wrapper must then close the provider's
stream, and so its HTTP response, at once rather than leave it to Python's
async-generator finalizer.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import Any, cast

import pytest
from opentelemetry.sdk.trace import TracerProvider

from legato.cache import ResponseCache
from legato.cost import Budget, BudgetGuard
from legato.guardrails import PIIGuard
from legato.observe import Instrumented, Metrics, Recorded
from legato.providers import ChatChunk, ChatRequest, Message, Model, ModelWrapper, OpenAIModel
from legato.resilience import Bulkhead, CircuitBreaker, Hedge, RateLimiter, Retry, Timeout
from legato.testing import FakeProvider, Reply
from legato.testing.pytest_plugin import fake_provider

__all__ = ["fake_provider"]


class Opened(ModelWrapper):
    """Hands out the provider's own stream untouched and keeps it, to look at afterwards."""

    streams: list[AsyncGenerator[ChatChunk, None]]

    def __init__(self, inner: Model) -> None:
        super().__init__(inner)
        self.streams = []

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        stream = cast(AsyncGenerator[ChatChunk, None], self.inner.stream(request))
        self.streams.append(stream)
        return stream


class Bypassed(ModelWrapper):
    """Asks its inner cache not to cache (the path a request takes with ``cache: false``)."""

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        return self.inner.stream(request.model_copy(update={"metadata": {"cache": False}}))


WRAPPERS: dict[str, Callable[[Model], Model]] = {
    "Instrumented": lambda m: Instrumented(m, metrics=Metrics()),
    "Instrumented-traced": lambda m: Instrumented(m, metrics=Metrics(), tracer_provider=TracerProvider()),
    "Recorded": lambda m: Recorded(m, lambda call: None),
    "ResponseCache": ResponseCache,
    "ResponseCache-bypassed": lambda m: Bypassed(ResponseCache(m)),
    "BudgetGuard": lambda m: BudgetGuard(m, [Budget(10.0, "key:k")]),
    "PIIGuard": lambda m: PIIGuard(m, engine="patterns"),
    "Retry": Retry,
    "CircuitBreaker": CircuitBreaker,
    "Bulkhead": Bulkhead,
    "RateLimiter": RateLimiter,
    "Hedge": Hedge,
    "Timeout": lambda m: Timeout(m, 30),
}


@pytest.mark.parametrize("wrap", WRAPPERS.values(), ids=WRAPPERS.keys())
async def test_a_consumer_that_stops_after_the_first_chunk_closes_the_provider_stream_at_once(
    fake_provider: FakeProvider, wrap: Callable[[Model], Any]
) -> None:
    fake_provider.script(Reply(text="one two three four five six seven eight", chunk_chars=4))
    opened = Opened(OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url, api_key="sk-test"))
    model: Model = wrap(opened)
    request = ChatRequest(messages=[Message(role="user", content="Count")])
    try:
        async with aclosing(cast(AsyncGenerator[ChatChunk, None], model.stream(request))) as chunks:
            async for chunk in chunks:
                assert chunk.text or chunk.finish_reason is None
                break
        [upstream] = opened.streams
        assert upstream.ag_frame is None  # closed (its HTTP response released), not merely suspended
    finally:
        await model.aclose()
