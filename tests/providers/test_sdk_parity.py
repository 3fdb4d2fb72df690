"""The adapters read the same answer as the official SDKs do (text, tool calls, usage)."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai

from legato.providers import AnthropicModel, ChatRequest, Message, OpenAIModel, ToolCall, Usage, collect
from legato.testing import FakeProvider, Reply

REPLY = Reply(
    text="Looking it up — “Zürich” ☀️",
    tool_calls=[ToolCall(id="call_9", name="lookup", arguments='{"city": "Zürich", "units": ["C"]}')],
    usage=Usage(input_tokens=120, output_tokens=30, cached_input_tokens=100),
    chunk_chars=5,
)
USER: Any = [{"role": "user", "content": "weather?"}]
REQUEST = ChatRequest(messages=[Message(role="user", content="weather?")])


async def test_openai_adapter_matches_sdk(fake_provider: FakeProvider) -> None:
    fake_provider.script(REPLY, REPLY, REPLY, REPLY)
    sdk = openai.AsyncOpenAI(base_url=fake_provider.openai_base_url, api_key="sk", max_retries=0)
    model = OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url, api_key="sk")
    theirs = await sdk.chat.completions.create(model="gpt-4o-mini", messages=USER)
    ours = await model.chat(REQUEST)
    async with sdk.chat.completions.stream(model="gpt-4o-mini", messages=USER) as stream:
        theirs_streamed = await stream.get_final_completion()
    ours_streamed = await collect(model.stream(REQUEST))
    await sdk.close()
    await model.aclose()
    for t, o in ((theirs, ours), (theirs_streamed, ours_streamed)):
        message = t.choices[0].message
        assert o.text == message.content
        assert [(c.id, c.name, c.arguments) for c in o.message.tool_calls or []] == [
            (c.id, c.function.name, c.function.arguments)  # type: ignore[union-attr]
            for c in message.tool_calls or []
        ]
        assert o.finish_reason == t.choices[0].finish_reason
    assert theirs.usage is not None
    assert ours.usage.input_tokens == theirs.usage.prompt_tokens
    assert ours.usage.cached_input_tokens == theirs.usage.prompt_tokens_details.cached_tokens  # type: ignore[union-attr]


async def test_anthropic_adapter_matches_sdk(fake_provider: FakeProvider) -> None:
    fake_provider.script(REPLY, REPLY, REPLY, REPLY)
    sdk = anthropic.AsyncAnthropic(base_url=fake_provider.anthropic_base_url, api_key="sk", max_retries=0)
    model = AnthropicModel("claude-3-5-haiku-latest", base_url=fake_provider.anthropic_base_url, api_key="sk")
    theirs = await sdk.messages.create(model="claude-3-5-haiku-latest", max_tokens=64, messages=USER)
    ours = await model.chat(REQUEST)
    async with sdk.messages.stream(model="claude-3-5-haiku-latest", max_tokens=64, messages=USER) as stream:
        theirs_streamed = await stream.get_final_message()
    ours_streamed = await collect(model.stream(REQUEST))
    await sdk.close()
    await model.aclose()
    for t, o in ((theirs, ours), (theirs_streamed, ours_streamed)):
        texts = "".join(b.text for b in t.content if b.type == "text")
        tools = [(b.id, b.name, b.input) for b in t.content if b.type == "tool_use"]
        assert o.text == texts
        assert [(c.id, c.name, json.loads(c.arguments)) for c in o.message.tool_calls or []] == tools
        cache_read = t.usage.cache_read_input_tokens or 0
        assert o.usage.input_tokens == t.usage.input_tokens + cache_read + (t.usage.cache_creation_input_tokens or 0)
        assert o.usage.cached_input_tokens == cache_read
        assert o.usage.output_tokens == t.usage.output_tokens
        assert o.finish_reason == "tool_calls"
