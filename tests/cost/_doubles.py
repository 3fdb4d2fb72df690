"""A priced Python model for the budget tests: it records its usage like an adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio

from legato.errors import ServerError
from legato.ledger import CallRecord, current_ledger
from legato.providers import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    Message,
    Price,
    Usage,
    estimate_tokens,
)

PRICE = Price(input=100.0, output=100.0)  # USD per 1M tokens: 0.0001 per token


class PricedModel:
    """Bills ``estimated input + extra_input`` input tokens and ``output_tokens`` output tokens."""

    provider = "testprov"

    def __init__(
        self,
        name: str = "priced",
        *,
        price: Price | None = PRICE,
        output_tokens: int = 50,
        extra_input: int = 0,
        gate: anyio.Event | None = None,
        fail: bool = False,
    ) -> None:
        self.name = name
        self.price = price
        self.output_tokens = output_tokens
        self.extra_input = extra_input
        self.gate = gate
        self.fail = fail
        self.calls = 0

    def usage(self, request: ChatRequest) -> Usage:
        return Usage(
            input_tokens=estimate_tokens(request, self.provider) + self.extra_input,
            output_tokens=min(self.output_tokens, request.max_tokens or self.output_tokens),
        )

    def _record(self, usage: Usage) -> float | None:
        cost = None if self.price is None else self.price.cost(usage)
        ledger = current_ledger()
        if ledger is not None:
            ledger.record(CallRecord(self.name, self.provider, usage.input_tokens, usage.output_tokens, cost=cost))
        return cost

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ServerError("down", provider=self.provider, status=500)
        usage = self.usage(request)
        cost = self._record(usage)
        return ChatResponse(
            message=Message(role="assistant", content="ok"),
            model=self.name,
            provider=self.provider,
            usage=usage,
            cost=cost,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.calls += 1
        usage = self.usage(request)
        for word in ("o", "k"):
            yield ChatChunk(text=word)
            await anyio.sleep(0)
        cost = self._record(usage)
        yield ChatChunk(finish_reason="stop", usage=usage, cost=cost)

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        self.calls += 1
        usage = Usage(input_tokens=estimate_tokens(request, self.provider))
        cost = self._record(usage)
        return EmbedResponse(
            vectors=[[0.0] for _ in request.inputs], model=self.name, provider=self.provider, cost=cost
        )

    async def aclose(self) -> None:
        pass


def ask(text: str = "hi", max_tokens: int | None = 50) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], max_tokens=max_tokens)
