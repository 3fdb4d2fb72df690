"""A Python model that counts its calls, for the cache tests (no paid API involved)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio

from legato.errors import ServerError, StreamInterrupted
from legato.ledger import CallRecord, current_ledger
from legato.providers import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    Message,
    Usage,
)

PRICE = 0.001  # USD per call, recorded on the ledger like an adapter would


class CountingModel:
    """Answers ``echo: <last user text>`` and counts every upstream call it serves."""

    name = "counting"

    def __init__(self, *, gate: anyio.Event | None = None, fail: bool = False, fail_stream_after: int = -1) -> None:
        self.chat_calls = 0
        self.stream_calls = 0
        self.embed_calls = 0
        self.gate = gate
        self.fail = fail
        self.fail_stream_after = fail_stream_after
        self.entered = anyio.Event()

    def _answer(self, request: ChatRequest) -> str:
        return "echo: " + request.messages[-1].text

    async def _wait(self) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        else:
            await anyio.sleep(0)

    def _record(self) -> None:
        ledger = current_ledger()
        if ledger is not None:
            ledger.record(CallRecord(model=self.name, provider="python", input_tokens=3, output_tokens=5, cost=PRICE))

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.chat_calls += 1
        await self._wait()
        if self.fail:
            raise ServerError("upstream exploded", provider="python", status=500)
        self._record()
        return ChatResponse(
            message=Message(role="assistant", content=self._answer(request)),
            model=self.name,
            provider="python",
            usage=Usage(input_tokens=3, output_tokens=5),
            cost=PRICE,
            finish_reason="stop",
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.stream_calls += 1
        await self._wait()
        words = self._answer(request).split(" ")
        for i, word in enumerate(words):
            if i == self.fail_stream_after:
                raise StreamInterrupted("cut", provider="python")
            yield ChatChunk(text=word if i == 0 else " " + word)
            await anyio.sleep(0)
        self._record()
        yield ChatChunk(finish_reason="stop", usage=Usage(input_tokens=3, output_tokens=5), cost=PRICE, model=self.name)

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        self.embed_calls += 1
        await self._wait()
        self._record()
        return EmbedResponse(
            vectors=[[float(len(t)), 1.0] for t in request.inputs], model=self.name, provider="python", cost=PRICE
        )

    async def aclose(self) -> None:
        pass


def ask(text: str, **params: object) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], **params)
