"""``Recorded`` (and ``Instrumented`` given ``on_call``): one report per model call,
streamed or not, with what the call did."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import cast

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from legato.errors import BadRequest, RateLimited
from legato.observe import Instrumented, Metrics, ModelCall, Recorded
from legato.observe._propagation import extract_context
from legato.providers import ChatChunk, ChatRequest, ChatResponse, Message, OpenAIModel
from legato.resilience import Retry, RetryPolicy
from legato.testing import FakeProvider, Fault, Reply
from legato.testing.pytest_plugin import fake_provider

from .conftest import EchoModel, scrape

__all__ = ["fake_provider"]

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _request(text: str = "Name a colour") -> ChatRequest:
    return ChatRequest(messages=[Message(role="system", content="Be brief."), Message(role="user", content=text)])


async def test_a_stream_reports_time_to_first_text_and_the_whole_answer(fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="Blue, mostly."))
    calls: list[ModelCall] = []
    model = Recorded(OpenAIModel("gpt-x", base_url=fake_provider.openai_base_url, api_key="sk-test"), calls.append)
    text = "".join([c.text async for c in model.stream(_request())])
    await model.aclose()
    [call] = calls
    assert call.answer == text == "Blue, mostly."
    assert call.prompt == "system: Be brief.\nuser: Name a colour"
    assert call.status == "ok"
    assert call.ttft_s is not None
    assert 0 < call.ttft_s <= call.latency_s
    assert (call.deployment, call.provider) == ("gpt-x", "openai")
    assert call.output_tokens > 0


async def test_a_failed_call_is_reported_with_its_error_class(fake_provider: FakeProvider) -> None:
    fake_provider.script(Fault.http_error("bad_request"))
    calls: list[ModelCall] = []
    model = Recorded(OpenAIModel("gpt-x", base_url=fake_provider.openai_base_url, api_key="sk-test"), calls.append)
    with pytest.raises(BadRequest):
        await model.chat(_request())
    await model.aclose()
    assert calls[0].status == "BadRequest"
    assert calls[0].error
    assert calls[0].answer == ""


async def test_the_trace_id_is_the_current_contexts(fake_provider: FakeProvider) -> None:
    from opentelemetry import context

    fake_provider.script(Reply(text="ok"))
    calls: list[ModelCall] = []

    async def sink(call: ModelCall) -> None:  # an async sink is awaited
        calls.append(call)

    model = Recorded(OpenAIModel("gpt-x", base_url=fake_provider.openai_base_url, api_key="sk-test"), sink)
    parent = extract_context({"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"})
    assert parent is not None
    token = context.attach(parent)
    try:
        await model.chat(_request())
    finally:
        context.detach(token)
    await model.chat(_request())
    await model.aclose()
    assert [c.trace_id for c in calls] == [TRACE, None]


async def test_instrumented_with_on_call_measures_and_reports_each_call_in_one_pass(
    spans: tuple[TracerProvider, InMemorySpanExporter], metrics: Metrics, echo: EchoModel
) -> None:
    provider, exporter = spans
    calls: list[ModelCall] = []
    model = Instrumented(echo, metrics=metrics, tracer_provider=provider, on_call=calls.append)
    await model.chat(ChatRequest(messages=[Message(role="user", content="hello there")]))
    streamed = [c.text async for c in model.stream(ChatRequest(messages=[Message(role="user", content="one two")]))]
    with pytest.raises(RateLimited):
        await model.chat(ChatRequest(messages=[Message(role="user", content="please FAIL")]))
    chat, stream, failed = calls
    assert (chat.status, chat.prompt, chat.answer, chat.deployment) == (
        "ok",
        "user: hello there",
        "HELLO THERE",
        "echo-1",
    )
    assert (chat.input_tokens, chat.output_tokens, chat.cost) == (2, 2, 0.001)
    assert stream.answer == "".join(streamed) == "ONE TWO "
    assert stream.ttft_s is not None
    assert 0 < stream.ttft_s <= stream.latency_s
    assert (stream.output_tokens, stream.cost) == (2, 0.002)
    assert (failed.status, failed.answer) == ("RateLimited", "")
    assert failed.error
    assert len(exporter.get_finished_spans()) == 3
    s = scrape(metrics)
    key = (("model", "echo-1"), ("operation", "chat"), ("provider", "python"))
    assert s[("legato_model_requests_total", (*key, ("status", "ok")))] == 2
    assert s[("legato_model_requests_total", (*key, ("status", "RateLimited")))] == 1
    ttft = (("model", "echo-1"), ("provider", "python"))
    assert s[("legato_model_time_to_first_token_seconds_count", ttft)] == 1


async def test_with_tracing_on_and_no_callers_trace_the_record_carries_the_calls_own_span(
    spans: tuple[TracerProvider, InMemorySpanExporter], metrics: Metrics, echo: EchoModel
) -> None:
    provider, exporter = spans
    calls: list[ModelCall] = []
    model = Instrumented(echo, metrics=metrics, tracer_provider=provider, on_call=calls.append)
    await model.chat(ChatRequest(messages=[Message(role="user", content="hello")]))
    _ = [c async for c in model.stream(ChatRequest(messages=[Message(role="user", content="one two")]))]
    chat_span, stream_span = exporter.get_finished_spans()
    assert [c.trace_id for c in calls] == [
        format(chat_span.context.trace_id, "032x"),
        format(stream_span.context.trace_id, "032x"),
    ]


async def test_a_stream_left_early_is_counted_as_cancelled_and_not_reported(metrics: Metrics, echo: EchoModel) -> None:
    calls: list[ModelCall] = []
    model = Instrumented(echo, metrics=metrics, on_call=calls.append)
    request = ChatRequest(messages=[Message(role="user", content="one two three")])
    async with aclosing(cast(AsyncGenerator[ChatChunk, None], model.stream(request))) as chunks:
        async for _ in chunks:
            break
    assert calls == []
    labels = (("model", "echo-1"), ("operation", "chat"), ("provider", "python"), ("status", "cancelled"))
    assert scrape(metrics)[("legato_model_requests_total", labels)] == 1
    assert scrape(metrics)[("legato_model_requests_in_flight", (("model", "echo-1"),))] == 0


class FailsOnce(EchoModel):
    """Answers like :class:`EchoModel` after one ``RateLimited``."""

    failed = False

    async def chat(self, request: ChatRequest) -> ChatResponse:
        if not self.failed:
            self.failed = True
            raise RateLimited("busy", provider="python", status=429)
        return await super().chat(request)


async def test_the_retries_taken_inside_a_call_are_on_its_record(metrics: Metrics) -> None:
    calls: list[ModelCall] = []
    model = Instrumented(Retry(FailsOnce(), RetryPolicy(base_delay=0.0)), metrics=metrics, on_call=calls.append)
    await model.chat(_request())
    [call] = calls
    assert (call.status, call.retries, call.path) == ("ok", 1, ())
