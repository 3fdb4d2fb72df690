"""The official OpenAI and Anthropic SDKs, as clients of the fake provider.

If the SDKs parse the fake's answers and raise their own exception class for each
injected error, the fake speaks the real wire formats; the adapters are then tested
against the same fake.
"""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from legato.providers import ToolCall
from legato.testing import ERROR_KINDS, FakeProvider, Fault, Reply

OPENAI_CLASSES: dict[str, type[Exception]] = {
    "bad_request": openai.BadRequestError,
    "auth": openai.AuthenticationError,
    "permission": openai.PermissionDeniedError,
    "not_found": openai.NotFoundError,
    "rate_limit": openai.RateLimitError,
    "quota": openai.RateLimitError,
    "context_length": openai.BadRequestError,
    "content_filter": openai.BadRequestError,
    "server": openai.InternalServerError,
    "overloaded": openai.InternalServerError,
}

ANTHROPIC_CLASSES: dict[str, type[Exception]] = {
    "bad_request": anthropic.BadRequestError,
    "auth": anthropic.AuthenticationError,
    "permission": anthropic.PermissionDeniedError,
    "not_found": anthropic.NotFoundError,
    "rate_limit": anthropic.RateLimitError,
    "quota": anthropic.BadRequestError,
    "context_length": anthropic.BadRequestError,
    "content_filter": anthropic.BadRequestError,
    "server": anthropic.InternalServerError,
    "overloaded": anthropic.OverloadedError,
}

CALL = ToolCall(id="call_abc", name="get_weather", arguments='{"city": "Zürich", "days": [1, 2]}')
USER: Any = [{"role": "user", "content": "What is the weather?"}]


def oai(fake: FakeProvider) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="sk-test", max_retries=0)


def ant(fake: FakeProvider) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=fake.anthropic_base_url, api_key="sk-ant-test", max_retries=0)


def test_error_tables_cover_every_kind() -> None:
    assert set(OPENAI_CLASSES) == set(ERROR_KINDS) == set(ANTHROPIC_CLASSES)


async def test_openai_plain_reply_and_usage(fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="Sunny, 21 degrees."))
    async with oai(fake_provider) as client:
        r = await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert r.choices[0].message.content == "Sunny, 21 degrees."
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert r.usage.completion_tokens > 0
    assert r.model == "gpt-4o-mini"
    [rec] = fake_provider.requests
    assert rec.api == "openai.chat"
    assert rec.body["messages"] == USER
    assert rec.headers["authorization"] == "Bearer sk-test"


async def test_openai_stream_with_tool_call_and_usage(fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="Let me check.", tool_calls=[CALL], chunk_chars=3))
    text, args, final_usage, finish = "", "", None, None
    async with oai(fake_provider) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            if chunk.usage is not None:
                final_usage = chunk.usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                for tc in choice.delta.tool_calls or []:
                    args += tc.function.arguments or "" if tc.function else ""
                finish = choice.finish_reason or finish
    assert text == "Let me check."
    assert args == CALL.arguments
    assert finish == "tool_calls"
    assert final_usage is not None
    assert final_usage.prompt_tokens > 0


async def test_openai_sdk_stream_helper_assembles_tool_calls(fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="", tool_calls=[CALL, CALL.model_copy(update={"id": "call_2"})], chunk_chars=1))
    async with (
        oai(fake_provider) as client,
        client.chat.completions.stream(
            model="gpt-4o-mini",
            messages=USER,
        ) as stream,
    ):
        final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [c.id for c in calls] == ["call_abc", "call_2"]
    assert all(c.function.arguments == CALL.arguments for c in calls)


async def test_openai_embeddings_float_and_base64(fake_provider: FakeProvider) -> None:
    async with oai(fake_provider) as client:
        default = await client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
        floats = await client.embeddings.create(
            model="text-embedding-3-small", input=["a", "b"], encoding_format="float", dimensions=8
        )
    assert len(default.data) == 2
    assert len(default.data[0].embedding) == fake_provider.embedding_dims
    assert len(floats.data[1].embedding) == 8
    assert default.data[0].embedding != default.data[1].embedding


