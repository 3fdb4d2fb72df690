"""Fixtures for the observability tests: an SDK tracer provider with an in-memory
exporter, a private metrics registry, and a small Python model."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from legato.errors import RateLimited
from legato.observe import Metrics
from legato.providers import ChatChunk, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Message, Usage


class EchoModel:
    """A Model that answers with the last message's text in upper case.

    A message containing ``FAIL`` raises ``RateLimited``; one containing ``BREAK``
    makes the stream stop after its first chunk with ``RuntimeError``.
    """

    provider = "python"

    def __init__(self, name: str = "echo-1") -> None:
        self.name = name

    async def chat(self, request: ChatRequest) -> ChatResponse:
        text = request.messages[-1].text
        if "FAIL" in text:
            raise RateLimited(f"slow down, you sent {text}", provider="python", status=429)
        return ChatResponse(
            message=Message(role="assistant", content=text.upper()),
            model=self.name,
            provider="python",
            id="resp-1",
            finish_reason="stop",
            usage=Usage(input_tokens=len(text.split()), output_tokens=len(text.split())),
            cost=0.001,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        text = request.messages[-1].text
        words = text.split()
        for i, word in enumerate(words):
            yield ChatChunk(text=word.upper() + " ")
            if i == 0 and "BREAK" in text:
                raise RuntimeError("connection dropped")
        yield ChatChunk(
            finish_reason="stop",
            usage=Usage(input_tokens=len(words), output_tokens=len(words)),
            cost=0.002,
            model=self.name,
            provider="python",
        )

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        return EmbedResponse(
            vectors=[[float(len(t))] for t in request.inputs],
            model=self.name,
            provider="python",
            usage=Usage(input_tokens=len(request.inputs)),
        )

    async def aclose(self) -> None:
        return None


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def echo() -> EchoModel:
    return EchoModel()


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out
