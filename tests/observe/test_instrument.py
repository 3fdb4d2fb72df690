from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from legato.errors import RateLimited
from legato.observe import GenAI, Instrumented, Metrics
from legato.providers import ChatRequest, EmbedRequest, Message, Model

from .conftest import EchoModel, scrape

Spans = tuple[TracerProvider, InMemorySpanExporter]


def ask(text: str, **kw: object) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], **kw)  # type: ignore[arg-type]


async def test_chat_span_has_genai_attributes(spans: Spans, metrics: Metrics, echo: EchoModel) -> None:
    provider, exporter = spans
    model = Instrumented(echo, metrics=metrics, tracer_provider=provider)
    assert isinstance(model, Model)
    resp = await model.chat(ask("hello there", temperature=0.2, max_tokens=5, model="client-chosen"))
    assert resp.text == "HELLO THERE"
    (span,) = exporter.get_finished_spans()
    assert span.name == "chat echo-1"
    assert span.kind is SpanKind.CLIENT
    assert dict(span.attributes or {}) == {
        GenAI.OPERATION: "chat",
        GenAI.PROVIDER: "python",
        GenAI.REQUEST_MODEL: "echo-1",
        GenAI.REQUEST_TEMPERATURE: 0.2,
        GenAI.REQUEST_MAX_TOKENS: 5,
        GenAI.RESPONSE_MODEL: "echo-1",
        GenAI.RESPONSE_ID: "resp-1",
        GenAI.RESPONSE_FINISH_REASONS: ("stop",),
        GenAI.INPUT_TOKENS: 2,
        GenAI.OUTPUT_TOKENS: 2,
        "legato.cost.usd": 0.001,
        "legato.cached": False,
    }
    s = scrape(metrics)
    key = (("model", "echo-1"), ("operation", "chat"), ("provider", "python"))
    assert s[("legato_model_requests_total", (*key[:2], key[2], ("status", "ok")))] == 1
    assert s[("legato_model_request_duration_seconds_count", key)] == 1
    assert s[("legato_model_tokens_total", (("model", "echo-1"), ("provider", "python"), ("type", "input")))] == 2
    assert s[("legato_model_cost_usd_total", (("model", "echo-1"), ("provider", "python")))] == 0.001
    assert not any(name == "legato_cache_requests_total" for name, _ in s)  # no cache, no hits or misses
    assert s[("legato_model_requests_in_flight", (("model", "echo-1"),))] == 0


async def test_failure_sets_error_type_and_status(spans: Spans, metrics: Metrics, echo: EchoModel) -> None:
    provider, exporter = spans
    model = Instrumented(echo, metrics=metrics, tracer_provider=provider)
    with pytest.raises(RateLimited):
        await model.chat(ask("please FAIL"))
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes[GenAI.ERROR_TYPE] == "RateLimited"
    assert span.attributes["http.response.status_code"] == 429
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "RateLimited"
    s = scrape(metrics)
    labels = (("model", "echo-1"), ("operation", "chat"), ("provider", "python"), ("status", "RateLimited"))
    assert s[("legato_model_requests_total", labels)] == 1
    assert s[("legato_model_requests_in_flight", (("model", "echo-1"),))] == 0


async def test_stream_records_ttft_and_final_usage(spans: Spans, metrics: Metrics, echo: EchoModel) -> None:
    provider, exporter = spans
    ticks = iter([0.0, 0.25, 1.0])
    model = Instrumented(echo, metrics=metrics, tracer_provider=provider, clock=lambda: next(ticks))
    chunks = [c async for c in model.stream(ask("one two three"))]
    assert "".join(c.text for c in chunks) == "ONE TWO THREE "
    (span,) = exporter.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert attrs["legato.stream"] is True
    assert attrs["legato.ttft_s"] == 0.25
    assert attrs[GenAI.OUTPUT_TOKENS] == 3
    assert attrs[GenAI.RESPONSE_FINISH_REASONS] == ("stop",)
    assert [e.name for e in span.events] == ["first_token"]
    s = scrape(metrics)
    assert s[("legato_model_time_to_first_token_seconds_sum", (("model", "echo-1"), ("provider", "python")))] == 0.25
    dur = (("model", "echo-1"), ("operation", "chat"), ("provider", "python"))
    assert s[("legato_model_request_duration_seconds_sum", dur)] == 1.0


async def test_interrupted_stream_is_an_error(spans: Spans, metrics: Metrics, echo: EchoModel) -> None:
    provider, exporter = spans
    model = Instrumented(echo, metrics=metrics, tracer_provider=provider)
    got: list[str] = []

    async def consume() -> None:
        async for c in model.stream(ask("BREAK here")):
            got.append(c.text)

    with pytest.raises(RuntimeError, match="connection dropped"):
        await consume()
    assert got == ["BREAK "]
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes[GenAI.ERROR_TYPE] == "RuntimeError"


async def test_embed_and_nesting_under_the_current_span(spans: Spans, metrics: Metrics, echo: EchoModel) -> None:
    provider, exporter = spans
    model = Instrumented(echo, metrics=metrics, tracer_provider=provider)
    with provider.get_tracer("t").start_as_current_span("step s"):
        resp = await model.embed(EmbedRequest(inputs=["ab", "abc"]))
    assert resp.vectors == [[2.0], [3.0]]
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    emb = by_name["embeddings echo-1"]
    assert emb.parent is not None
    assert emb.parent.span_id == by_name["step s"].context.span_id
    assert emb.attributes is not None
    assert emb.attributes[GenAI.OPERATION] == "embeddings"


async def test_disabled_tracing_still_counts_metrics(metrics: Metrics, echo: EchoModel) -> None:
    model = Instrumented(echo, metrics=metrics)
    await model.chat(ask("hi"))
    s = scrape(metrics)
    labels = (("model", "echo-1"), ("operation", "chat"), ("provider", "python"), ("status", "ok"))
    assert s[("legato_model_requests_total", labels)] == 1


async def test_cache_hits_and_misses_through_a_response_cache(metrics: Metrics, echo: EchoModel) -> None:
    from legato.cache import ResponseCache

    model = Instrumented(ResponseCache(echo), metrics=metrics)
    first = await model.chat(ask("same question"))
    second = await model.chat(ask("same question"))
    assert (first.cached, second.cached) == (False, True)
    s = scrape(metrics)
    assert s[("legato_cache_requests_total", (("cache", "response"), ("result", "miss")))] == 1
    assert s[("legato_cache_requests_total", (("cache", "response"), ("result", "hit")))] == 1
