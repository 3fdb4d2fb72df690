"""The official ``anthropic`` SDK against the gateway: plain, streaming, tools, errors."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest

from legato.providers import ToolCall, Usage
from legato.testing import Fault, Reply

from .conftest import Running


@pytest.fixture(scope="module")
def key(gateway: Running) -> str:
    return gateway.create_key(["chat"])


@pytest.fixture
def client(gateway: Running, key: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key=key, base_url=gateway.url, max_retries=0) as c:
        yield c


def test_plain(client: anthropic.Anthropic, gateway: Running) -> None:
    gateway.fake.script(Reply(text="Paris.", usage=Usage(input_tokens=9, output_tokens=2)))
    msg = client.messages.create(
        model="claude-fake",
        max_tokens=50,
        system="Be brief.",
        messages=[{"role": "user", "content": "Capital of France?"}],
    )
    assert msg.content[0].type == "text"
    assert msg.content[0].text == "Paris."
    assert msg.stop_reason == "end_turn"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (9, 2)
    sent = gateway.fake.requests[-1].body
    assert sent["max_tokens"] == 50


def test_streaming(client: anthropic.Anthropic, gateway: Running) -> None:
    gateway.fake.script(Reply(text="streamed words here", chunk_chars=5))
    with client.messages.stream(
        model="claude-fake", max_tokens=50, messages=[{"role": "user", "content": "go"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "streamed words here"
    assert final.stop_reason == "end_turn"


def test_tools_plain_and_streamed(client: anthropic.Anthropic, gateway: Running) -> None:
    call = ToolCall(id="toolu_1", name="get_weather", arguments='{"city": "Oslo"}')
    tools = [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {}}}]
    gateway.fake.script(Reply(tool_calls=[call], finish_reason="tool_calls"))
    msg = client.messages.create(
        model="claude-fake", max_tokens=100, tools=tools, messages=[{"role": "user", "content": "weather?"}]
    )
    block = next(b for b in msg.content if b.type == "tool_use")
    assert (block.name, block.input, msg.stop_reason) == ("get_weather", {"city": "Oslo"}, "tool_use")

    gateway.fake.script(Reply(tool_calls=[call], finish_reason="tool_calls", chunk_chars=4))
    with client.messages.stream(
        model="claude-fake", max_tokens=100, tools=tools, messages=[{"role": "user", "content": "weather?"}]
    ) as stream:
        final = stream.get_final_message()
    block = next(b for b in final.content if b.type == "tool_use")
    assert (block.name, block.input) == ("get_weather", {"city": "Oslo"})

    gateway.fake.script(Reply(text="Cold."))
    msg = client.messages.create(
        model="claude-fake",
        max_tokens=100,
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "-5C"}]},
        ],
    )
    assert msg.content[0].text == "Cold."  # type: ignore[union-attr]


def test_anthropic_client_reaches_an_openai_backend(client: anthropic.Anthropic, gateway: Running) -> None:
    gateway.fake.script(Reply(text="from openai"))
    msg = client.messages.create(
        model="gpt-fake", max_tokens=20, system="sys", messages=[{"role": "user", "content": "hi"}]
    )
    assert msg.content[0].text == "from openai"  # type: ignore[union-attr]
    rec = gateway.fake.requests[-1]
    assert rec.api == "openai.chat"
    assert rec.body["messages"][0] == {"role": "system", "content": "sys"}


@pytest.mark.parametrize(
    ("fault", "exc", "status"),
    [
        (Fault.rate_limited(retry_after=2), anthropic.RateLimitError, 429),
        (Fault.http_error("bad_request"), anthropic.BadRequestError, 400),
        (Fault.http_error("not_found"), anthropic.NotFoundError, 404),
        (Fault.http_error("permission"), anthropic.PermissionDeniedError, 403),
        (Fault.overloaded(), anthropic.InternalServerError, 503),
        (Fault.server_error(), anthropic.InternalServerError, 502),
    ],
)
def test_upstream_errors_become_sdk_exceptions(
    client: anthropic.Anthropic, gateway: Running, fault: Fault, exc: type[anthropic.APIStatusError], status: int
) -> None:
    gateway.fake.script(fault)
    with pytest.raises(exc) as err:
        client.messages.create(model="claude-fake", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == status
    body = err.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["message"]


def test_mid_stream_error_reaches_the_sdk(client: anthropic.Anthropic, gateway: Running) -> None:
    gateway.fake.script(Fault.stream_error("overloaded", after_chunks=2))
    with (
        pytest.raises(anthropic.APIStatusError),
        client.messages.stream(
            model="claude-fake", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        for _ in stream:
            pass


def test_gateway_errors_in_anthropic_shape(gateway: Running, key: str) -> None:
    with (
        anthropic.Anthropic(api_key="lg_" + "y" * 40, base_url=gateway.url, max_retries=0) as bad,
        pytest.raises(anthropic.AuthenticationError) as err,
    ):
        bad.messages.create(model="claude-fake", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert err.value.body == {"type": "error", "error": {"type": "authentication_error", "message": "invalid API key"}}
    before = len(gateway.fake.requests)
    with anthropic.Anthropic(api_key=key, base_url=gateway.url, max_retries=0) as client:
        with pytest.raises(anthropic.BadRequestError):
            client.messages.create(model="claude-fake", max_tokens=0, messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(anthropic.NotFoundError):
            client.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert len(gateway.fake.requests) == before


def test_models_list_in_anthropic_shape(client: anthropic.Anthropic) -> None:
    assert sorted(m.id for m in client.models.list()) == ["claude-fake", "gpt-fake"]
