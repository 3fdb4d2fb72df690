"""The local Llama-class chat model: SmolLM2-135M-Instruct from its GGUF file (about 20 s to load, once)."""

from __future__ import annotations

import pytest

from legato import tasks
from legato.errors import BadRequest, MalformedResponse
from legato.ledger import Ledger, use_ledger
from legato.providers import ChatRequest, ChatResponse, Message, Model, PythonModel, Tool

pytestmark = [pytest.mark.local_models, pytest.mark.slow]


@pytest.fixture(scope="module")
def anyio_backend() -> str:  # as wide as the module fixture below that needs it
    return "asyncio"


@pytest.fixture(scope="module")
async def llama() -> tasks.LocalChatModel:
    model = tasks.LocalChatModel()
    await model.warm_up()
    return model


async def test_local_chat_model_answers_with_usage_and_zero_cost(llama: tasks.LocalChatModel) -> None:
    request = ChatRequest(
        messages=[
            Message(role="system", content="Answer in one short sentence."),
            Message(role="user", content="What is the capital of France?"),
        ],
        max_tokens=24,
    )
    ledger = Ledger(name="test")
    with use_ledger(ledger):
        response = await llama.chat(request)
    assert "paris" in response.text.lower()
    assert response.provider == "local"
    assert response.cost == 0.0
    assert response.usage.input_tokens > 5
    assert 0 < response.usage.output_tokens <= 24
    assert ledger.calls == 1


async def test_tools_are_refused(llama: tasks.LocalChatModel) -> None:
    request = ChatRequest(messages=[Message(role="user", content="hi")], tools=[Tool(name="lookup")])
    with pytest.raises(BadRequest, match="tools"):
        await llama.chat(request)


def test_check_generation_rejects_empty_and_looping_output() -> None:
    assert tasks.check_generation("Paris is the capital of France.") is None
    assert tasks.check_generation("   ") == "the model returned no text"
    problem = tasks.check_generation("the cat sat on the mat " * 10)
    assert problem is not None
    assert "repeated" in problem


async def test_a_degenerate_answer_is_a_malformed_response() -> None:
    def looping(request: ChatRequest) -> str:
        return "go " * 40

    model = tasks.LocalChatModel(PythonModel(looping, name="looping"))
    assert isinstance(model, Model)
    with pytest.raises(MalformedResponse, match="repeated itself") as info:
        await model.chat(ChatRequest(messages=[Message(role="user", content="Repeat go forever")]))
    assert info.value.retryable is False

    def fine(request: ChatRequest) -> str:
        return "Fine, thank you."

    answer = await tasks.LocalChatModel(PythonModel(fine, name="fine")).chat(
        ChatRequest(messages=[Message(role="user", content="How are you?")])
    )
    assert isinstance(answer, ChatResponse)
    assert answer.text == "Fine, thank you."
