"""SmolLM2-135M-Instruct, loaded in-process from its GGUF file (about 20 s, once)."""

from __future__ import annotations

import pytest

from legato import tasks
from legato.errors import BadRequest, MalformedResponse
from legato.ledger import Ledger, use_ledger
from legato.providers import ChatRequest, Message, Tool

pytestmark = [pytest.mark.local_models, pytest.mark.slow]


async def test_local_chat_model_answers_with_usage_and_zero_cost(generate_task: tasks.GenerateTask) -> None:
    model = tasks.LocalChatModel(generate_task)
    request = ChatRequest(
        messages=[
            Message(role="system", content="Answer in one short sentence."),
            Message(role="user", content="What is the capital of France?"),
        ],
        max_tokens=24,
    )
    ledger = Ledger(name="test")
    with use_ledger(ledger):
        response = await model.chat(request)
    assert "paris" in response.text.lower()
    assert response.provider == "local"
    assert response.cost == 0.0
    assert response.usage.input_tokens > 5
    assert 0 < response.usage.output_tokens <= 24
    assert response.finish_reason in {"stop", "length"}
    assert ledger.calls == 1


async def test_stream_yields_the_answer_then_the_final_chunk(generate_task: tasks.GenerateTask) -> None:
    model = tasks.LocalChatModel(generate_task)
    request = ChatRequest(messages=[Message(role="user", content="Say hello.")], max_tokens=8)
    chunks = [chunk async for chunk in model.stream(request)]
    assert chunks[0].text
    assert chunks[-1].finish_reason is not None
    assert chunks[-1].usage is not None


async def test_tools_are_refused(generate_task: tasks.GenerateTask) -> None:
    model = tasks.LocalChatModel(generate_task)
    request = ChatRequest(messages=[Message(role="user", content="hi")], tools=[Tool(name="lookup")])
    with pytest.raises(BadRequest, match="tools"):
        await model.chat(request)


def test_check_generation_rejects_empty_and_looping_output() -> None:
    assert tasks.check_generation("Paris is the capital of France.") is None
    assert tasks.check_generation("   ") == "the model returned no text"
    problem = tasks.check_generation("the cat sat on the mat " * 10)
    assert problem is not None
    assert "repeated" in problem


async def test_a_degenerate_answer_is_a_malformed_response(generate_task: tasks.GenerateTask) -> None:
    model = tasks.LocalChatModel(generate_task)
    request = ChatRequest(
        messages=[Message(role="user", content="Repeat the word 'go' forever: go go go go go go go go go go go go")],
        max_tokens=64,
    )
    outcome: MalformedResponse | str
    try:
        outcome = (await model.chat(request)).text
    except MalformedResponse as exc:
        outcome = exc
    if isinstance(outcome, MalformedResponse):
        assert outcome.provider == "local"
    else:  # whatever gets through the check is usable text
        assert tasks.check_generation(outcome) is None
