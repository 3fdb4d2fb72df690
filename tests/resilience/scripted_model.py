"""A scripted in-memory Model for the resilience and routing tests (virtual time, no network)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from legato.providers import ChatChunk, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Message, Usage
from legato.resilience import Clock, VirtualClock


@dataclass(frozen=True)
class Cut:
    """Stream ``after`` chunks, then fail with ``error``."""

    after: int
    error: Exception


Outcome = str | Exception | Cut


class Scripted:
    """Answers call n with ``script[n]`` (the last item repeats) after ``latency(n)`` seconds."""

    def __init__(
        self,
        name: str,
        script: Sequence[Outcome] | Callable[[int], Outcome] = ("ok",),
        *,
        latency: float | Callable[[int], float] = 0.0,
        clock: Clock | None = None,
    ) -> None:
        self.name = name
        self.script = script
        self.latency = latency
        self.clock = clock or VirtualClock()
        self.calls = 0
        self.started_at: list[float] = []
        self.closed = 0

    async def _next(self) -> Outcome:
        n = self.calls
        self.calls += 1
        self.started_at.append(self.clock.now())
        delay = self.latency(n) if callable(self.latency) else self.latency
        if delay:
            await self.clock.sleep(delay)
        if callable(self.script):
            return self.script(n)
        return self.script[min(n, len(self.script) - 1)]

    async def chat(self, request: ChatRequest) -> ChatResponse:
        outcome = await self._next()
        if isinstance(outcome, Exception):
            raise outcome
        if isinstance(outcome, Cut):
            raise outcome.error
        return ChatResponse(
            message=Message(role="assistant", content=outcome),
            model=self.name,
            provider="scripted",
            usage=Usage(input_tokens=10, output_tokens=5),
            cost=0.001,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        outcome = await self._next()
        if isinstance(outcome, Exception):
            raise outcome
        if isinstance(outcome, Cut):
            for i in range(outcome.after):
                yield ChatChunk(text=f"{self.name}-{i} ", model=self.name)
            raise outcome.error
        for word in outcome.split():
            yield ChatChunk(text=word + " ", model=self.name)
        yield ChatChunk(finish_reason="stop", usage=Usage(input_tokens=10, output_tokens=5), model=self.name)

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        outcome = await self._next()
        if isinstance(outcome, Exception):
            raise outcome
        return EmbedResponse(vectors=[[1.0, 0.0]] * len(request.inputs), model=self.name, provider="scripted")

    async def aclose(self) -> None:
        self.closed += 1


def req(text: str = "hi", **kwargs: object) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], **kwargs)  # type: ignore[arg-type]


async def drain(stream: AsyncIterator[ChatChunk], into: list[str] | None = None) -> list[str]:
    """Read a stream to its end, appending each chunk's text to ``into`` as it arrives."""
    texts = into if into is not None else []
    async for chunk in stream:
        texts.append(chunk.text)
    return texts
