"""Reassembling a stream of chunks into one response.

Tool-call argument fragments are concatenated per call ``index`` exactly as they
arrived (no JSON parsing on the way, so a fragment split inside a string escape or
a multi-byte character still reassembles byte for byte).
"""

from __future__ import annotations

from collections.abc import AsyncIterable

from legato.providers._types import ChatChunk, ChatResponse, Message, ToolCall, ToolCallDelta, Usage

__all__ = ["StreamAssembler", "collect"]


class StreamAssembler:
    """Accumulates :class:`ChatChunk` objects; :meth:`response` builds the result."""

    def __init__(self) -> None:
        self.text_parts: list[str] = []
        self._calls: dict[int, list[str | None]] = {}  # index -> [id, name]
        self._args: dict[int, list[str]] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.cost: float | None = None
        self.model: str | None = None
        self.provider: str | None = None
        self.id: str | None = None
        self.chunks = 0

    def add(self, chunk: ChatChunk) -> None:
        self.chunks += 1
        if chunk.text:
            self.text_parts.append(chunk.text)
        for delta in chunk.tool_calls or ():
            self.add_tool_delta(delta)
        self.finish_reason = chunk.finish_reason or self.finish_reason
        self.usage = chunk.usage or self.usage
        self.cost = chunk.cost if chunk.cost is not None else self.cost
        self.model = chunk.model or self.model
        self.provider = chunk.provider or self.provider
        self.id = chunk.id or self.id

    def add_tool_delta(self, delta: ToolCallDelta) -> None:
        head = self._calls.setdefault(delta.index, [None, None])
        if delta.id:
            head[0] = delta.id
        if delta.name:
            head[1] = delta.name
        if delta.arguments:
            self._args.setdefault(delta.index, []).append(delta.arguments)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def tool_calls(self) -> list[ToolCall]:
        calls = []
        for index in sorted(self._calls):
            call_id, name = self._calls[index]
            args = "".join(self._args.get(index, ())) or "{}"
            calls.append(ToolCall(id=call_id or f"call_{index}", name=name or "", arguments=args))
        return calls

    def response(self, *, model: str = "", provider: str = "", latency_s: float | None = None) -> ChatResponse:
        calls = self.tool_calls
        message = Message(
            role="assistant", content=self.text if (self.text or not calls) else None, tool_calls=calls or None
        )
        return ChatResponse(
            message=message,
            model=self.model or model,
            provider=self.provider or provider,
            id=self.id,
            finish_reason=self.finish_reason,
            usage=self.usage or Usage(),
            cost=self.cost,
            latency_s=latency_s,
        )


async def collect(chunks: AsyncIterable[ChatChunk], *, model: str = "", provider: str = "") -> ChatResponse:
    """Consume a stream and return the assembled :class:`ChatResponse`."""
    assembler = StreamAssembler()
    async for chunk in chunks:
        assembler.add(chunk)
    return assembler.response(model=model, provider=provider)
