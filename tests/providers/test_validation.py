"""Invalid requests never reach the network: the fake records zero requests."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from legato import errors
from legato.providers import (
    AnthropicModel,
    ChatRequest,
    EmbedRequest,
    Message,
    Model,
    OpenAIModel,
    PythonModel,
    ResponseFormat,
    TGIModel,
    Tool,
)
from legato.testing import FakeProvider

GOOD = [Message(role="user", content="hi")]


def _constructed(**fields: Any) -> ChatRequest:
    """A request that skipped pydantic validation (as a caller may build one)."""
    base: dict[str, Any] = {
        "messages": GOOD,
        "model": None,
        "temperature": None,
        "top_p": None,
        "max_tokens": None,
        "stop": None,
        "seed": None,
        "tools": None,
        "tool_choice": None,
        "response_format": None,
        "user": None,
        "metadata": {},
    }
    base.update(fields)
    return ChatRequest.model_construct(**base)


BAD_ROLE: Any = "robot"

INVALID = {
    "empty messages": _constructed(messages=[]),
    "unknown role": _constructed(messages=[Message.model_construct(role=BAD_ROLE, content="hi")]),
    "negative max_tokens": _constructed(max_tokens=-5),
    "schema that is not JSON": _constructed(
        response_format=ResponseFormat.model_construct(
            type="json_schema", json_schema={"type": {1, 2}}, name="r", strict=None
        )
    ),
    "schema that is not a JSON schema": _constructed(
        response_format=ResponseFormat(type="json_schema", json_schema={"type": "banana"})
    ),
    "tool with an invalid schema": _constructed(tools=[Tool(name="t", parameters={"type": 5})]),
    "tool_choice naming no tool": _constructed(tool_choice="missing"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
async def test_rejected_before_any_network_call(fake_provider: FakeProvider, case: str) -> None:
    models: list[Model] = [
        OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url),
        AnthropicModel("claude-3-5-haiku-latest", base_url=fake_provider.anthropic_base_url),
        TGIModel(base_url=fake_provider.base_url),
        PythonModel(lambda r: "never", name="py"),
    ]
    for model in models:
        with pytest.raises(errors.BadRequest):
            await model.chat(INVALID[case])
        with pytest.raises(errors.BadRequest):
            async for _ in model.stream(INVALID[case]):
                pass
        await model.aclose()
    assert fake_provider.requests == []


def test_pydantic_rejects_the_same_requests_at_construction() -> None:
    with pytest.raises(ValidationError, match="messages"):
        ChatRequest(messages=[])
    with pytest.raises(ValidationError, match="role"):
        ChatRequest(messages=[{"role": "robot", "content": "x"}])
    with pytest.raises(ValidationError, match="max_tokens"):
        ChatRequest(messages=GOOD, max_tokens=-1)


async def test_empty_embed_inputs_rejected(fake_provider: FakeProvider) -> None:
    model = OpenAIModel("text-embedding-3-small", base_url=fake_provider.openai_base_url)
    with pytest.raises(errors.BadRequest, match="inputs"):
        await model.embed(EmbedRequest.model_construct(inputs=[], model=None, dimensions=None, metadata={}))
    await model.aclose()
    assert fake_provider.requests == []


async def test_chat_only_models_refuse_embed() -> None:
    model = AnthropicModel("claude-3-5-haiku-latest")
    with pytest.raises(errors.BadRequest, match="does not embed"):
        await model.embed(EmbedRequest(inputs=["x"]))
