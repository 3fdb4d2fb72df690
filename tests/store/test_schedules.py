"""Schedules: settings, due ticks (grace and missed ticks), exactly one run per tick
across schedulers sharing a store, pause and resume."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from legato.config import LegatoConfig
from legato.engine import Pipeline
from legato.errors import ConfigError, ScheduleNotFound
from legato.store import (
    QueuesSection,
    RunStore,
    Scheduler,
    ScheduleSettings,
    SchedulesSection,
    StoredStatus,
    list_schedules,
    set_paused,
)

from .conftest import FakeClock


def report() -> Pipeline:
    p = Pipeline("report")

    @p.step
    async def build(day: str) -> str:
        return f"report of {day}"

    return p


def section(**schedules: dict[str, Any]) -> SchedulesSection:
    return SchedulesSection.model_validate(schedules)


def _name() -> str:
    return f"s-{uuid.uuid4().hex[:8]}"  # the PostgreSQL database is shared by the session's tests


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"pipeline": "p"}, "exactly one of `cron:`"),
        ({"pipeline": "p", "cron": "* * * * *", "every": 5}, "exactly one of `cron:`"),
        ({"pipeline": "p", "cron": "61 * * * *"}, "invalid cron expression '61 \\* \\* \\* \\*': Bad minute"),
        ({"pipeline": "p", "every": "5x"}, "like 30s or 5m"),
        ({"pipeline": "p", "every": 0}, "greater than or equal to 1"),
        ({"pipeline": "p", "cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"pipeline": "p", "every": "1m", "cron_expression": "x"}, "cron_expression"),
    ],
)
def test_settings_are_checked(raw: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        LegatoConfig({"schedules": {"nightly": raw}}).section("schedules", SchedulesSection)


def test_intervals_and_cron_ticks() -> None:
    assert ScheduleSettings(pipeline="p", every="5m").every == 300  # type: ignore[arg-type]
    assert ScheduleSettings(pipeline="p", every="2h").every == 7200  # type: ignore[arg-type]
    every = ScheduleSettings(pipeline="p", every=30)
    assert (every.previous(1000.0), every.following(1000.0), every.previous(989.9)) == (990, 1020, 960)
    paris = ScheduleSettings(pipeline="p", cron="0 9 * * *", timezone="Europe/Paris")
    winter = datetime(2026, 1, 15, 12, 0, tzinfo=UTC).timestamp()
    assert datetime.fromtimestamp(paris.previous(winter), UTC) == datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
    assert datetime.fromtimestamp(paris.following(winter), UTC) == datetime(2026, 1, 16, 8, 0, tzinfo=UTC)
    seconds = ScheduleSettings(pipeline="p", cron="*/10 * * * * *")  # six fields: seconds first
    assert (seconds.previous(1_800_000_005.5), seconds.following(1_800_000_005.5)) == (1_800_000_000, 1_800_000_010)
    assert paris.describe() == "cron 0 9 * * * (Europe/Paris)"
    assert every.describe() == "every 30s"


def test_late_ticks_fire_each_and_missed_ticks_fire_once() -> None:
    every = ScheduleSettings(pipeline="p", every=10)
    assert every.due(100, 105.0, grace_s=60) == []  # nothing after 100 yet
    assert every.due(100, 131.0, grace_s=60) == [110, 120, 130]  # late, within the grace: each fires
    assert every.due(100, 1_000.0, grace_s=60) == [940, 950, 960, 970, 980, 990, 1000]  # older ones were missed
    assert every.due(100, 1_000.0, grace_s=0) == [1000]  # the latest of the missed ticks, once
    assert every.due(1000, 1_000.5, grace_s=60) == []


async def test_each_tick_fires_one_run_across_schedulers(store: RunStore, clock: FakeClock) -> None:
    name = _name()
    queues = QueuesSection.model_validate({"reports": {"pipelines": ["report"]}})
    cfg = section(**{name: {"pipeline": "report", "inputs": {"day": "today"}, "every": "1s", "priority": 3}})
    schedulers = [Scheduler(store, cfg, {"report": report()}, queues=queues) for _ in range(3)]
    async with RunStore(store.url, clock=clock) as other:  # its own connections, as another worker
        schedulers.append(Scheduler(other, cfg, {"report": report()}, queues=queues))
        assert await schedulers[0].fire_due() == []  # a new schedule starts with its next tick
        fired: list[Any] = []
        for _ in range(5):
            clock.advance(1)

            async def fire(s: Scheduler) -> None:
                fired.extend(await s.fire_due())

            async with anyio.create_task_group() as tg:
                for s in schedulers:
                    tg.start_soon(fire, s)
    ticks = [f.tick for f in fired]
    assert sorted(ticks) == [int(clock.now) - 4 + i for i in range(5)]  # each tick once
    run = await store.get_run(fired[0].run.id)
    assert (run.status, run.queue, run.priority, run.inputs) == (StoredStatus.QUEUED, "reports", 3, {"day": "today"})
    [view] = [v for v in await list_schedules(store, cfg, queues) if v.name == name]
    assert (view.last_tick, view.next_tick, view.queue, view.paused) == (max(ticks), max(ticks) + 1, "reports", False)
    assert view.last_run_id == next(f.run.id for f in fired if f.tick == max(ticks))


async def test_after_downtime_only_the_latest_missed_tick_fires(store: RunStore, clock: FakeClock) -> None:
    name = _name()
    cfg = section(**{name: {"pipeline": "report", "inputs": {"day": "d"}, "every": "1m"}})
    scheduler = Scheduler(store, cfg, {"report": report()}, grace_s=30)
    await scheduler.fire_due()
    clock.advance(3600 + 45)  # every worker was down for an hour
    fired = await scheduler.fire_due()
    assert [f.tick for f in fired] == [cfg.root[name].previous(clock.now)]
    assert await scheduler.fire_due() == []


async def test_a_paused_schedule_fires_nothing_and_resumes_at_its_next_tick(store: RunStore, clock: FakeClock) -> None:
    name = _name()
    cfg = section(**{name: {"pipeline": "report", "inputs": {"day": "d"}, "every": 1}})
    scheduler = Scheduler(store, cfg, {"report": report()})
    await scheduler.fire_due()
    state = await set_paused(store, cfg, name, True, by="ops")
    assert (state.paused, state.paused_by) == (True, "ops")
    clock.advance(10)
    assert await scheduler.fire_due() == []
    [view] = [v for v in await list_schedules(store, cfg, QueuesSection()) if v.name == name]
    assert (view.paused, view.paused_by, view.next_tick) == (True, "ops", None)
    await set_paused(store, cfg, name, False)
    assert await scheduler.fire_due() == []  # the ticks of the pause are skipped
    clock.advance(1)
    assert [f.tick for f in await scheduler.fire_due()] == [int(clock.now)]
    with pytest.raises(ScheduleNotFound, match=f"declared: {name}"):
        await set_paused(store, cfg, "nope", True)


async def test_a_scheduler_refuses_an_unknown_pipeline_or_bad_inputs(sqlite_store: RunStore) -> None:
    with pytest.raises(ConfigError, match=r"schedules\.a\.pipeline: no pipeline 'nope'"):
        Scheduler(sqlite_store, section(a={"pipeline": "nope", "every": 1}), {"report": report()})
    with pytest.raises(ConfigError, match=r"schedules\.b\.inputs: .*day"):
        Scheduler(sqlite_store, section(b={"pipeline": "report", "every": 1}), {"report": report()})
