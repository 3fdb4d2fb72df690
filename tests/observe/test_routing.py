"""Resilience events from the real wrappers become span events and metrics."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from legato.errors import ModelError, RateLimited
from legato.observe import Instrumented, Metrics, RoutingObserver
from legato.providers import ChatRequest, Message
from legato.resilience import BreakerPolicy, CircuitBreaker, EventHub, Retry, VirtualClock
from legato.retry import RetryPolicy

from .conftest import EchoModel, scrape

Spans = tuple[TracerProvider, InMemorySpanExporter]


def ask(text: str) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)])


async def test_retries_and_breaker_changes_are_span_events(spans: Spans, metrics: Metrics, echo: EchoModel) -> None:
    provider, exporter = spans
    hub, clock = EventHub(), VirtualClock()
    detach = RoutingObserver(metrics).attach(hub)
    policy = BreakerPolicy(minimum_number_of_calls=2, sliding_window_size=2, failure_rate_threshold=50)
    breaker = CircuitBreaker(echo, policy, clock=clock, events=hub, name="echo#0")
    retry = Retry(breaker, RetryPolicy(max_attempts=3), budget=False, clock=clock, events=hub, name="echo")
    model = Instrumented(retry, metrics=metrics, tracer_provider=provider)
    try:
        with pytest.raises(ModelError):  # RateLimited, then CircuitOpen once the breaker opened
            await model.chat(ask("FAIL please"))
    finally:
        detach()
    (span,) = exporter.get_finished_spans()
    names = [e.name for e in span.events]
    assert names.count("retry") >= 1
    assert "breaker.state_change" in names
    change = next(e for e in span.events if e.name == "breaker.state_change")
    assert change.attributes is not None
    assert change.attributes["legato.breaker.to"] == "open"
    s = scrape(metrics)
    assert s[("legato_breaker_state", (("deployment", "echo#0"),))] == 2
    assert s[("legato_routing_events_total", (("event", "retry"), ("group", "echo")))] == names.count("retry")


async def test_detached_observer_sees_nothing(metrics: Metrics, echo: EchoModel) -> None:
    hub, clock = EventHub(), VirtualClock()
    RoutingObserver(metrics).attach(hub)()
    retry = Retry(echo, RetryPolicy(max_attempts=2), budget=False, clock=clock, events=hub, name="echo")
    with pytest.raises(RateLimited):
        await retry.chat(ask("FAIL"))
    assert "legato_routing_events_total{" not in metrics.render()[0].decode()
