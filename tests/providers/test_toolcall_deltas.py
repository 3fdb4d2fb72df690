"""Streamed tool-call arguments split at every position reassemble to the exact JSON."""

from __future__ import annotations

import json

from legato.providers import AnthropicModel, ChatRequest, Message, OpenAIModel, collect
from legato.testing import FakeProvider, Fault

ARGS = '{"city": "Zürich", "q": "a \\"quoted\\" ☀️ word", "n": [1, 2.5, null]}'
REQ = ChatRequest(messages=[Message(role="user", content="weather?")])
SSE = {"content-type": "text/event-stream"}


def _openai_body(parts: list[str]) -> str:
    def chunk(delta: dict[str, object], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return "data: " + json.dumps({"id": "c1", "model": "gpt-4o-mini", "choices": [choice]}) + "\n\n"

    head = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": ""}}
    events = [chunk({"role": "assistant", "content": None}), chunk({"tool_calls": [head]})]
    events += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in parts]
    events.append(chunk({}, "tool_calls"))
    return "".join(events) + "data: [DONE]\n\n"


def _anthropic_body(parts: list[str]) -> str:
    def event(name: str, data: dict[str, object]) -> str:
        return f"event: {name}\ndata: {json.dumps(data)}\n\n"

    start = {"id": "m1", "model": "claude", "content": [], "usage": {"input_tokens": 3, "output_tokens": 1}}
    out = [event("message_start", {"type": "message_start", "message": start})]
    block: dict[str, object] = {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}
    out.append(event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}))
    for p in parts:
        delta = {"type": "input_json_delta", "partial_json": p}
        out.append(event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
    out.append(event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    stop: dict[str, object] = {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use"},
        "usage": {"output_tokens": 9},
    }
    out.append(event("message_delta", stop))
    return "".join(out) + event("message_stop", {"type": "message_stop"})


async def test_every_split_position_reassembles_exactly(fake_provider: FakeProvider) -> None:
    openai = OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url, api_key="sk")
    anthropic = AnthropicModel("claude", base_url=fake_provider.anthropic_base_url, api_key="sk")
    positions = range(len(ARGS) + 1)
    for model, body in ((openai, _openai_body), (anthropic, _anthropic_body)):
        for cut in positions:
            parts = [p for p in (ARGS[:cut], ARGS[cut:]) if p]
            fake_provider.script(Fault.raw(200, body(parts), SSE))
            response = await collect(model.stream(REQ))
            [call] = response.message.tool_calls or []
            assert call.arguments == ARGS, (model.provider, cut)
            assert call.name == "weather"
            assert response.finish_reason == "tool_calls"
        await model.aclose()
    assert fake_provider.pending == 0


async def test_one_character_per_delta_and_parallel_calls(fake_provider: FakeProvider) -> None:
    from legato.providers import ToolCall
    from legato.testing import Reply

    calls = [ToolCall(id="c1", name="a", arguments=ARGS), ToolCall(id="c2", name="b", arguments='{"x": "ü"}')]
    openai = OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url, api_key="sk")
    anthropic = AnthropicModel("claude", base_url=fake_provider.anthropic_base_url, api_key="sk")
    for model in (openai, anthropic):
        fake_provider.script(Reply(text="Checking both.", tool_calls=calls, chunk_chars=1))
        response = await collect(model.stream(REQ))
        assert response.message.tool_calls == calls
        assert response.text == "Checking both."
        await model.aclose()
