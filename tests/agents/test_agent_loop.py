"""The agent loop against the fake provider, in OpenAI and Anthropic formats."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
import pytest
from pydantic import Field

from legato.agents import Agent, AgentOutcome, MemoryJournal, ToolErrorKind, function_tool
from legato.errors import AgentLimitReached, InvalidToolArguments, ToolFailed, UnknownTool
from legato.ledger import Ledger, use_ledger
from legato.providers import AnthropicModel, Model, OpenAIModel, ToolCall, Usage
from legato.testing import FakeProvider, Reply
from legato.testing.pytest_plugin import fake_provider

__all__ = ["fake_provider"]

FORMATS = ["openai", "anthropic"]


@pytest.fixture(params=FORMATS)
async def fake_and_model(request: pytest.FixtureRequest) -> AsyncIterator[tuple[FakeProvider, Model, str]]:
    async with FakeProvider(seed=0) as fake:
        if request.param == "openai":
            model: Model = OpenAIModel("gpt-4o-mini", base_url=fake.openai_base_url, api_key="sk-test")
            api = "openai.chat"
        else:
            model = AnthropicModel("claude-3-5-haiku-latest", base_url=fake.anthropic_base_url, api_key="sk-ant")
            api = "anthropic.messages"
        try:
            yield fake, model, api
        finally:
            await model.aclose()


def calls(*items: tuple[str, str, Any]) -> Reply:
    """A reply asking for tool calls: (id, name, arguments as a value or raw JSON text)."""
    tool_calls = [ToolCall(id=i, name=n, arguments=a if isinstance(a, str) else json.dumps(a)) for i, n, a in items]
    return Reply(
        text="", tool_calls=tool_calls, finish_reason="tool_calls", usage=Usage(input_tokens=10, output_tokens=5)
    )


def answer(text: str) -> Reply:
    return Reply(text=text, finish_reason="stop", usage=Usage(input_tokens=20, output_tokens=7))


def tool_messages(body: dict[str, Any], api: str) -> list[tuple[str, str]]:
    """(tool call id, content) of every tool result in a request body, in both formats."""
    found = []
    for message in body["messages"]:
        if api == "openai.chat" and message["role"] == "tool":
            found.append((message["tool_call_id"], message["content"]))
        if api == "anthropic.messages" and isinstance(message.get("content"), list):
            for block in message["content"]:
                if block.get("type") == "tool_result":
                    found.append((block["tool_use_id"], block["content"]))
    return found


async def get_weather(city: str, days: Annotated[int, Field(ge=1, le=7)] = 1) -> dict[str, Any]:
    """The forecast for a city.

    Args:
        city: The city's name.
        days: How many days ahead.
    """
    return {"city": city, "days": days, "sky": "clear"}


async def test_single_tool_call_then_answer(fake_and_model: tuple[FakeProvider, Model, str]) -> None:
    fake, model, api = fake_and_model
    fake.script(calls(("c1", "get_weather", {"city": "Oslo", "days": 2})), answer("Clear in Oslo."))
    result = await Agent(model, tools=[get_weather], system="Be brief.").run("Weather in Oslo?")

    assert result.outcome is AgentOutcome.ANSWERED
    assert result.text == "Clear in Oslo."
    assert [c.name for c in result.tool_calls] == ["get_weather"]
    sent = fake.requests_for(api)
    assert len(sent) == 2
    tools = sent[0].body["tools"]
    schema = tools[0]["function"]["parameters"] if api == "openai.chat" else tools[0]["input_schema"]
    assert schema["required"] == ["city"]
    assert schema["properties"]["city"]["description"] == "The city's name."
    assert schema["properties"]["days"]["maximum"] == 7
    ((call_id, content),) = tool_messages(sent[1].body, api)
    assert call_id == "c1"
    assert json.loads(content) == {"city": "Oslo", "days": 2, "sky": "clear"}
    assert result.usage.input_tokens == 30
    assert result.usage.output_tokens == 12
    assert len(result.turns) == 2


async def test_parallel_calls_run_concurrently(fake_and_model: tuple[FakeProvider, Model, str]) -> None:
    fake, model, api = fake_and_model
    both_started = anyio.Event()
    started = 0

    async def slow_lookup(key: str) -> str:
        """Look a key up."""
        nonlocal started
        started += 1
        if started == 2:
            both_started.set()
        with anyio.fail_after(5):  # a sequential loop would never get the second call started
            await both_started.wait()
        return f"value of {key}"

    fake.script(calls(("a", "slow_lookup", {"key": "x"}), ("b", "slow_lookup", {"key": "y"})), answer("done"))
    result = await Agent(model, tools=[slow_lookup]).run("look up x and y")

    assert result.outcome is AgentOutcome.ANSWERED
    results = tool_messages(fake.requests_for(api)[1].body, api)
    assert results == [("a", "value of x"), ("b", "value of y")]  # in the model's order


async def test_malformed_and_mismatched_arguments_go_back_to_the_model(
    fake_and_model: tuple[FakeProvider, Model, str],
) -> None:
    fake, model, api = fake_and_model
    # OpenAI sends arguments as text and can send broken JSON; Anthropic sends an
    # object, which can still be of the wrong shape.
    first = ("c1", "get_weather", '{"city": "Oslo",') if api == "openai.chat" else ("c1", "get_weather", {"town": 1})
    fake.script(
        calls(first, ("c2", "get_weather", {"city": "Oslo", "days": 99})),
        calls(("c3", "get_weather", {"city": "Oslo"})),
        answer("ok"),
    )
    result = await Agent(model, tools=[get_weather]).run("weather?")

    assert result.outcome is AgentOutcome.ANSWERED
    errors = [c.error for c in result.tool_calls]
    assert errors == [ToolErrorKind.INVALID_ARGUMENTS, ToolErrorKind.INVALID_ARGUMENTS, None]
    sent = tool_messages(fake.requests_for(api)[1].body, api)
    if api == "openai.chat":
        assert "not valid JSON" in sent[0][1]
    else:
        assert "city: Missing required argument; town: Unexpected keyword argument" in sent[0][1]
    assert "days: Input should be less than or equal to 7" in sent[1][1]


async def test_a_tool_that_raises_and_an_unknown_tool(fake_and_model: tuple[FakeProvider, Model, str]) -> None:
    fake, model, api = fake_and_model

    def refund(order_id: str) -> str:
        """Refund an order."""
        raise PermissionError(f"order {order_id} is locked")

    fake.script(calls(("r1", "refund", {"order_id": "A-1"}), ("r2", "delete_everything", {})), answer("sorry"))
    result = await Agent(model, tools=[refund]).run("refund A-1")

    assert result.outcome is AgentOutcome.ANSWERED
    first, second = result.tool_calls
    assert (first.error, first.error_type) == (ToolErrorKind.RAISED, "PermissionError")
    assert "PermissionError: order A-1 is locked" in first.content
    assert second.error is ToolErrorKind.UNKNOWN_TOOL
    assert "no tool named 'delete_everything'" in second.content
    assert "refund" in second.content
    assert len(tool_messages(fake.requests_for(api)[1].body, api)) == 2


async def test_on_tool_error_raise(fake_and_model: tuple[FakeProvider, Model, str]) -> None:
    fake, model, _ = fake_and_model
    ran: list[str] = []

    def refund(order_id: str) -> str:
        """Refund an order."""
        raise PermissionError("locked")

    def note(text: str) -> str:
        """Write a note."""
        ran.append(text)
        return "noted"

    fake.script(calls(("n1", "note", {"text": "hi"}), ("r1", "refund", {"order_id": "A-1"})))
    with pytest.raises(ToolFailed) as caught:
        await Agent(model, tools=[refund, note], on_tool_error="raise").run("refund")
    assert caught.value.tool == "refund"
    assert caught.value.call_id == "r1"
    assert isinstance(caught.value.__cause__, PermissionError)
    assert ran == ["hi"]  # the other calls of the turn still ran

    fake.script(calls(("x1", "nope", {})))
    with pytest.raises(UnknownTool):
        await Agent(model, tools=[note], on_tool_error="raise").run("x")
    fake.script(calls(("x2", "note", {"wrong": 1})))
    with pytest.raises(InvalidToolArguments):
        await Agent(model, tools=[note], on_tool_error="raise").run("x")


async def test_never_ending_tool_loop_stops_at_max_turns(fake_and_model: tuple[FakeProvider, Model, str]) -> None:
    fake, model, api = fake_and_model
    fake.default = calls(("again", "get_weather", {"city": "Oslo"}))
    result = await Agent(model, tools=[get_weather], max_turns=4).run("loop forever")

    assert result.outcome is AgentOutcome.MAX_TURNS
    assert len(fake.requests_for(api)) == 4
    assert result.text == ""
    with pytest.raises(AgentLimitReached) as caught:
        result.raise_for_outcome()
    assert caught.value.outcome == "max_turns"
    assert caught.value.result is result


async def test_token_and_cost_budgets(fake_and_model: tuple[FakeProvider, Model, str]) -> None:
    fake, model, api = fake_and_model
    fake.default = calls(("again", "get_weather", {"city": "Oslo"}))  # 15 tokens a turn
    result = await Agent(model, tools=[get_weather], max_turns=50, max_total_tokens=40).run("go")
    assert result.outcome is AgentOutcome.TOKEN_BUDGET
    assert len(result.turns) == 3
    assert result.usage.total_tokens == 45

    before = len(fake.requests_for(api))
    result = await Agent(model, tools=[get_weather], max_turns=50, max_cost=1e-5).run("go")
    assert result.outcome is AgentOutcome.COST_BUDGET
    assert result.cost >= 1e-5
    assert len(fake.requests_for(api)) - before == len(result.turns)


async def test_deadline_outcome(fake_and_model: tuple[FakeProvider, Model, str]) -> None:
    fake, model, _ = fake_and_model
    gate = anyio.Event()

    async def wait_forever() -> str:
        """Never returns."""
        await gate.wait()
        return "never"

    fake.script(calls(("w", "wait_forever", {})))
    result = await Agent(model, tools=[wait_forever], deadline=0.2).run("go")
    assert result.outcome is AgentOutcome.DEADLINE
    assert len(result.turns) == 1


async def test_turns_are_recorded_in_the_ledger(fake_and_model: tuple[FakeProvider, Model, str]) -> None:
    fake, model, _ = fake_and_model
    fake.script(calls(("c1", "get_weather", {"city": "Oslo"})), answer("fine"))
    ledger = Ledger(name="step")
    with use_ledger(ledger):
        result = await Agent(model, tools=[get_weather]).run("weather")
    assert ledger.calls == 2
    assert (ledger.input_tokens, ledger.output_tokens) == (30, 12)
    assert [(t.input_tokens, t.output_tokens) for t in result.turns] == [(10, 5), (20, 7)]
    assert ledger.cost == pytest.approx(result.cost)
    assert result.cost > 0


async def test_a_journal_replays_turns_and_tool_calls(fake_and_model: tuple[FakeProvider, Model, str]) -> None:
    fake, model, api = fake_and_model
    side_effects: list[str] = []

    def charge(amount: int) -> str:
        """Charge the card."""
        side_effects.append(f"charged {amount}")
        return "ok"

    journal = MemoryJournal()
    fake.script(calls(("c1", "charge", {"amount": 5})), answer("charged"))
    first = await Agent(model, tools=[charge]).run("charge 5", journal=journal)
    assert first.outcome is AgentOutcome.ANSWERED

    again = await Agent(model, tools=[charge]).run("charge 5", journal=journal)
    assert again.text == "charged"
    assert again.resumed_turns == 2
    assert side_effects == ["charged 5"]
    assert len(fake.requests_for(api)) == 2

    # A journal cut after the model asked for the tool: only the tool runs, then one new turn.
    cut = MemoryJournal()
    cut.entries = journal.entries[:1]
    fake.script(answer("charged again"))
    resumed = await Agent(model, tools=[charge]).run("charge 5", journal=cut)
    assert resumed.text == "charged again"
    assert side_effects == ["charged 5", "charged 5"]
    assert len(fake.requests_for(api)) == 3


def test_function_tool_schema_and_names() -> None:
    @function_tool(name="weather")
    def forecast(city: str, units: str = "c") -> str:
        """Forecast.

        :param city: where
        """
        return city

    assert forecast.spec.name == "weather"
    assert forecast.spec.description == "Forecast."
    assert forecast.spec.parameters["properties"]["city"] == {"type": "string", "description": "where"}

    def variadic(*args: str) -> None:
        """No."""

    with pytest.raises(ValueError, match="named parameter"):
        function_tool(variadic)
    with pytest.raises(ValueError, match="two tools are named"):
        Agent(OpenAIModel("m", base_url="http://127.0.0.1:9", api_key="k"), tools=[forecast, forecast])


async def test_spans_per_run_turn_and_tool_call(fake_provider: FakeProvider) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def broken() -> str:
        """Always fails."""
        raise KeyError("gone")

    fake_provider.script(calls(("c1", "get_weather", {"city": "Oslo"}), ("c2", "broken", {})), answer("done"))
    model = OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url, api_key="sk-test")
    try:
        agent = Agent(model, tools=[get_weather, broken], name="helper", tracer_provider=provider)
        await agent.run("go")
    finally:
        await model.aclose()
        provider.shutdown()
    found = {s.name: s for s in exporter.get_finished_spans()}
    assert set(found) == {"invoke_agent helper", "agent_turn 1", "agent_turn 2", "execute_tool get_weather",
                          "execute_tool broken"}  # fmt: skip
    root = found["invoke_agent helper"]
    assert root.attributes is not None
    assert root.attributes["legato.agent.outcome"] == "answered"
    turn = found["agent_turn 1"]
    assert turn.parent is not None
    assert turn.parent.span_id == root.context.span_id
    assert turn.attributes is not None
    assert turn.attributes["gen_ai.usage.input_tokens"] == 10
    assert turn.attributes["legato.agent.tool_calls"] == 2
    tool = found["execute_tool broken"]
    assert tool.parent is not None
    assert tool.parent.span_id == turn.context.span_id
    assert tool.attributes is not None
    assert tool.attributes["gen_ai.tool.call.id"] == "c2"
    assert tool.attributes["error.type"] == "KeyError"
    assert "error.type" not in (found["execute_tool get_weather"].attributes or {})


async def test_hostile_tool_results_and_a_sync_tool_past_the_deadline(fake_provider: FakeProvider) -> None:
    import threading

    release = threading.Event()

    def surrogate() -> str:
        """Returns text no provider accepts."""
        return "bad \udc80 bytes"

    def stuck() -> str:
        """A sync tool that does not return in time."""
        release.wait(10)
        return "late"

    fake_provider.script(
        calls(("s1", "surrogate", {}), ("d1", "surrogate", "[" * 100_000 + "]" * 100_000)), answer("fine")
    )
    model = OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url, api_key="sk-test")
    try:
        result = await Agent(model, tools=[surrogate]).run("go")
        assert result.outcome is AgentOutcome.ANSWERED
        assert result.tool_calls[0].content == "bad ? bytes"
        deep = result.tool_calls[1]
        assert deep.error is ToolErrorKind.INVALID_ARGUMENTS
        assert "nested too deeply" in deep.content

        fake_provider.script(calls(("k1", "stuck", {})))
        result = await Agent(model, tools=[stuck], deadline=0.3).run("go")
        assert result.outcome is AgentOutcome.DEADLINE
    finally:
        release.set()
        await model.aclose()


async def test_empty_and_repeated_call_ids_are_made_unique(fake_and_model: tuple[FakeProvider, Model, str]) -> None:
    fake, model, api = fake_and_model
    fake.script(
        calls(("", "get_weather", {"city": "Oslo"}), ("", "get_weather", {"city": "Rome"})),
        calls(("same", "get_weather", {"city": "Oslo"}), ("same", "get_weather", {"city": "Rome"})),
        answer("done"),
    )
    result = await Agent(model, tools=[get_weather]).run("two cities")
    assert result.outcome is AgentOutcome.ANSWERED
    assert [c.id for c in result.tool_calls] == ["call_1_0", "call_1_1", "same", "call_2_1"]
    sent = tool_messages(fake.requests_for(api)[2].body, api)
    assert [json.loads(content)["city"] for _, content in sent] == ["Oslo", "Rome", "Oslo", "Rome"]
    assert [call_id for call_id, _ in sent] == ["call_1_0", "call_1_1", "same", "call_2_1"]
