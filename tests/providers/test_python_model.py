from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from legato import errors
from legato.ledger import Ledger, use_ledger
from legato.providers import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    Message,
    Model,
    Price,
    PythonModel,
    ToolCall,
    collect,
)

REQ = ChatRequest(messages=[Message(role="user", content="hello there")])


def shout(request: ChatRequest) -> str:
    return request.messages[-1].text.upper()


async def test_sync_function_is_a_model() -> None:
    model = PythonModel(shout)
    assert isinstance(model, Model)
    response = await model.chat(REQ)
    assert response.text == "HELLO THERE"
    assert response.model == "shout"
    assert response.provider == "python"
    assert response.cost == 0.0
    assert response.usage.output_tokens > 0


async def test_async_function_message_and_price() -> None:
    async def call_tool(request: ChatRequest) -> Message:
        return Message(role="assistant", tool_calls=[ToolCall(id="c", name="f", arguments="{}")])

    model = PythonModel(call_tool, name="tooler", price=Price(input=1.0, output=1.0))
    response = await model.chat(REQ)
    assert response.finish_reason == "tool_calls"
    assert response.cost is not None
    assert response.cost > 0
    streamed = await collect(model.stream(REQ))
    assert streamed.message.tool_calls == response.message.tool_calls


async def test_whole_response_passes_through() -> None:
    def full(request: ChatRequest) -> ChatResponse:
        return ChatResponse(message=Message(role="assistant", content="x"), model="m", provider="p", cost=0.5)

    response = await PythonModel(full).chat(REQ)
    assert response.cost == 0.5
    assert response.model == "m"


async def test_generators_stream_and_chat_collects() -> None:
    def words(request: ChatRequest) -> Iterator[str]:
        yield from ["one ", "two ", "three"]

    async def chunks(request: ChatRequest) -> AsyncIterator[str | ChatChunk]:
        yield "a"
        yield ChatChunk(text="b", finish_reason="length")

    sync_model, async_model = PythonModel(words), PythonModel(chunks)
    streamed = [c async for c in sync_model.stream(REQ)]
    assert [c.text for c in streamed[:-1]] == ["one ", "two ", "three"]
    assert streamed[-1].usage is not None
    assert (await sync_model.chat(REQ)).text == "one two three"
    response = await async_model.chat(REQ)
    assert response.text == "ab"
    assert response.finish_reason == "length"


async def test_plain_functions_stream_in_pieces() -> None:
    model = PythonModel(shout, chunk_chars=4)
    chunks = [c async for c in model.stream(REQ)]
    assert [c.text for c in chunks[:-1]] == ["HELL", "O TH", "ERE"]
    assert chunks[-1].finish_reason == "stop"


async def test_errors_join_the_tree() -> None:
    def broken(request: ChatRequest) -> str:
        raise KeyError("boom")

    def rate_limited(request: ChatRequest) -> str:
        raise errors.RateLimited("slow down", retry_after=1.0)

    with pytest.raises(errors.ServerError, match="KeyError") as info:
        await PythonModel(broken).chat(REQ)
    assert not info.value.retryable
    assert isinstance(info.value.__cause__, KeyError)
    with pytest.raises(errors.RateLimited):
        await PythonModel(rate_limited).chat(REQ)
    with pytest.raises(errors.ServerError, match="expected str"):
        await PythonModel(lambda r: 42, name="bad").chat(REQ)


async def test_embed_and_the_ledger() -> None:
    model = PythonModel(embed_fn=lambda texts: [[float(len(t)), 1.0] for t in texts], name="lengths")
    ledger = Ledger()
    with use_ledger(ledger):
        response = await model.embed(EmbedRequest(inputs=["ab", "abcd"]))
        await PythonModel(shout, thread=False).chat(REQ)
    assert response.vectors == [[2.0, 1.0], [4.0, 1.0]]
    assert ledger.calls == 2
    assert ledger.unpriced_calls == 0
    with pytest.raises(errors.BadRequest, match="no chat function"):
        await model.chat(REQ)
    with pytest.raises(errors.BadRequest, match="does not embed"):
        await PythonModel(shout).embed(EmbedRequest(inputs=["x"]))
