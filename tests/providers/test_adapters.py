"""OpenAI, Azure, Anthropic, TGI and HF adapters against the fake provider."""

from __future__ import annotations

import json

import pytest

from legato import errors
from legato.ledger import Ledger, use_ledger
from legato.providers import (
    AnthropicModel,
    AzureOpenAIModel,
    ChatRequest,
    EmbedRequest,
    HuggingFaceModel,
    ImagePart,
    Message,
    OpenAIModel,
    ResponseFormat,
    TextPart,
    TGIModel,
    Tool,
    ToolCall,
    Usage,
    collect,
)
from legato.testing import FakeProvider, Fault, Reply

pytestmark = pytest.mark.usefixtures("each_wire")  # the lean wire and the aiohttp wire alike

WEATHER = Tool(
    name="weather",
    description="Current weather",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
CONVERSATION = [
    Message(role="system", content="Be brief."),
    Message(
        role="user",
        content=[TextPart(text="What is this?"), ImagePart(url="data:image/png;base64,iVBORw0KGgo=", detail="low")],
    ),
    Message(role="assistant", tool_calls=[ToolCall(id="call_1", name="weather", arguments='{"city": "Bern"}')]),
    Message(role="tool", tool_call_id="call_1", content="12 degrees"),
]


async def test_openai_payload_mapping(fake_provider: FakeProvider) -> None:
    model = OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url, api_key="sk")
    request = ChatRequest(
        messages=CONVERSATION,
        temperature=0.2,
        max_tokens=50,
        stop="END",
        seed=7,
        tools=[WEATHER],
        tool_choice="weather",
        user="u-1",
        metadata={"tenant": "acme"},
    )
    await model.chat(request)
    await model.aclose()
    body = fake_provider.requests[0].body
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["messages"][1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
    }
    assert body["messages"][2]["tool_calls"][0]["function"] == {"name": "weather", "arguments": '{"city": "Bern"}'}
    assert body["messages"][3] == {"role": "tool", "content": "12 degrees", "tool_call_id": "call_1"}
    assert body["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert body["stop"] == ["END"]
    assert body["max_tokens"] == 50  # compatible servers get max_tokens
    assert body["user"] == "u-1"
    assert "metadata" not in body  # request metadata never goes to the provider
    assert fake_provider.requests[0].headers["authorization"] == "Bearer sk"


async def test_openai_response_fields_and_json_schema(fake_provider: FakeProvider) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    fake_provider.script(
        Reply(
            text='{"n": 3}',
            model="gpt-4o-mini-2024-07-18",
            usage=Usage(input_tokens=1000, output_tokens=100, cached_input_tokens=400),
        )
    )
    model = OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url, api_key="sk")
    response = await model.chat(
        ChatRequest(
            messages=[Message(role="user", content="n?")],
            response_format=ResponseFormat(type="json_schema", json_schema=schema),
        )
    )
    await model.aclose()
    assert fake_provider.requests[0].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema},
    }
    assert response.text == '{"n": 3}'
    assert response.model == "gpt-4o-mini-2024-07-18"
    assert response.usage.cached_input_tokens == 400
    # 600 fresh * 0.15 + 400 cached * 0.075 + 100 out * 0.60, per 1M tokens
    assert response.cost == pytest.approx((600 * 0.15 + 400 * 0.075 + 100 * 0.6) / 1e6)
    assert response.request_id == fake_provider.requests[0].request_id
    assert response.latency_s is not None


async def test_openai_official_endpoint_uses_max_completion_tokens() -> None:
    model = OpenAIModel("o4-mini")
    payload = model._payload(ChatRequest(messages=[Message(role="user", content="x")], max_tokens=9))
    assert payload["max_completion_tokens"] == 9
    assert "max_tokens" not in payload


async def test_openai_stream_final_chunk_has_usage_and_cost(fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="streamed words", usage=Usage(input_tokens=10, output_tokens=4)))
    model = OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url, api_key="sk")
    chunks = [c async for c in model.stream(ChatRequest(messages=[Message(role="user", content="x")]))]
    await model.aclose()
    assert "".join(c.text for c in chunks) == "streamed words"
    final = chunks[-1]
    assert final.finish_reason == "stop"
    assert final.usage == Usage(input_tokens=10, output_tokens=4)
    assert final.cost == pytest.approx((10 * 0.15 + 4 * 0.6) / 1e6)
    assert fake_provider.requests[0].body["stream_options"] == {"include_usage": True}