@pytest.mark.parametrize("kind", ERROR_KINDS)
async def test_openai_sdk_raises_its_class_for_each_error(fake_provider: FakeProvider, kind: str) -> None:
    fake_provider.script(Fault.http_error(kind, retry_after=3))
    async with oai(fake_provider) as client:
        with pytest.raises(OPENAI_CLASSES[kind]) as info:
            await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    err = info.value
    assert isinstance(err, openai.APIStatusError)
    assert err.request_id
    assert err.request_id.startswith("req_")
    assert err.response.headers["retry-after"] == "3"
    assert isinstance(err.body, dict)
    assert "type" in err.body
    assert "code" in err.body


@pytest.mark.parametrize("kind", ERROR_KINDS)
async def test_anthropic_sdk_raises_its_class_for_each_error(fake_provider: FakeProvider, kind: str) -> None:
    fake_provider.script(Fault.http_error(kind))
    async with ant(fake_provider) as client:
        with pytest.raises(ANTHROPIC_CLASSES[kind]) as info:
            await client.messages.create(model="claude-3-5-haiku-latest", max_tokens=64, messages=USER)
    assert isinstance(info.value, anthropic.APIStatusError)
    assert info.value.request_id is not None
    assert info.value.request_id.startswith("req_")


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.reset(), openai.APIConnectionError),
        (Fault.malformed(), ValueError),
        (Fault.raw(502, "<html>bad gateway</html>"), openai.InternalServerError),
    ],
)
async def test_openai_sdk_transport_faults(fake_provider: FakeProvider, fault: Fault, error: type[Exception]) -> None:
    fake_provider.script(fault)
    async with oai(fake_provider) as client:
        with pytest.raises(error):
            await client.chat.completions.create(model="gpt-4o-mini", messages=USER)


async def test_openai_sdk_mid_stream_faults(fake_provider: FakeProvider) -> None:
    fake_provider.script(Fault.stream_error("server", after_chunks=2), Fault.disconnect(after_chunks=2))
    async with oai(fake_provider) as client:
        with pytest.raises(openai.APIError, match="server had an error"):
            async for _ in await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=USER,
                stream=True,
            ):
                pass
        with pytest.raises(openai.APIConnectionError):
            async for _ in await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=USER,
                stream=True,
            ):
                pass
    assert [r.outcome for r in fake_provider.requests] == ["200", "disconnect"]


async def test_anthropic_plain_and_tool_use(fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="Checking.", tool_calls=[CALL]))
    async with ant(fake_provider) as client:
        m = await client.messages.create(model="claude-3-5-haiku-latest", max_tokens=64, messages=USER)
    assert m.stop_reason == "tool_use"
    assert m.content[0].type == "text"
    assert m.content[0].text == "Checking."
    tool = m.content[1]
    assert tool.type == "tool_use"
    assert tool.input == {"city": "Zürich", "days": [1, 2]}
    headers = fake_provider.requests[0].headers
    assert "sk-ant-test" in (headers.get("x-api-key") or headers.get("authorization", ""))
    assert "anthropic-version" in headers


async def test_anthropic_stream_assembles_text_and_tool_input(fake_provider: FakeProvider) -> None:
    cached = Reply(text="Sure thing.", tool_calls=[CALL], chunk_chars=2)
    fake_provider.script(cached)
    async with (
        ant(fake_provider) as client,
        client.messages.stream(
            model="claude-3-5-haiku-latest",
            max_tokens=64,
            messages=USER,
        ) as stream,
    ):
        final = await stream.get_final_message()
    assert final.content[0].type == "text"
    assert final.content[0].text == "Sure thing."
    assert final.content[1].type == "tool_use"
    assert final.content[1].input == {"city": "Zürich", "days": [1, 2]}
    assert final.usage.output_tokens > 0


async def test_anthropic_mid_stream_error_event(fake_provider: FakeProvider) -> None:
    fake_provider.script(Fault.stream_error("overloaded", after_chunks=3))
    async with ant(fake_provider) as client:
        with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
            async with client.messages.stream(
                model="claude-3-5-haiku-latest",
                max_tokens=64,
                messages=USER,
            ) as stream:
                await stream.get_final_message()
