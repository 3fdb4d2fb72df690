"""Cache keys, the executor registry and run control edge cases."""

from __future__ import annotations

import anyio
import pytest

from legato.engine import Pipeline, RunControl, RunStatus, StepStatus, cache_key, register_executor, resolve_executor
from legato.errors import ConfigError


def test_cache_key_is_canonical_and_sensitive_to_every_part() -> None:
    base = cache_key("p", "s", "v1", {"a": 1, "b": [1, 2]})
    assert base == cache_key("p", "s", "v1", {"b": [1, 2], "a": 1})
    assert len(base) == 64
    others = {
        cache_key("q", "s", "v1", {"a": 1, "b": [1, 2]}),
        cache_key("p", "t", "v1", {"a": 1, "b": [1, 2]}),
        cache_key("p", "s", "v2", {"a": 1, "b": [1, 2]}),
        cache_key("p", "s", "v1", {"a": 2, "b": [1, 2]}),
    }
    assert base not in others
    assert len(others) == 4
    # values JSON cannot encode fall back to pickle, still deterministic
    assert cache_key("p", "s", "v", {"x": {1, 2}}) == cache_key("p", "s", "v", {"x": {2, 1}})


def test_code_version_follows_the_source_unless_pinned() -> None:
    p = Pipeline("v")

    async def one(x: int) -> int:
        return x

    async def two(x: int) -> int:
        return x + 1

    a = p.add_step(one)
    b = p.add_step(two)
    c = p.add_step(one, name="pinned", version="7")
    assert a.code_version != b.code_version
    assert c.code_version == "7"


def test_executor_registry() -> None:
    local = resolve_executor("local", max_threads=3)
    assert type(local).__name__ == "LocalExecutor"
    with pytest.raises(ConfigError, match="unknown executor 'nope'; known executors: local, ray"):
        resolve_executor("nope")
    register_executor("broken", "legato_no_such_module:Executor")
    with pytest.raises(ConfigError, match="executor 'broken' is not available"):
        resolve_executor("broken")
    with pytest.raises(ValueError, match="must look like"):
        register_executor("bad", "no_colon")


async def test_cancelling_before_the_run_starts_runs_nothing() -> None:
    p = Pipeline("early")
    ran: list[str] = []

    @p.step
    async def a() -> None:
        ran.append("a")

    control = RunControl()
    control.cancel("changed my mind")
    result = await p.run(control=control)
    assert result.status is RunStatus.CANCELLED
    assert ran == []
    assert result.step_status == {"a": StepStatus.PENDING}


async def test_fail_fast_cancels_a_step_running_in_the_run_task() -> None:
    # `hang` is the first ready step, so it runs in the run's own task.
    p = Pipeline("host")

    @p.step
    async def hang() -> None:
        await anyio.sleep_forever()

    @p.step
    async def boom() -> None:
        await anyio.sleep(0)
        raise RuntimeError("no")

    with anyio.fail_after(5):
        result = await p.run()
    assert result.step_status == {"hang": StepStatus.CANCELLED, "boom": StepStatus.FAILED}
    assert result.failed_step == "boom"