async def test_openai_embeddings_decode_base64(fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(vectors=[[0.5, -1.25], [2.0, 0.0]]))
    model = OpenAIModel("text-embedding-3-small", base_url=fake_provider.openai_base_url, api_key="sk")
    response = await model.embed(EmbedRequest(inputs=["a", "b"], dimensions=2))
    await model.aclose()
    assert response.vectors == [[0.5, -1.25], [2.0, 0.0]]
    assert fake_provider.requests[0].body["encoding_format"] == "base64"
    assert response.cost is not None


async def test_azure_paths_and_key_header(fake_provider: FakeProvider) -> None:
    model = AzureOpenAIModel("my-gpt", endpoint=fake_provider.base_url, api_key="az-key", api_version="2024-10-21")
    response = await model.chat(ChatRequest(messages=[Message(role="user", content="hi")]))
    await model.aclose()
    rec = fake_provider.requests[0]
    assert rec.path == "/openai/deployments/my-gpt/chat/completions"
    assert rec.headers["api-key"] == "az-key"
    assert "authorization" not in rec.headers
    assert response.provider == "azure"


async def test_anthropic_payload_mapping(fake_provider: FakeProvider) -> None:
    model = AnthropicModel("claude-3-5-haiku-latest", base_url=fake_provider.anthropic_base_url, api_key="sk-ant")
    await model.chat(ChatRequest(messages=CONVERSATION, tools=[WEATHER], tool_choice="required", stop=["x"]))
    await model.aclose()
    rec = fake_provider.requests[0]
    body = rec.body
    assert rec.headers["x-api-key"] == "sk-ant"
    assert rec.headers["anthropic-version"] == "2023-06-01"
    assert body["system"] == "Be brief."
    assert body["max_tokens"] == 4096
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Bern"}}
    ]
    assert body["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "call_1", "content": "12 degrees"}]
    assert body["tools"][0]["input_schema"] == WEATHER.parameters
    assert body["tool_choice"] == {"type": "any"}
    assert body["stop_sequences"] == ["x"]


async def test_anthropic_usage_with_prompt_cache(fake_provider: FakeProvider) -> None:
    usage = Usage(input_tokens=3000, output_tokens=200, cached_input_tokens=2000, cache_write_tokens=500)
    fake_provider.script(Reply(text="hi", usage=usage), Reply(text="hi", usage=usage))
    model = AnthropicModel("claude-sonnet-4-5", base_url=fake_provider.anthropic_base_url, api_key="sk")
    plain = await model.chat(ChatRequest(messages=[Message(role="user", content="x")]))
    streamed = await collect(model.stream(ChatRequest(messages=[Message(role="user", content="x")])))
    await model.aclose()
    assert plain.usage == usage
    assert streamed.usage == usage
    expected = (500 * 3.0 + 2000 * 0.3 + 500 * 3.75 + 200 * 15.0) / 1e6
    assert plain.cost == pytest.approx(expected)
    assert streamed.cost == pytest.approx(expected)


async def test_anthropic_json_schema_through_a_forced_tool(fake_provider: FakeProvider) -> None:
    schema = {"type": "object", "properties": {"label": {"type": "string"}}}
    answer = ToolCall(id="toolu_1", name="verdict", arguments='{"label": "spam"}')
    fake_provider.script(Reply(tool_calls=[answer], text=""), Reply(tool_calls=[answer], text="", chunk_chars=3))
    model = AnthropicModel("claude-3-5-haiku-latest", base_url=fake_provider.anthropic_base_url, api_key="sk")
    request = ChatRequest(
        messages=[Message(role="user", content="classify")],
        response_format=ResponseFormat(type="json_schema", json_schema=schema, name="verdict"),
    )
    plain = await model.chat(request)
    streamed = await collect(model.stream(request))
    await model.aclose()
    body = fake_provider.requests[0].body
    assert body["tool_choice"] == {"type": "tool", "name": "verdict"}
    assert body["tools"][-1]["input_schema"] == schema
    for response in (plain, streamed):
        assert json.loads(response.text) == {"label": "spam"}
        assert response.message.tool_calls is None
        assert response.finish_reason == "stop"


async def test_anthropic_rejects_temperature_above_one(fake_provider: FakeProvider) -> None:
    model = AnthropicModel("claude-3-5-haiku-latest", base_url=fake_provider.anthropic_base_url, api_key="sk")
    with pytest.raises(errors.BadRequest, match="temperature"):
        await model.chat(ChatRequest(messages=[Message(role="user", content="x")], temperature=1.5))
    assert fake_provider.requests == []


async def test_tgi_generate_and_stream(fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="generated text", finish_reason="length"), api="tgi")
    fake_provider.script(Reply(text="streamed text", chunk_chars=2), api="tgi")
    model = TGIModel(base_url=fake_provider.base_url, price=None)
    plain = await model.chat(ChatRequest(messages=[Message(role="user", content="go")], max_tokens=5, temperature=0.5))
    streamed = await collect(model.stream(ChatRequest(messages=[Message(role="user", content="go")])))
    await model.aclose()
    assert plain.text == "generated text"
    assert plain.finish_reason == "length"
    assert streamed.text == "streamed text"
    params = fake_provider.requests[0].body["parameters"]
    assert params["max_new_tokens"] == 5
    assert params["temperature"] == 0.5
    assert fake_provider.requests[0].body["inputs"] == "go"


