"""The cache and budgets against the real OpenAI adapter talking to the fake provider,
and inside pipeline runs (``RunResult.cost`` counts streams and cache hits correctly)."""

from __future__ import annotations

import anyio
import pytest

from legato import Pipeline
from legato.cache import ResponseCache, StepMemo
from legato.cost import Budget, BudgetGuard, CostEstimator
from legato.errors import BudgetExceeded
from legato.providers import ChatRequest, Message, OpenAIModel, Usage, default_pricing
from legato.testing import FakeProvider, Reply

USAGE = Usage(input_tokens=1000, output_tokens=500)


def per_call_cost() -> float:
    price = default_pricing().lookup("openai", "gpt-4o-mini")
    assert price is not None
    return price.cost(USAGE)


def ask(text: str) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], temperature=0, max_tokens=600)


async def test_100_identical_requests_reach_the_provider_once() -> None:
    async with FakeProvider(seed=0, default=Reply(text="Paris", usage=USAGE, delay=0.05)) as fake:
        model = ResponseCache(OpenAIModel("gpt-4o-mini", base_url=fake.openai_base_url, api_key="sk-test"))
        answers: list[str] = []

        async def one() -> None:
            answers.append((await model.chat(ask("capital of France?"))).text)

        try:
            async with anyio.create_task_group() as tg:
                for _ in range(100):
                    tg.start_soon(one)
        finally:
            await model.aclose()
        assert len(fake.requests_for("openai.chat")) == 1
    assert answers == ["Paris"] * 100


async def test_run_cost_counts_streams_and_cache_hits() -> None:
    questions = ["a?", "b?", "a?", "c?", "a?", "b?"]  # 3 distinct of 6
    async with FakeProvider(seed=0, default=Reply(usage=USAGE)) as fake:
        model = ResponseCache(OpenAIModel("gpt-4o-mini", base_url=fake.openai_base_url, api_key="sk-test"))
        p = Pipeline("answers")

        @p.step(map="question", max_concurrency=1)
        async def answer(question: str) -> str:
            return (await model.chat(ask(question))).text

        @p.step
        async def streamed(answer: list[str]) -> str:
            chunks = [c.text async for c in model.stream(ask("stream " + answer[0]))]
            return "".join(chunks)

        try:
            first = await p.run(question=questions)
            second = await p.run(question=questions)  # everything is cached now
        finally:
            await model.aclose()
        upstream = fake.requests_for("openai.chat")
    assert first.ok, first.error
    assert first.outputs["streamed"] == "stream a?"
    assert len(upstream) == 4  # 3 chats + 1 stream
    assert sum(r.stream for r in upstream) == 1
    assert first.cost == pytest.approx(4 * per_call_cost())  # the stream is priced too
    assert first.usage["cache_hits"] == 3
    assert first.usage["saved"] == pytest.approx(3 * per_call_cost())
    assert second.cost == 0.0
    assert second.usage["cache_hits"] == 7
    assert second.usage["saved"] == pytest.approx(7 * per_call_cost())


async def test_step_memo_reuses_a_step_output_across_runs() -> None:
    calls = 0
    p = Pipeline("memo")

    @p.step(cache=True)
    async def expensive(x: int) -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"double": 2 * x}

    memo = StepMemo()
    assert (await p.run(x=2, step_cache=memo)).outputs["expensive"] == {"double": 4}
    assert (await p.run(x=2, step_cache=memo)).outputs["expensive"] == {"double": 4}
    assert calls == 1
    await p.run(x=3, step_cache=memo)  # other inputs: computed again
    assert calls == 2


async def test_budget_guard_with_real_usage_from_the_adapter() -> None:
    async with FakeProvider(seed=0, default=Reply(usage=USAGE)) as fake:
        inner = OpenAIModel("gpt-4o-mini", base_url=fake.openai_base_url, api_key="sk-test")
        estimate = CostEstimator().chat(ask("hello"), inner).usd
        assert estimate is not None
        budget = Budget(per_call_cost() * 2.5, "pipeline:guarded")
        guard = BudgetGuard(inner, [budget])
        try:
            await guard.chat(ask("one"))
            chunks = [c async for c in guard.stream(ask("two"))]
            with pytest.raises(BudgetExceeded):
                await guard.chat(ask("three"))
        finally:
            await guard.aclose()
        assert len(fake.requests_for("openai.chat")) == 2
    assert chunks[-1].cost == pytest.approx(per_call_cost())
    state = await guard.store.state(budget)
    assert state.spent == pytest.approx(2 * per_call_cost())
    assert state.reserved == 0
