"""Behaviour of the Python pipeline API and the scheduler."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

from legato.engine import (
    SKIPPED,
    Event,
    Pipeline,
    RunControl,
    RunStarted,
    RunStatus,
    StepCall,
    StepFailed,
    StepFinished,
    StepRetried,
    StepSkipped,
    StepStarted,
    StepStatus,
    current_step,
    resolve_executor,
)
from legato.errors import DeadlineExceeded, InputError, RunCancelled, SpecError, StepError
from legato.ledger import CallRecord, current_ledger
from legato.retry import RetryPolicy


def diamond() -> Pipeline:
    p = Pipeline("diamond")

    @p.step
    async def a(x: int) -> int:
        return x + 1

    @p.step
    async def b(a: int) -> int:
        return a * 2

    @p.step
    def c(a: int) -> int:
        return a * 3

    @p.step
    async def d(b: int, c: int) -> int:
        return b + c

    return p


async def test_diamond_binds_parameters_to_inputs_and_step_outputs() -> None:
    result = await diamond().run(x=1)
    assert result.status is RunStatus.SUCCEEDED
    assert result.outputs == {"a": 2, "b": 4, "c": 6, "d": 10}
    assert result.result == result.outputs
    assert set(result.timings) == {"a", "b", "c", "d"}
    assert all(t.status is StepStatus.SUCCEEDED and t.attempts == 1 for t in result.timings.values())
    assert result.timings["d"].started is not None
    assert result.timings["d"].started >= result.timings["b"].finished  # type: ignore[operator]


def test_run_sync_and_mapping_inputs() -> None:
    result = diamond().run_sync({"x": 2})
    assert result.outputs["d"] == 15


async def test_independent_steps_run_concurrently() -> None:
    # b and c each wait for the other to have started: this only finishes if they overlap.
    p = Pipeline("overlap")
    started = {"b": anyio.Event(), "c": anyio.Event()}

    @p.step
    async def b() -> str:
        started["b"].set()
        await started["c"].wait()
        return "b"

    @p.step
    async def c() -> str:
        started["c"].set()
        await started["b"].wait()
        return "c"

    with anyio.fail_after(5):
        result = await p.run()
    assert result.outputs == {"b": "b", "c": "c"}


async def test_sync_steps_run_in_worker_threads_with_the_step_context() -> None:
    p = Pipeline("threads")
    seen: dict[str, Any] = {}

    @p.step
    def work(x: int) -> int:
        seen["thread"] = threading.get_ident()
        ctx = current_step()
        assert ctx is not None
        seen["key"] = ctx.idempotency_key
        return x

    result = await p.run(x=3, run_id="r1")
    assert result.outputs == {"work": 3}
    assert seen["thread"] != threading.get_ident()
    assert seen["key"] == "r1/work"


async def test_events_are_published_in_order() -> None:
    events: list[Event] = []
    await diamond().run(x=1, subscribers=[events.append])
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "RunStarted"
    assert kinds[-1] == "RunFinished"
    assert kinds.count("StepStarted") == 4
    assert kinds.count("StepFinished") == 4
    finished = [e.step for e in events if isinstance(e, StepFinished)]
    assert finished[0] == "a"
    assert finished[-1] == "d"
    assert len({e.run_id for e in events}) == 1


async def test_async_subscriber_is_awaited_before_dependents_start() -> None:
    log: list[str] = []

    async def slow_store(event: Event) -> None:
        if isinstance(event, StepFinished) and event.step == "a":
            await anyio.sleep(0.01)
            log.append("committed a")
        elif isinstance(event, StepStarted):
            log.append(f"started {event.step}")

    await diamond().run(x=1, subscribers=[slow_store])
    assert log.index("committed a") < log.index("started b")
    assert log.index("committed a") < log.index("started c")


async def test_failing_subscriber_fails_the_run() -> None:
    def broken(event: Event) -> None:
        if isinstance(event, StepFinished):
            raise RuntimeError("disk full")

    result = await diamond().run(x=1, subscribers=[broken])
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert "disk full" in result.error
    assert "d" not in result.outputs


async def test_when_false_skips_and_skip_propagates_unless_optional() -> None:
    p = Pipeline("cond")

    @p.step
    async def score(x: int) -> int:
        return x

    @p.step(when="score > 10")
    async def escalate(score: int) -> str:
        return "escalated"

    @p.step
    async def notify(escalate: str) -> str:
        return escalate

    @p.step(optional=["escalate"])
    async def report(score: int, escalate: str | None) -> str:
        return f"{score}:{escalate}"

    events: list[Event] = []
    result = await p.run(x=3, subscribers=[events.append])
    assert result.status is RunStatus.SUCCEEDED
    assert result.outputs == {"score": 3, "report": "3:None"}
    assert result.step_status["escalate"] is StepStatus.SKIPPED
    assert result.step_status["notify"] is StepStatus.SKIPPED
    assert "score > 10" in result.skipped["escalate"]
    assert "escalate" in result.skipped["notify"]
    assert {e.step for e in events if isinstance(e, StepSkipped)} == {"escalate", "notify"}
    result = await p.run(x=30)
    assert result.outputs["notify"] == "escalated"
    assert result.outputs["report"] == "30:escalated"


async def test_callable_when_binds_by_parameter_name() -> None:
    p = Pipeline("cond2")

    @p.step
    async def a(x: int) -> int:
        return x

    @p.step(when=lambda a: a % 2 == 0)
    async def even(a: int) -> bool:
        return True

    assert "even" in (await p.run(x=2)).outputs
    assert "even" not in (await p.run(x=3)).outputs


async def test_step_failure_fails_fast_naming_the_step_and_cancels_the_rest() -> None:
    p = Pipeline("ff")
    release = anyio.Event()

    @p.step
    async def slow() -> str:
        await release.wait()
        return "never"

    @p.step
    async def boom() -> str:
        raise ValueError("bad value")

    @p.step
    async def after(boom: str) -> str:
        return boom

    events: list[Event] = []
    with anyio.fail_after(5):
        result = await p.run(subscribers=[events.append])
    assert result.status is RunStatus.FAILED
    assert result.failed_step == "boom"
    assert result.error == "StepError: step 'boom' failed: ValueError: bad value"
    assert result.step_status == {"slow": StepStatus.CANCELLED, "boom": StepStatus.FAILED, "after": StepStatus.PENDING}
    failed = {e.step: e for e in events if isinstance(e, StepFailed)}
    assert failed["slow"].cancelled
    assert not failed["boom"].cancelled
    assert isinstance(failed["boom"].error, ValueError)
    with pytest.raises(StepError) as info:
        result.raise_for_status()
    assert info.value.step == "boom"
    assert info.value.error_type == "ValueError"
    assert isinstance(info.value.__cause__, ValueError)


async def test_continue_policy_skips_dependents_and_finishes_independent_branches() -> None:
    p = Pipeline("cont", failure_policy="continue")

    @p.step
    async def boom() -> int:
        raise KeyError("missing")

    @p.step
    async def after(boom: int) -> int:
        return boom

    @p.step
    async def independent() -> int:
        await anyio.sleep(0)
        return 7

    result = await p.run()
    assert result.status is RunStatus.FAILED
    assert result.outputs == {"independent": 7}
    assert result.step_status["after"] is StepStatus.SKIPPED
    assert result.skipped["after"] == "upstream step 'boom' failed"
    assert result.failed_step == "boom"


async def test_retries_then_success_and_retry_events() -> None:
    p = Pipeline("retry")
    calls = {"n": 0}

    @p.step(retries=RetryPolicy(max_attempts=3, base_delay=0, retry_on=lambda e: True))
    async def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError(f"try {calls['n']}")
        ctx = current_step()
        assert ctx is not None
        return f"ok on attempt {ctx.attempt}"

    events: list[Event] = []
    result = await p.run(subscribers=[events.append])
    assert result.outputs == {"flaky": "ok on attempt 3"}
    assert result.timings["flaky"].attempts == 3
    retried = [e for e in events if isinstance(e, StepRetried)]
    assert [e.attempt for e in retried] == [1, 2]
    assert retried[0].message == "try 1"


async def test_int_retries_use_injected_sleep_and_give_up() -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    p = Pipeline("retry2", sleep=fake_sleep)

    @p.step(retries=2)
    async def always() -> None:
        raise RuntimeError("nope")

    result = await p.run()
    assert result.status is RunStatus.FAILED
    assert result.timings["always"].attempts == 3
    assert len(slept) == 2


async def test_step_timeout_is_a_deadline_error() -> None:
    p = Pipeline("timeout")

    @p.step(timeout=0.01)
    async def hang() -> None:
        await anyio.sleep_forever()

    result = await p.run()
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert "timed out after 0.01s" in result.error
    assert isinstance(result.exception, StepError)
    assert isinstance(result.exception.__cause__, DeadlineExceeded)


async def test_run_deadline_cancels_running_steps() -> None:
    p = Pipeline("deadline")

    @p.step
    async def hang() -> None:
        await anyio.sleep_forever()

    result = await p.run(deadline=0.01)
    assert result.status is RunStatus.FAILED
    assert result.step_status["hang"] is StepStatus.CANCELLED
    with pytest.raises(DeadlineExceeded):
        result.raise_for_status()


async def test_run_control_cancels_a_run() -> None:
    p = Pipeline("cancel")
    started = anyio.Event()

    @p.step
    async def hang() -> None:
        started.set()
        await anyio.sleep_forever()

    control = RunControl()
    events: list[Event] = []
    results = []

    async def go() -> None:
        results.append(await p.run(control=control, subscribers=[events.append]))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(go)
            await started.wait()
            control.cancel("user asked")
    (result,) = results
    assert result.status is RunStatus.CANCELLED
    assert result.step_status["hang"] is StepStatus.CANCELLED
    assert any(isinstance(e, StepFailed) and e.cancelled for e in events)
    with pytest.raises(RunCancelled, match="user asked"):
        result.raise_for_status()


async def test_completed_steps_are_not_run_again() -> None:
    p = Pipeline("resume")
    ran: list[str] = []

    @p.step
    async def a() -> int:
        ran.append("a")
        return 1

    @p.step(when="a > 5")
    async def b(a: int) -> int:
        ran.append("b")
        return a

    @p.step(optional=["b"])
    async def c(a: int, b: int | None) -> str:
        ran.append("c")
        return f"{a}/{b}"

    events: list[Event] = []
    result = await p.run(run_id="r", completed={"a": 41, "b": SKIPPED}, subscribers=[events.append])
    assert ran == ["c"]
    assert result.outputs == {"a": 41, "c": "41/None"}
    assert result.step_status["b"] is StepStatus.SKIPPED
    started = events[0]
    assert isinstance(started, RunStarted)
    assert started.resumed_steps == ("a", "b")


async def test_map_fans_out_in_order_with_a_concurrency_limit() -> None:
    p = Pipeline("map")
    active = {"now": 0, "peak": 0}
    keys: list[str] = []

    @p.step(map="text", max_concurrency=3)
    async def upper(text: str) -> str:
        active["now"] += 1
        active["peak"] = max(active["peak"], active["now"])
        ctx = current_step()
        assert ctx is not None
        keys.append(ctx.idempotency_key)
        await anyio.sleep(0)
        active["now"] -= 1
        return text.upper()

    result = await p.run(text=["a", "b", "c", "d", "e", "f", "g"], run_id="m")
    assert result.outputs["upper"] == ["A", "B", "C", "D", "E", "F", "G"]
    assert active["peak"] == 3
    assert sorted(keys) == sorted(f"m/upper/{i}" for i in range(7))


async def test_map_over_a_non_list_fails_clearly() -> None:
    p = Pipeline("map2")

    @p.step(map="text")
    async def upper(text: str) -> str:
        return text

    result = await p.run(text="abc")
    assert result.error == "StepError: step 'upper' failed: TypeError: map parameter 'text' must be a list, got str"


async def test_global_max_concurrency() -> None:
    p = Pipeline("limited", max_concurrency=2)
    active = {"now": 0, "peak": 0}

    async def work() -> None:
        active["now"] += 1
        active["peak"] = max(active["peak"], active["now"])
        await anyio.sleep(0.001)
        active["now"] -= 1

    for i in range(6):
        p.add_step(work, name=f"w{i}")
    await p.run()
    assert active["peak"] == 2


async def test_loop_until_and_bound() -> None:
    p = Pipeline("loop")

    @p.loop(until="output >= 10", max_iterations=10)
    async def grow(start: int, previous: int | None) -> int:
        return (previous or start) * 2

    result = await p.run(start=1)
    assert result.outputs["grow"] == 16

    q = Pipeline("loop2")

    @q.loop(until="output > 100", max_iterations=3, on_max_iterations="fail")
    async def inc(previous: int | None) -> int:
        ctx = current_step()
        assert ctx is not None
        assert ctx.iteration is not None
        return (previous or 0) + ctx.iteration

    result = await q.run()
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert "within 3 iterations" in result.error


async def test_step_cache_skips_repeated_work() -> None:
    class DictCache:
        def __init__(self) -> None:
            self.data: dict[str, Any] = {}

        async def get(self, key: str) -> tuple[bool, Any]:
            return (key in self.data, self.data.get(key))

        async def put(self, key: str, value: Any) -> None:
            self.data[key] = value

    p = Pipeline("cached")
    calls: list[int] = []

    @p.step(cache=True, version="1")
    async def square(x: int) -> int:
        calls.append(x)
        return x * x

    cache = DictCache()
    assert (await p.run(x=3, step_cache=cache)).outputs == {"square": 9}
    assert (await p.run(x=3, step_cache=cache)).outputs == {"square": 9}
    assert (await p.run(x=4, step_cache=cache)).outputs == {"square": 16}
    assert calls == [3, 4]


async def test_cost_from_the_step_ledger_reaches_events_and_result() -> None:
    p = Pipeline("cost")

    @p.step
    async def ask() -> str:
        ledger = current_ledger()
        assert ledger is not None
        ledger.record(CallRecord(model="m", provider="fake", input_tokens=10, output_tokens=5, cost=0.25))
        return "answer"

    @p.step
    async def free(ask: str) -> str:
        return ask

    events: list[Event] = []
    result = await p.run(subscribers=[events.append])
    assert result.cost == pytest.approx(0.25)
    assert result.usage["input_tokens"] == 10
    meta = {e.step: e.meta for e in events if isinstance(e, StepFinished)}
    assert meta["ask"] == {"cost": 0.25, "input_tokens": 10, "output_tokens": 5, "calls": 1, "by_model": {"m": 0.25}}
    assert meta["free"] == {}


async def test_inputs_are_checked_before_any_step_runs() -> None:
    ran: list[str] = []
    p = Pipeline("inputs", inputs={"text": str, "limit": int})

    @p.step
    async def use(text: str, limit: int) -> str:
        ran.append("use")
        return text[:limit]

    with pytest.raises(InputError, match="missing input 'limit'"):
        await p.run(text="x")
    with pytest.raises(InputError, match=r"unknown input 'txt' \(did you mean 'text'\?\)"):
        await p.run(txt="x", text="y", limit=1)
    with pytest.raises(InputError, match="input 'limit' must be int, got str"):
        await p.run(text="x", limit="3")
    assert ran == []


def test_graph_errors_are_reported() -> None:
    p = Pipeline("cycle")

    @p.step
    async def a(c: int) -> int:
        return c

    @p.step
    async def b(a: int) -> int:
        return a

    @p.step
    async def c(b: int) -> int:
        return b

    with pytest.raises(SpecError, match="cycle: a -> b -> c -> a"):
        p.compile()
    with pytest.raises(SpecError, match="duplicate step name 'a'"):
        p.add_step(a)

    q = Pipeline("refs")

    @q.step(when="scroe > 1")
    async def score() -> int:
        return 1

    issues = q.validate()
    assert [i.message for i in issues] == ["unknown name 'scroe' (did you mean 'score'?) in 'scroe > 1'"]


async def test_custom_executor_receives_step_calls() -> None:
    seen: list[StepCall] = []

    class Recording:
        async def run_step(self, call: StepCall) -> Any:
            seen.append(call)
            local = resolve_executor("local")
            return await local.run_step(call)

    result = await diamond().run(x=1, executor=Recording(), run_id="e")
    assert result.outputs["d"] == 10
    assert {c.step for c in seen} == {"a", "b", "c", "d"}
    assert {c.is_async for c in seen if c.step == "c"} == {False}
    assert all(c.run_id == "e" for c in seen)


@pytest.mark.parametrize("retries", [None, 1])
async def test_a_failing_map_item_fails_the_step_with_its_own_error(retries: int | None) -> None:
    p = Pipeline("map-fail")
    seen: list[int] = []

    @p.step(map="n", max_concurrency=2, retries=retries)
    async def check(n: int) -> int:
        seen.append(n)
        if n == 3:
            raise ValueError(f"bad item {n}")
        await anyio.sleep(0)
        return n

    result = await p.run(n=[1, 2, 3, 4, 5, 6])
    assert result.error == "StepError: step 'check' failed: ValueError: bad item 3"
    assert isinstance(result.exception, StepError)
    assert isinstance(result.exception.__cause__, ValueError)


def test_step_options_are_checked_when_declared() -> None:
    p = Pipeline("opts")

    async def f(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="map='y' is not a parameter"):
        p.add_step(f, map="y")
    with pytest.raises(ValueError, match="timeout must be > 0"):
        p.add_step(f, timeout=0)
    with pytest.raises(ValueError, match="optional='z' is not a parameter"):
        p.add_step(f, optional=["z"])
    with pytest.raises(ValueError, match="reserved"):
        p.add_step(f, name="steps")
    with pytest.raises(ValueError, match="cannot both map and loop"):
        p.loop(until="output", max_iterations=2, map="x")(f)
    with pytest.raises(ValueError, match="retries must be a non-negative int"):
        p.add_step(f, retries=-1)
    with pytest.raises(ValueError, match="failure_policy"):
        Pipeline("x", failure_policy="sometimes")  # type: ignore[arg-type]


def test_current_step_is_none_outside_a_step() -> None:
    assert current_step() is None


async def test_subscriber_failing_on_run_finished_fails_the_run() -> None:
    def broken(event: Event) -> None:
        if type(event).__name__ == "RunFinished":
            raise OSError("lost connection")

    result = await diamond().run(x=1, subscribers=[broken])
    assert result.status is RunStatus.FAILED
    assert result.error == "RunError: event subscriber failed on RunFinished: OSError: lost connection"
    assert result.outputs["d"] == 10


async def test_sync_step_is_abandoned_when_the_run_deadline_passes() -> None:
    p = Pipeline("blocking")
    release = threading.Event()

    @p.step
    def block() -> str:
        release.wait(5)
        return "done"

    try:
        result = await p.run(deadline=0.05)
    finally:
        release.set()
    assert result.status is RunStatus.FAILED
    assert result.step_status["block"] is StepStatus.CANCELLED
    with pytest.raises(DeadlineExceeded):
        result.raise_for_status()


async def test_cancelling_the_caller_records_a_cancelled_run_and_propagates() -> None:
    p = Pipeline("outer")
    events: list[Event] = []

    @p.step
    async def hang() -> None:
        await anyio.sleep_forever()

    with anyio.move_on_after(0.02) as scope:
        await p.run(subscribers=[events.append])
    assert scope.cancelled_caught
    finished = events[-1]
    assert type(finished).__name__ == "RunFinished"
    assert finished.status is RunStatus.CANCELLED  # type: ignore[attr-defined]
    assert any(isinstance(e, StepFailed) and e.cancelled for e in events)


async def test_every_step_completed_runs_nothing() -> None:
    result = await diamond().run(x=1, completed={"a": 1, "b": 2, "c": 3, "d": 4})
    assert result.status is RunStatus.SUCCEEDED
    assert result.outputs == {"a": 1, "b": 2, "c": 3, "d": 4}


async def test_optional_applies_to_arguments_passed_through_var_kwargs() -> None:
    # Factory-built steps (llm, task) often take **kwargs; `optional` must still soften the skip.
    p = Pipeline("kwargs")

    @p.step(when="false")
    async def never() -> str:
        return "x"

    async def collect(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    p.add_step(collect, args={"value": "${steps.never}"}, optional=["value"])
    p.add_step(collect, name="strict", args={"value": "${steps.never}"})
    result = await p.run()
    assert result.outputs["collect"] == {"value": None}
    assert result.step_status["strict"] is StepStatus.SKIPPED
