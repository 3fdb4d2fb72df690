"""Provider calls carry the current OpenTelemetry context (W3C ``traceparent``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from legato.providers import (
    AnthropicModel,
    ChatRequest,
    EmbedRequest,
    Message,
    OpenAIModel,
    TGIModel,
    collect,
)
from legato.testing import FakeProvider

pytestmark = pytest.mark.usefixtures("each_wire")  # the lean wire and the aiohttp wire alike

REQUEST = ChatRequest(messages=[Message(role="user", content="hello")], max_tokens=8)

ADAPTERS: dict[str, Callable[[FakeProvider], OpenAIModel | AnthropicModel | TGIModel]] = {
    "openai": lambda fake: OpenAIModel("gpt-4o-mini", base_url=fake.openai_base_url, api_key="sk"),
    "anthropic": lambda fake: AnthropicModel("claude-3-5-haiku-latest", base_url=fake.base_url, api_key="sk"),
    "tgi": lambda fake: TGIModel("tgi", base_url=fake.base_url),
}


@pytest.fixture
def tracer_and_spans() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    # A private provider: nothing global is replaced, the global propagator is the default.
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("legato.tests"), exporter
    provider.shutdown()


def _traceparent(span: trace.Span) -> str:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
@pytest.mark.parametrize("streaming", [False, True], ids=["chat", "stream"])
async def test_calls_inside_a_span_continue_the_trace(
    fake_provider: FakeProvider,
    tracer_and_spans: tuple[trace.Tracer, InMemorySpanExporter],
    kind: str,
    streaming: bool,
) -> None:
    tracer, exporter = tracer_and_spans
    model = ADAPTERS[kind](fake_provider)
    try:
        with tracer.start_as_current_span("step") as span:
            if streaming:
                await collect(model.stream(REQUEST))
            else:
                await model.chat(REQUEST)
            expected = _traceparent(span)
    finally:
        await model.aclose()
    (recorded,) = fake_provider.requests
    assert recorded.headers["traceparent"] == expected
    (finished,) = exporter.get_finished_spans()
    assert finished.context is not None
    assert f"{finished.context.trace_id:032x}" in recorded.headers["traceparent"]


async def test_calls_outside_any_span_send_no_trace_headers(fake_provider: FakeProvider) -> None:
    model = OpenAIModel("text-embedding-3-small", base_url=fake_provider.openai_base_url, api_key="sk")
    try:
        await model.chat(REQUEST)
        await model.embed(EmbedRequest(inputs=["a"]))
    finally:
        await model.aclose()
    assert [r.api for r in fake_provider.requests] == ["openai.chat", "openai.embeddings"]
    assert all("traceparent" not in r.headers for r in fake_provider.requests)


async def test_embeddings_carry_the_trace_and_keep_the_callers_headers(
    fake_provider: FakeProvider, tracer_and_spans: tuple[trace.Tracer, InMemorySpanExporter]
) -> None:
    tracer, _ = tracer_and_spans
    model = OpenAIModel(
        "text-embedding-3-small",
        base_url=fake_provider.openai_base_url,
        api_key="sk",
        headers={"x-team": "search"},
    )
    try:
        with tracer.start_as_current_span("embed") as span:
            await model.embed(EmbedRequest(inputs=["a", "b"]))
            expected = _traceparent(span)
    finally:
        await model.aclose()
    (recorded,) = fake_provider.requests
    assert recorded.headers["traceparent"] == expected
    assert recorded.headers["x-team"] == "search"
    assert recorded.headers["authorization"] == "Bearer sk"
