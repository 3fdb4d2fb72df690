"""Model turns of an agent streamed out of its run: ``Pipeline.stream`` yields each
turn's text as :class:`StepToken` events of the ``agent:`` step, tool calls are still
assembled from the streamed chunks, and a run nobody streams makes plain calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from legato.agents import Agent, AgentOutcome, MemoryJournal
from legato.config import LegatoConfig
from legato.engine import Event, Pipeline, RunFinished, StepFinished, StepToken
from legato.providers import OpenAIModel, ToolCall, Usage
from legato.spec import load_pipeline
from legato.testing import FakeProvider, Reply
from legato.testing.pytest_plugin import fake_provider

__all__ = ["fake_provider"]

TOOLS = '''\
import json
from pathlib import Path


def lookup_order(order_id: str) -> dict:
    """Find an order by id."""
    return {"state": "shipped", "total": 40} if order_id == "A-1" else {"error": "no such order"}


def refund_amount(total: float) -> float:
    """How much to refund."""
    with Path(__file__).with_name("refunds.log").open("a") as log:
        log.write(json.dumps(total) + "\\n")
    return round(total / 2, 2)
'''

PIPELINE = """\
name: support
inputs:
  question: {type: string}
steps:
  answer:
    agent: fast
    prompt: "Customer asks: ${inputs.question}"
    tools: [./tools.py:lookup_order, ./tools.py:refund_amount]
    max_turns: 4
outputs:
  answer: ${steps.answer.text}
"""


def load(tmp_path: Path, base: str, provider: str = "openai") -> Pipeline:
    (tmp_path / "tools.py").write_text(TOOLS)
    (tmp_path / "support.yaml").write_text(PIPELINE)
    if provider == "openai":
        model = f"{{provider: openai, model: gpt-4o-mini, base_url: '{base}/v1'}}"
    else:
        model = f"{{provider: anthropic, model: claude-3-5-haiku-latest, base_url: '{base}'}}"
    (tmp_path / "legato.yaml").write_text(f"models:\n  fast: {model}\n")
    return load_pipeline(tmp_path / "support.yaml", config=LegatoConfig.load(tmp_path / "legato.yaml"))


THINKING = "Let me look that order up."
ANSWER = "Order A-1 has shipped; a refund of 20 is on its way."


def two_turns() -> tuple[Reply, Reply]:
    """A turn with text and two tool calls (arguments split over many chunks), then the answer."""
    tool_calls = [
        ToolCall(id="c1", name="lookup_order", arguments=json.dumps({"order_id": "A-1"})),
        ToolCall(id="c2", name="refund_amount", arguments=json.dumps({"total": 40})),
    ]
    usage = Usage(input_tokens=9, output_tokens=3)
    first = Reply(text=THINKING, tool_calls=tool_calls, finish_reason="tool_calls", usage=usage, chunk_chars=4)
    second = Reply(text=ANSWER, finish_reason="stop", usage=Usage(input_tokens=30, output_tokens=9), chunk_chars=5)
    return first, second


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_streamed_run_streams_every_turn_of_the_agent(
    tmp_path: Path, fake_provider: FakeProvider, provider: str
) -> None:
    pipeline = load(tmp_path, fake_provider.base_url, provider)
    fake_provider.script(*two_turns())

    events: list[Event] = [e async for e in pipeline.stream({"question": "Where is A-1?"})]

    assert isinstance(events[-1], RunFinished)
    assert events[-1].status == "succeeded"
    tokens = [e for e in events if isinstance(e, StepToken)]
    assert {t.step for t in tokens} == {"answer"}
    assert "".join(t.text for t in tokens) == THINKING + ANSWER
    assert len(tokens) == len(range(0, len(THINKING), 4)) + len(range(0, len(ANSWER), 5))
    finished = next(e for e in events if isinstance(e, StepFinished) and e.step == "answer")
    assert all(events.index(t) < events.index(finished) for t in tokens)
    # the tool calls were put together from the streamed chunks and ran once each
    output = finished.output
    assert output["text"] == ANSWER
    contents = {c["name"]: c["content"] for c in output["tool_calls"]}
    assert json.loads(contents["lookup_order"]) == {"state": "shipped", "total": 40}
    assert contents["refund_amount"] == "20.0"
    assert (tmp_path / "refunds.log").read_text() == "40.0\n"
    assert output["usage"]["input_tokens"] == 39
    bodies = [r.body for r in fake_provider.requests]
    assert len(bodies) == 2
    assert all(b.get("stream") is True for b in bodies)


async def test_a_run_nobody_streams_makes_plain_calls(tmp_path: Path, fake_provider: FakeProvider) -> None:
    pipeline = load(tmp_path, fake_provider.base_url)
    fake_provider.script(*two_turns())

    result = await pipeline.run(question="Where is A-1?")

    result.raise_for_status()
    assert result.result["answer"] == ANSWER
    bodies = [r.body for r in fake_provider.requests]
    assert len(bodies) == 2
    assert not any(b.get("stream") for b in bodies)


async def test_streamed_turns_are_journaled_and_replayed_without_text(fake_provider: FakeProvider) -> None:
    model = OpenAIModel("gpt-4o-mini", base_url=fake_provider.openai_base_url, api_key="sk-test")
    looked_up: list[str] = []

    def lookup_order(order_id: str) -> dict[str, Any]:
        """Find an order."""
        looked_up.append(order_id)
        return {"state": "shipped"}

    def refund_amount(total: float) -> float:
        """How much to refund."""
        return total / 2

    tools = [lookup_order, refund_amount]
    journal = MemoryJournal()
    texts: list[str] = []
    fake_provider.script(*two_turns())
    try:
        first = await Agent(model, tools=tools).run("Where is A-1?", journal=journal, on_text=texts.append)
        assert first.outcome is AgentOutcome.ANSWERED
        assert "".join(texts) == THINKING + ANSWER
        assert first.turns[0].message.tool_calls == two_turns()[0].tool_calls
        assert [e["kind"] for e in journal.entries] == ["turn", "tool", "tool", "turn"]

        replayed: list[str] = []
        again = await Agent(model, tools=tools).run("Where is A-1?", journal=journal, on_text=replayed.append)
        assert again.text == ANSWER
        assert again.resumed_turns == 2
        assert replayed == []  # recorded turns are not streamed again, nor called again
        assert len(fake_provider.requests) == 2
        assert looked_up == ["A-1"]
    finally:
        await model.aclose()
