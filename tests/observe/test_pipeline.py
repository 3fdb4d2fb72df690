"""Traces and metrics of a real pipeline run: run -> step -> model call spans."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from legato import Pipeline
from legato.engine import RunStatus
from legato.observe import GenAI, Instrumented, Metrics, MetricsSubscriber, TracingSubscriber, continue_trace
from legato.providers import ChatRequest, Message

from .conftest import EchoModel, scrape

Spans = tuple[TracerProvider, InMemorySpanExporter]


def build(model: Instrumented) -> Pipeline:
    p = Pipeline("ask")

    @p.step
    async def question(topic: str) -> str:
        return f"what is {topic}"

    @p.step
    async def answer(question: str) -> str:
        resp = await model.chat(ChatRequest(messages=[Message(role="user", content=question)]))
        return resp.text

    @p.step
    async def shout(answer: str) -> str:  # after `answer`, so fail-fast never cancels it
        resp = await model.chat(ChatRequest(messages=[Message(role="user", content=answer + " FAIL")]))
        return resp.text

    return p


async def test_model_calls_are_children_of_their_step(spans: Spans, metrics: Metrics, echo: EchoModel) -> None:
    provider, exporter = spans
    model = Instrumented(echo, metrics=metrics, tracer_provider=provider)
    p = build(model)
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    with continue_trace({"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"}):
        result = await p.run(topic="tea", subscribers=[TracingSubscriber(provider), MetricsSubscriber(metrics)])
    assert result.status is RunStatus.FAILED
    spans_ = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans_}
    assert {format(s.context.trace_id, "032x") for s in spans_} == {trace_id}
    chats = [s for s in spans_ if s.name == "chat echo-1"]
    assert len(chats) == 2
    parents = sorted(by_id[c.parent.span_id].name for c in chats if c.parent is not None)
    assert parents == ["step answer", "step shout"]
    failed = next(c for c in chats if by_id[c.parent.span_id].name == "step shout")  # type: ignore[union-attr]
    assert failed.attributes is not None
    assert failed.attributes[GenAI.ERROR_TYPE] == "RateLimited"
    run = next(s for s in spans_ if s.name == "run ask")
    assert run.parent is not None
    assert format(run.parent.span_id, "016x") == "b7ad6b7169203331"
    s = scrape(metrics)
    assert s[("legato_runs_total", (("pipeline", "ask"), ("status", "failed")))] == 1
    assert s[("legato_steps_total", (("pipeline", "ask"), ("status", "succeeded"), ("step", "answer")))] == 1
    assert s[("legato_steps_total", (("pipeline", "ask"), ("status", "failed"), ("step", "shout")))] == 1


async def test_a_span_made_inside_the_step_stays_the_parent(spans: Spans, metrics: Metrics, echo: EchoModel) -> None:
    provider, exporter = spans
    model = Instrumented(echo, metrics=metrics, tracer_provider=provider)
    p = Pipeline("inner")

    @p.step
    async def work(x: str) -> str:
        with provider.get_tracer("user").start_as_current_span("my tool"):
            return (await model.chat(ChatRequest(messages=[Message(role="user", content=x)]))).text

    result = await p.run(x="hi", subscribers=[TracingSubscriber(provider)])
    assert result.outputs == {"work": "HI"}
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    chat = by_name["chat echo-1"]
    assert chat.parent is not None
    assert chat.parent.span_id == by_name["my tool"].context.span_id


async def test_without_an_sdk_the_run_is_unchanged_and_still_counted(metrics: Metrics, echo: EchoModel) -> None:
    model = Instrumented(echo, metrics=metrics)
    result = await build(model).run(topic="x", subscribers=[TracingSubscriber(), MetricsSubscriber(metrics)])
    assert result.outputs["answer"] == "WHAT IS X"
    assert result.failed_step == "shout"
    s = scrape(metrics)
    labels = (("model", "echo-1"), ("operation", "chat"), ("provider", "python"), ("status", "RateLimited"))
    assert s[("legato_model_requests_total", labels)] == 1