async def test_hf_tasks(fake_provider: FakeProvider) -> None:
    embedder = HuggingFaceModel("org/embedder", base_url=fake_provider.hf_base_url)
    summarizer = HuggingFaceModel("org/bart", task="summarization", base_url=fake_provider.hf_base_url)
    classifier = HuggingFaceModel("org/cls", task="text-classification", base_url=fake_provider.hf_base_url)
    vectors = await embedder.embed(EmbedRequest(inputs=["one", "two"]))
    fake_provider.script(Reply(text="Short."), api="hf.summarization")
    summary = await summarizer.chat(ChatRequest(messages=[Message(role="user", content="A long text.")]))
    labels = await classifier.chat(ChatRequest(messages=[Message(role="user", content="great")]))
    for m in (embedder, summarizer, classifier):
        await m.aclose()
    assert len(vectors.vectors) == 2
    assert len(vectors.vectors[0]) == fake_provider.embedding_dims
    assert summary.text == "Short."
    assert json.loads(labels.text)[0][0]["label"] == "POSITIVE"
    assert (
        next(r.path for r in fake_provider.requests) == "/hf-inference/models/org/embedder/pipeline/feature-extraction"
    )


async def test_every_finished_call_is_on_the_ledger(fake_provider: FakeProvider) -> None:
    openai = OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url, api_key="sk")
    anthropic = AnthropicModel("claude-3-5-haiku-latest", base_url=fake_provider.anthropic_base_url, api_key="sk")
    ledger = Ledger(name="run")
    step = ledger.child("step")
    request = ChatRequest(messages=[Message(role="user", content="count me")])
    with use_ledger(step):
        a = await openai.chat(request)
        b = await collect(anthropic.stream(request))
        c = await openai.embed(EmbedRequest(inputs=["x"]))
        fake_provider.script(Fault.server_error())
        with pytest.raises(errors.ServerError):
            await openai.chat(request)
    await openai.aclose()
    await anthropic.aclose()
    assert step.calls == 3
    assert ledger.calls == 3
    assert ledger.input_tokens == a.usage.input_tokens + b.usage.input_tokens + c.usage.input_tokens
    assert ledger.cost == pytest.approx((a.cost or 0) + (b.cost or 0) + (c.cost or 0))
    assert ledger.cost > 0
    assert ledger.unpriced_calls == 0


async def test_unknown_model_costs_none_with_one_warning(
    fake_provider: FakeProvider, caplog: pytest.LogCaptureFixture, each_wire: str
) -> None:
    name = f"my-finetune-xyz-{each_wire}"  # warned once per process: a model of its own per wire
    model = OpenAIModel(name, base_url=fake_provider.openai_base_url, provider="vllm")
    ledger = Ledger()
    with use_ledger(ledger), caplog.at_level("WARNING", logger="legato.providers"):
        first = await model.chat(ChatRequest(messages=[Message(role="user", content="x")]))
        second = await model.chat(ChatRequest(messages=[Message(role="user", content="y")]))
    await model.aclose()
    assert first.cost is None
    assert second.cost is None
    assert ledger.unpriced_calls == 2
    warnings = [r for r in caplog.records if name in r.getMessage()]
    assert len(warnings) == 1


async def test_constructors_open_nothing_and_pools_are_reused(fake_provider: FakeProvider) -> None:
    model = OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url)
    assert model._http is None
    await model.chat(ChatRequest(messages=[Message(role="user", content="1")]))
    client = model._http
    await model.chat(ChatRequest(messages=[Message(role="user", content="2")]))
    assert model._http is client
    await model.aclose()
    assert model._http is None


async def test_stream_without_usage_estimates_it(fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="twelve chars"))
    model = OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url, stream_usage=False)
    final = [c async for c in model.stream(ChatRequest(messages=[Message(role="user", content="x")]))][-1]
    await model.aclose()
    assert "stream_options" not in fake_provider.requests[0].body
    assert final.usage is not None
    assert final.usage.output_tokens == 3  # twelve characters at four per token
    assert final.cost is not None
