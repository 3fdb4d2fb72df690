"""The official ``openai`` SDK against the gateway: plain, streaming, tools, embeddings, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from legato.providers import ToolCall, Usage
from legato.testing import Fault, Reply

from .conftest import Running


@pytest.fixture(scope="module")
def key(gateway: Running) -> str:
    return gateway.create_key(["chat", "embed"])


@pytest.fixture
def client(gateway: Running, key: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=key, base_url=gateway.url + "/v1", max_retries=0) as c:
        yield c


def test_plain(client: openai.OpenAI, gateway: Running) -> None:
    gateway.fake.script(Reply(text="Paris.", usage=Usage(input_tokens=12, output_tokens=2)))
    resp = client.chat.completions.create(
        model="gpt-fake",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
        temperature=0.2,
        max_tokens=20,
    )
    assert resp.choices[0].message.content == "Paris."
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (12, 2)
    sent = gateway.fake.requests[-1].body
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["max_tokens"] == 20 or sent.get("max_completion_tokens") == 20


def test_streaming(client: openai.OpenAI, gateway: Running) -> None:
    gateway.fake.script(Reply(text="one two three four", chunk_chars=4, usage=Usage(input_tokens=3, output_tokens=4)))
    stream = client.chat.completions.create(
        model="gpt-fake",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


def test_tools_plain_and_streamed(client: openai.OpenAI, gateway: Running) -> None:
    call = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris", "unit": "c"}')
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    gateway.fake.script(Reply(tool_calls=[call], finish_reason="tool_calls"))
    resp = client.chat.completions.create(
        model="gpt-fake", messages=[{"role": "user", "content": "weather?"}], tools=tools, tool_choice="auto"
    )
    got = resp.choices[0].message.tool_calls
    assert got is not None
    assert got[0].function.name == "get_weather"
    assert json.loads(got[0].function.arguments) == {"city": "Paris", "unit": "c"}
    assert resp.choices[0].finish_reason == "tool_calls"
    assert gateway.fake.requests[-1].body["tools"][0]["function"]["name"] == "get_weather"

    gateway.fake.script(Reply(tool_calls=[call], finish_reason="tool_calls", chunk_chars=3))
    stream = client.chat.completions.create(
        model="gpt-fake", messages=[{"role": "user", "content": "weather?"}], tools=tools, stream=True
    )
    args, names = "", []
    for chunk in stream:
        for d in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            args += d.function.arguments or "" if d.function else ""
            if d.function and d.function.name:
                names.append(d.function.name)
    assert names == ["get_weather"]
    assert json.loads(args) == {"city": "Paris", "unit": "c"}

    # The tool result goes back in the next turn.
    gateway.fake.script(Reply(text="It is sunny."))
    resp = client.chat.completions.create(
        model="gpt-fake",
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
    )
    assert resp.choices[0].message.content == "It is sunny."
    assert gateway.fake.requests[-1].body["messages"][-1]["tool_call_id"] == "call_1"


def test_json_schema_response_format(client: openai.OpenAI, gateway: Running) -> None:
    gateway.fake.script(Reply(text='{"answer": 4}'))
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    resp = client.chat.completions.create(
        model="gpt-fake",
        messages=[{"role": "user", "content": "2+2"}],
        response_format={"type": "json_schema", "json_schema": {"name": "sum", "schema": schema, "strict": True}},
    )
    assert json.loads(resp.choices[0].message.content or "") == {"answer": 4}
    sent = gateway.fake.requests[-1].body["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["schema"] == schema


def test_any_format_reaches_any_backend(client: openai.OpenAI, gateway: Running) -> None:
    """An OpenAI client calling a model served by an Anthropic backend."""
    gateway.fake.script(Reply(text="Bonjour"))
    resp = client.chat.completions.create(
        model="claude-fake", messages=[{"role": "system", "content": "French"}, {"role": "user", "content": "hi"}]
    )
    assert resp.choices[0].message.content == "Bonjour"
    rec = gateway.fake.requests[-1]
    assert rec.api == "anthropic.messages"
    assert rec.body["system"] in ("French", [{"type": "text", "text": "French"}])


def test_embeddings(client: openai.OpenAI, gateway: Running) -> None:
    resp = client.embeddings.create(model="gpt-fake", input=["hello", "world"])
    assert [d.index for d in resp.data] == [0, 1]
    assert len(resp.data[0].embedding) == 16
    assert resp.data[0].embedding != resp.data[1].embedding


def test_models(client: openai.OpenAI) -> None:
    assert sorted(m.id for m in client.models.list()) == ["claude-fake", "gpt-fake"]


@pytest.mark.parametrize(
    ("fault", "exc", "status"),
    [
        (Fault.rate_limited(retry_after=3), openai.RateLimitError, 429),
        (Fault.http_error("quota"), openai.RateLimitError, 429),
        (Fault.http_error("bad_request"), openai.BadRequestError, 400),
        (Fault.http_error("context_length"), openai.BadRequestError, 400),
        (Fault.http_error("content_filter"), openai.BadRequestError, 400),
        (Fault.http_error("not_found"), openai.NotFoundError, 404),
        (Fault.http_error("permission"), openai.PermissionDeniedError, 403),
        (Fault.http_error("auth"), openai.InternalServerError, 502),
        (Fault.overloaded(), openai.InternalServerError, 503),
        (Fault.server_error(), openai.InternalServerError, 502),
        (Fault.malformed(), openai.InternalServerError, 502),
    ],
)
def test_upstream_errors_become_sdk_exceptions(
    client: openai.OpenAI, gateway: Running, fault: Fault, exc: type[openai.APIStatusError], status: int
) -> None:
    gateway.fake.script(fault)
    with pytest.raises(exc) as err:
        client.chat.completions.create(model="gpt-fake", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == status
    assert isinstance(err.value.body, dict)
    assert err.value.body.get("message")
    if status == 429 and fault.error == "rate_limit":
        assert err.value.response.headers["retry-after"] == "3"


def test_mid_stream_error_reaches_the_sdk(client: openai.OpenAI, gateway: Running) -> None:
    gateway.fake.script(Fault.stream_error("overloaded", after_chunks=2))
    stream = client.chat.completions.create(model="gpt-fake", messages=[{"role": "user", "content": "x"}], stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_gateway_errors_become_sdk_exceptions(gateway: Running, key: str) -> None:
    url = gateway.url + "/v1"
    messages = [{"role": "user", "content": "hi"}]
    with (
        openai.OpenAI(api_key="lg_" + "x" * 40, base_url=url, max_retries=0) as unknown,
        pytest.raises(openai.AuthenticationError),
    ):
        unknown.chat.completions.create(model="gpt-fake", messages=messages)
    embed_only = gateway.create_key(["embed"])
    with (
        openai.OpenAI(api_key=embed_only, base_url=url, max_retries=0) as other,
        pytest.raises(openai.PermissionDeniedError),
    ):
        other.chat.completions.create(model="gpt-fake", messages=messages)
    with openai.OpenAI(api_key=key, base_url=url, max_retries=0) as client:
        _invalid_requests_make_no_provider_call(client, gateway)


def _invalid_requests_make_no_provider_call(client: openai.OpenAI, gateway: Running) -> None:
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=messages)
    before = len(gateway.fake.requests)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-fake", messages=messages, max_tokens=1_000_000)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-fake", messages=[])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-fake", messages=[{"role": "tool", "content": "no id"}])  # type: ignore[list-item,misc]
    assert len(gateway.fake.requests) == before  # not one provider call
