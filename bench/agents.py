"""Agent loop overhead: what one agent turn costs beyond the model call and the tool.

Two set-ups, each against a floor measured in the same run:

* **in-process model** (a ``Model`` that answers at once from a script): an agent
  run of N turns (N-1 tool-call turns, then the answer) vs N direct ``model.chat``
  calls plus N-1 direct tool calls. The difference per turn is the loop itself:
  building the request, the per-turn ledger, argument decoding and validation,
  the task group of the tool calls, the bookkeeping of turns.
* **fake provider over HTTP** (``OpenAIModel`` on loopback): the same comparison
  with the real adapter and wire, where the loop's share is what a user sees.

Also: the same in-process agent with a journal (``MemoryJournal``), the cost of
recording each turn and tool call apart from the store's commit; and a durable run
(SQLite run store) of a step running the agent with and without its step journal,
where the difference is the commit of each turn and tool call.

Writes ``bench/results/agents.json``. Run: ``python bench/agents.py``.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from legato.agents import Agent, MemoryJournal
from legato.providers import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    Message,
    OpenAIModel,
    ToolCall,
    Usage,
)
from legato.testing import FakeProvider, Reply

RESULTS = Path(__file__).resolve().parent / "results" / "agents.json"
TURNS = 8
RUNS = 300
HTTP_RUNS = 150
DURABLE_RUNS = 40


def lookup(order_id: str) -> dict[str, str]:
    """Find an order."""
    return {"order_id": order_id, "state": "shipped"}


async def alookup(order_id: str) -> dict[str, str]:
    """Find an order."""
    return lookup(order_id)


CALL = ToolCall(id="c1", name="alookup", arguments='{"order_id": "A-1"}')
ASK = Message(role="assistant", content=None, tool_calls=[CALL])
ANSWER = Message(role="assistant", content="shipped")


class ScriptedModel:
    """Answers at once: TURNS-1 tool calls, then the answer (per conversation length)."""

    name = "scripted"

    async def chat(self, request: ChatRequest) -> ChatResponse:
        asked = sum(1 for m in request.messages if m.role == "assistant")
        message = ASK if asked < TURNS - 1 else ANSWER
        usage = Usage(input_tokens=100, output_tokens=10)
        return ChatResponse(message=message, model="scripted", provider="bench", usage=usage, cost=0.0001)

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        raise NotImplementedError

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


async def timed(fns: list[Callable[[], Awaitable[Any]]], runs: int) -> list[list[float]]:
    """Samples of each function, taken in turn (so drift from other load hits all alike)."""
    for fn in fns:
        for _ in range(5):
            await fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, out in zip(fns, samples, strict=True):
            start = time.perf_counter()
            await fn()
            out.append(time.perf_counter() - start)
    return samples


def per_turn_us(samples: list[float]) -> float:
    return statistics.median(samples) / TURNS * 1e6


async def in_process() -> dict[str, float]:
    model = ScriptedModel()
    agent = Agent(model, tools=[alookup], max_turns=TURNS + 1)

    async def direct() -> None:
        messages = [Message(role="user", content="where is A-1?")]
        for _ in range(TURNS):
            response = await model.chat(agent.request(messages))
            messages.append(response.message)
            if response.message.tool_calls:
                for call in response.message.tool_calls:
                    value = await alookup(**json.loads(call.arguments))
                    messages.append(Message(role="tool", content=json.dumps(value), tool_call_id=call.id))

    async def looped() -> None:
        await agent.run("where is A-1?")

    async def journaled() -> None:
        await agent.run("where is A-1?", journal=MemoryJournal())

    floor, loop, journal = map(per_turn_us, await timed([direct, looped, journaled], RUNS))
    return {
        "direct_us_per_turn": floor,
        "agent_us_per_turn": loop,
        "overhead_us_per_turn": loop - floor,
        "agent_journal_us_per_turn": journal,
        "journal_overhead_us_per_turn": journal - loop,
    }


async def over_http() -> dict[str, float]:
    async with FakeProvider(seed=0) as fake:
        call = ToolCall(id="c1", name="alookup", arguments='{"order_id": "A-1"}')

        def respond(recorded: Any) -> Reply:
            asked = sum(1 for m in recorded.body["messages"] if m["role"] == "assistant")
            if asked < TURNS - 1:
                return Reply(tool_calls=[call], finish_reason="tool_calls")
            return Reply(text="shipped")

        fake.responder = respond
        model = OpenAIModel("gpt-4o-mini", base_url=fake.openai_base_url, api_key="sk-bench")
        agent = Agent(model, tools=[alookup], max_turns=TURNS + 1)

        async def direct() -> None:
            messages = [Message(role="user", content="where is A-1?")]
            for _ in range(TURNS):
                response = await model.chat(agent.request(messages))
                messages.append(response.message)
                for c in response.message.tool_calls or ():
                    value = await alookup(**json.loads(c.arguments))
                    messages.append(Message(role="tool", content=json.dumps(value), tool_call_id=c.id))

        async def looped() -> None:
            await agent.run("where is A-1?")

        try:
            floor, loop = map(per_turn_us, await timed([direct, looped], HTTP_RUNS))
        finally:
            await model.aclose()
    return {"direct_us_per_turn": floor, "agent_us_per_turn": loop, "overhead_us_per_turn": loop - floor}


async def durable(tmp: Path) -> dict[str, float]:
    from legato.engine import Pipeline, step_journal
    from legato.store import DurableRunner, RunStore

    model = ScriptedModel()

    def pipeline(journaled: bool) -> Pipeline:
        p = Pipeline(f"agent_{journaled}")

        @p.step
        async def answer() -> str:
            agent = Agent(model, tools=[alookup], max_turns=TURNS + 1)
            result = await agent.run("where is A-1?", journal=step_journal() if journaled else None)
            return result.text

        return p

    async with RunStore(f"sqlite:///{tmp / 'bench.db'}") as store:
        runner = DurableRunner(store, reflect=None)
        plain, journaled = pipeline(False), pipeline(True)

        async def without() -> None:
            await runner.run(plain)

        async def with_journal() -> None:
            await runner.run(journaled)

        floor, loop = map(per_turn_us, await timed([without, with_journal], DURABLE_RUNS))
    return {"durable_run_us_per_turn": floor, "journaled_us_per_turn": loop, "commit_us_per_turn": loop - floor}


async def main() -> None:
    import tempfile

    results: dict[str, Any] = {
        "turns_per_run": TURNS,
        "in_process": await in_process(),
        "http_fake_provider": await over_http(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        results["durable_sqlite"] = await durable(Path(tmp))
    print(f"agent loop, {TURNS} turns a run (7 tool calls + the answer); median per turn")
    print(f"{'set-up':<28}{'direct':>12}{'agent':>12}{'overhead':>12}")
    for label, key in (("in-process model", "in_process"), ("fake provider over HTTP", "http_fake_provider")):
        r = results[key]
        print(
            f"{label:<28}{r['direct_us_per_turn']:>10.1f}us{r['agent_us_per_turn']:>10.1f}us"
            f"{r['overhead_us_per_turn']:>10.1f}us"
        )
    j = results["in_process"]
    journal, extra = j["agent_journal_us_per_turn"], j["journal_overhead_us_per_turn"]
    print(f"{'+ MemoryJournal':<28}{'':>12}{journal:>10.1f}us{extra:>10.1f}us")
    d = results["durable_sqlite"]
    print(
        f"{'durable run (SQLite)':<28}{d['durable_run_us_per_turn']:>10.1f}us{d['journaled_us_per_turn']:>10.1f}us"
        f"{d['commit_us_per_turn']:>10.1f}us   (without / with the step journal)"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    anyio.run(main)
