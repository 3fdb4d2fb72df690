from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from legato.engine._events import (
    RunFinished,
    RunStarted,
    RunStatus,
    StepFailed,
    StepFinished,
    StepRetried,
    StepSkipped,
    StepStarted,
)
from legato.observe import GenAI, TracingSubscriber, continue_trace

Spans = tuple[TracerProvider, InMemorySpanExporter]


def feed(sub: TracingSubscriber, t0: float = 1_700_000_000.0) -> None:
    sub(RunStarted("r1", t0, pipeline="diamond", inputs={"x": 1}))
    sub(StepStarted("r1", t0 + 0.1, step="a"))
    sub(
        StepFinished(
            "r1",
            t0 + 0.6,
            step="a",
            output=2,
            duration_s=0.5,
            meta={"by_model": {"gpt-4o-mini": 0.01}, "calls": 2, "input_tokens": 10, "output_tokens": 3, "cost": 0.01},
        )
    )
    sub(StepStarted("r1", t0 + 0.6, step="b"))
    sub(StepRetried("r1", t0 + 0.7, step="b", attempt=1, delay_s=0.2, error_type="RateLimited", message="429"))
    sub(StepFailed("r1", t0 + 1.0, step="b", error_type="ValueError", message="bad", duration_s=0.4, attempt=2))
    sub(StepSkipped("r1", t0 + 1.0, step="c", reason="upstream failed"))
    sub(RunFinished("r1", t0 + 1.1, status=RunStatus.FAILED, outputs={}, duration_s=1.1, failed_step="b"))


def test_run_and_step_spans_with_exact_times_and_attributes(spans: Spans) -> None:
    provider, exporter = spans
    feed(TracingSubscriber(provider))
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    assert set(by_name) == {"run diamond", "step a", "step b"}
    run, a, b = by_name["run diamond"], by_name["step a"], by_name["step b"]
    assert a.parent is not None
    assert a.parent.span_id == run.context.span_id
    assert b.parent is not None
    assert b.parent.span_id == run.context.span_id
    assert a.start_time == 1_700_000_000_100_000_000
    assert a.end_time == 1_700_000_000_600_000_000
    assert a.attributes is not None
    assert a.attributes[GenAI.REQUEST_MODEL] == "gpt-4o-mini"
    assert a.attributes[GenAI.INPUT_TOKENS] == 10
    assert a.attributes[GenAI.OUTPUT_TOKENS] == 3
    assert a.attributes["legato.cost.usd"] == 0.01
    assert a.attributes["legato.step.model_calls"] == 2
    assert b.attributes is not None
    assert b.attributes[GenAI.ERROR_TYPE] == "ValueError"
    assert b.status.status_code is StatusCode.ERROR
    assert [e.name for e in b.events] == ["retry"]
    assert b.events[0].attributes is not None
    assert b.events[0].attributes[GenAI.ERROR_TYPE] == "RateLimited"
    assert run.attributes is not None
    assert run.attributes["legato.run.status"] == "failed"
    assert run.attributes["legato.run.failed_step"] == "b"
    assert [e.name for e in run.events] == ["step.skipped"]
    assert run.status.status_code is StatusCode.ERROR


def test_run_joins_the_callers_trace(spans: Spans) -> None:
    provider, exporter = spans
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    with continue_trace({"Traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}):
        feed(TracingSubscriber(provider))
    for span in exporter.get_finished_spans():
        assert format(span.context.trace_id, "032x") == trace_id
    run = next(s for s in exporter.get_finished_spans() if s.name.startswith("run"))
    assert run.parent is not None
    assert format(run.parent.span_id, "016x") == "00f067aa0ba902b7"


def test_steps_left_open_are_closed_as_cancelled_when_the_run_ends(spans: Spans) -> None:
    provider, exporter = spans
    sub = TracingSubscriber(provider)
    sub(RunStarted("r2", 10.0, pipeline="p", inputs={}))
    sub(StepStarted("r2", 10.5, step="slow"))
    sub(RunFinished("r2", 11.0, status=RunStatus.CANCELLED, outputs={}, duration_s=1.0))
    slow = next(s for s in exporter.get_finished_spans() if s.name == "step slow")
    assert slow.attributes is not None
    assert slow.attributes["legato.step.status"] == "cancelled"
    assert slow.end_time == 11_000_000_000


def test_step_context_makes_model_calls_children_of_the_step(spans: Spans) -> None:
    provider, exporter = spans
    sub = TracingSubscriber(provider)
    sub(RunStarted("r3", 1.0, pipeline="p", inputs={}))
    sub(StepStarted("r3", 1.0, step="ask"))
    with sub.use_step("r3", "ask"), provider.get_tracer("t").start_as_current_span("chat m"):
        pass
    sub(StepFinished("r3", 2.0, step="ask", output=None, duration_s=1.0))
    sub(RunFinished("r3", 2.0, status=RunStatus.SUCCEEDED, outputs={}, duration_s=1.0))
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    chat = by_name["chat m"]
    assert chat.parent is not None
    assert chat.parent.span_id == by_name["step ask"].context.span_id


def test_without_an_sdk_provider_nothing_is_recorded() -> None:
    sub = TracingSubscriber()
    assert not sub.enabled
    feed(sub)  # no error, nothing kept
    assert sub.step_context("r1", "a") is None


def test_runs_that_never_end_do_not_accumulate(spans: Spans, monkeypatch: pytest.MonkeyPatch) -> None:
    from legato.observe import _tracing

    provider, exporter = spans
    monkeypatch.setattr(_tracing, "MAX_OPEN_RUNS", 2)
    sub = TracingSubscriber(provider)
    for i in range(3):
        sub(RunStarted(f"r{i}", float(i), pipeline="p", inputs={}))
    (closed,) = exporter.get_finished_spans()
    assert closed.attributes is not None
    assert closed.attributes["legato.run.id"] == "r0"
    assert closed.attributes["legato.run.status"] == "unknown"
    assert sub.step_context("r2") is not None
