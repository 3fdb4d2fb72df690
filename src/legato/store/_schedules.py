"""Schedules: pipelines enqueued on a cron expression or an interval (``schedules:``).

A schedule is declared in ``legato.yaml`` (pipeline, inputs, ``cron:`` or ``every:``,
``timezone:``, ``queue:``, ``priority:``); the store keeps only its state: whether it is
paused, and the latest tick fired. Every ``legato worker`` runs a :class:`Scheduler`
over the same section, so schedules keep firing while any worker is alive.

**Exactly once per tick.** A tick is a row of ``schedule_ticks`` keyed by
``(schedule, tick)``. A scheduler that finds a tick due inserts that row with
``ON CONFLICT DO NOTHING ... RETURNING`` and, when the row is its own, enqueues the run
in the same transaction (and moves the schedule's ``last_tick``). Every other
scheduler's insert returns nothing and it enqueues nothing; a crash between the two
writes is impossible because they commit together.

**Due ticks and missed ticks.** The ticks due are those after ``last_tick`` and not in
the future. A tick that is at most ``grace_s`` late (60 s by default: a busy worker,
a restart) fires on its own. Ticks older than that were *missed* (every worker was
down): they are not replayed as a backlog; the latest of them fires once, and only
when no on-time tick is due. A schedule seen for the first time starts with its next
tick; resuming a paused schedule likewise skips the ticks of the pause.

**Cron expressions** are evaluated with ``cronsim`` (five fields, or six with the
seconds first: ``*/5 * * * * *``) in the schedule's ``timezone`` (an IANA name; DST
gaps and repeats as Debian cron handles them). ``every:`` is an interval (``30s``,
``5m``, ``2h``, ``1d`` or seconds) aligned on the Unix epoch, so all workers agree on
its ticks without talking to each other.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator, model_validator
from sqlalchemy.engine import Connection

from legato.errors import ConfigError, InputError, ScheduleNotFound
from legato.store._queue import QueuesSection, default_queue
from legato.store._records import RunRecord
from legato.store._run_writes import NewRun, insert_run
from legato.store._runs import RunStore
from legato.store._schema import schedule_ticks, schedules

__all__ = [
    "Fired",
    "ScheduleSettings",
    "ScheduleState",
    "ScheduleView",
    "Scheduler",
    "SchedulesSection",
    "ensure_schedules",
    "list_schedules",
    "set_paused",
]

log = logging.getLogger("legato.schedules")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EVERY = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")


class ScheduleSettings(BaseModel):
    """One schedule of the ``schedules:`` section of ``legato.yaml``."""

    model_config = ConfigDict(extra="forbid")

    pipeline: str = Field(min_length=1, description="A pipeline of the `pipelines:` section.")
    inputs: dict[str, Any] = Field(default_factory=dict, description="The inputs of every run.")
    cron: str | None = Field(None, description="Cron expression: 5 fields, or 6 with the seconds first.")
    every: int | None = Field(None, ge=1, description="Interval: `30s`, `5m`, `2h`, `1d` or seconds.")
    timezone: str = Field("UTC", description="IANA time zone the cron expression is read in.")
    queue: str | None = Field(None, min_length=1, max_length=255, description="Queue of the runs.")
    priority: int = Field(0, description="Priority of the runs in their queue (higher first).")

    @field_validator("every", mode="before")
    @classmethod
    def _interval(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = _EVERY.match(value)
            if match is None:
                raise ValueError(f"an interval is a whole number of s, m, h or d (like 30s or 5m), got {value!r}")
            return int(match.group(1)) * _UNITS[match.group(2) or "s"]
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Paris or UTC)") from None
        return value

    @model_validator(mode="after")
    def _one_rule(self) -> ScheduleSettings:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give exactly one of `cron:` (an expression) or `every:` (an interval)")
        if self.cron is not None:
            from cronsim import CronSim, CronSimError

            try:
                CronSim(self.cron, datetime.now(UTC))
            except CronSimError as exc:
                raise ValueError(f"invalid cron expression {self.cron!r}: {exc}") from None
        return self

    def describe(self) -> str:
        """``cron */5 * * * * (Europe/Paris)`` or ``every 30s``."""
        if self.every is not None:
            return f"every {self.every}s"
        return f"cron {self.cron}" + (f" ({self.timezone})" if self.timezone != "UTC" else "")

    def previous(self, t: float) -> int:
        """The latest tick at or before ``t`` (epoch seconds)."""
        if self.every is not None:
            return math.floor(t / self.every) * self.every
        from cronsim import CronSim

        moment = datetime.fromtimestamp(math.floor(t), ZoneInfo(self.timezone)) + timedelta(microseconds=1)
        return int(next(CronSim(str(self.cron), moment, reverse=True)).timestamp())

    def following(self, t: float) -> int:
        """The first tick after ``t`` (epoch seconds)."""
        if self.every is not None:
            return (math.floor(t / self.every) + 1) * self.every
        from cronsim import CronSim

        moment = datetime.fromtimestamp(math.floor(t), ZoneInfo(self.timezone))
        return int(next(CronSim(str(self.cron), moment)).timestamp())

    def due(self, after: int, now: float, grace_s: float) -> list[int]:
        """The ticks to fire, oldest first: those after ``after`` up to ``now`` that are
        at most ``grace_s`` late, else the latest missed one (see the module docstring)."""
        latest = self.previous(now)
        if latest <= after:
            return []
        ticks: list[int] = []
        tick = latest
        while tick > after and tick >= now - grace_s:
            ticks.append(tick)
            tick = self.previous(tick - 1)
        return ticks[::-1] or [latest]


class SchedulesSection(RootModel[dict[str, ScheduleSettings]]):
    """``schedules:``: ``{name: {pipeline: ..., cron: ... | every: ..., ...}}``."""

    root: dict[str, ScheduleSettings] = Field(default_factory=dict)

    @field_validator("root")
    @classmethod
    def _names(cls, value: dict[str, ScheduleSettings]) -> dict[str, ScheduleSettings]:
        for name in value:
            if not name.strip() or len(name) > 255:
                raise ValueError(f"a schedule name is 1 to 255 characters, got {name!r}")
        return value

    def get(self, name: str) -> ScheduleSettings:
        """The schedule ``name``; :class:`ScheduleNotFound` names the declared ones."""
        if name not in self.root:
            known = ", ".join(sorted(self.root)) or "none"
            raise ScheduleNotFound(f"no schedule {name!r} in `schedules:` of legato.yaml (declared: {known})")
        return self.root[name]


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """What the store holds of one schedule: paused or not (by whom, since when) and the
    latest tick fired (epoch seconds; ticks after it are due)."""

    name: str
    paused: bool
    paused_by: str | None
    paused_at: float | None
    last_tick: int


@dataclass(frozen=True, slots=True)
class ScheduleView:
    """One schedule as listed by the CLI, the API and the dashboard."""

    name: str
    pipeline: str
    rule: str
    queue: str
    paused: bool
    paused_by: str | None
    paused_at: float | None
    next_tick: int | None  # None while paused
    last_tick: int | None  # the latest tick that enqueued a run
    last_run_id: str | None


@dataclass(frozen=True, slots=True)
class Fired:
    """A tick this scheduler won: the run it enqueued."""

    schedule: str
    tick: int
    run: RunRecord


def _insert_ignoring_conflicts(dialect: str, table: sa.Table) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


async def ensure_schedules(store: RunStore, names: list[str]) -> None:
    """Give every schedule of ``names`` a state row (not paused, starting with its next
    tick) unless it has one."""
    if not names:
        return
    now = store.clock()
    rows = [{"name": n, "paused": False, "last_tick": math.floor(now), "updated_at": now} for n in names]
    statement = _insert_ignoring_conflicts(store.dialect, schedules).on_conflict_do_nothing(index_elements=["name"])
    await store.run_sync(lambda conn: conn.execute(statement, rows))


async def schedule_states(store: RunStore) -> dict[str, ScheduleState]:
    """The stored state of every schedule ever seen, by name."""

    def read(conn: Connection) -> dict[str, ScheduleState]:
        return {
            r.name: ScheduleState(r.name, bool(r.paused), r.paused_by, r.paused_at, int(r.last_tick))
            for r in conn.execute(sa.select(schedules))
        }

    return await store.run_sync(read, readonly=True)


async def set_paused(
    store: RunStore, section: SchedulesSection, name: str, paused: bool, *, by: str = ""
) -> ScheduleState:
    """Pause or resume schedule ``name`` for every worker. Resuming skips the ticks of
    the pause (the schedule starts again with its next tick). Raises
    :class:`ScheduleNotFound` for a name ``section`` does not declare."""
    section.get(name)
    await ensure_schedules(store, [name])
    now = store.clock()
    values: dict[str, Any] = {"paused": paused, "updated_at": now}
    if paused:
        values.update(paused_by=by or None, paused_at=now)
    else:
        values.update(paused_by=None, paused_at=None, last_tick=math.floor(now))

    def write(conn: Connection) -> ScheduleState:
        # a resume must not move last_tick back over ticks fired meanwhile
        guard = sa.true() if paused else schedules.c.paused.is_(True)
        conn.execute(schedules.update().where(schedules.c.name == name, guard).values(values))
        r = conn.execute(sa.select(schedules).where(schedules.c.name == name)).one()
        return ScheduleState(r.name, bool(r.paused), r.paused_by, r.paused_at, int(r.last_tick))

    return await store.run_sync(write)


async def list_schedules(store: RunStore, section: SchedulesSection, queues: QueuesSection) -> list[ScheduleView]:
    """Every declared schedule with its state, next tick and latest run, by name."""
    states = await schedule_states(store)
    latest = (
        sa.select(schedule_ticks.c.schedule, schedule_ticks.c.tick, schedule_ticks.c.run_id)
        .order_by(schedule_ticks.c.tick.desc())
        .limit(1)
    )

    def read(conn: Connection) -> dict[str, tuple[int, str]]:
        found = {}
        for name in section.root:
            row = conn.execute(latest.where(schedule_ticks.c.schedule == name)).first()
            if row is not None:
                found[name] = (int(row.tick), str(row.run_id))
        return found

    fired = await store.run_sync(read, readonly=True)
    now = store.clock()
    views = []
    for name, settings in sorted(section.root.items()):
        state = states.get(name)
        paused = state is not None and state.paused
        last = fired.get(name)
        views.append(
            ScheduleView(
                name=name,
                pipeline=settings.pipeline,
                rule=settings.describe(),
                queue=queue_of(settings, queues),
                paused=paused,
                paused_by=state.paused_by if state else None,
                paused_at=state.paused_at if state else None,
                next_tick=None if paused else settings.following(now),
                last_tick=last[0] if last else None,
                last_run_id=last[1] if last else None,
            )
        )
    return views


def queue_of(settings: ScheduleSettings, queues: QueuesSection) -> str:
    """Where a schedule's runs are enqueued: its ``queue:``, else its pipeline's queue, else ``default``."""
    return settings.queue or default_queue(queues, settings.pipeline) or "default"


class Scheduler:
    """Fires the schedules of ``section`` into their queues, exactly once per tick
    however many schedulers share the store (see the module docstring).

    ``pipelines`` (by name) must hold every scheduled pipeline, and each schedule's
    inputs must suit its pipeline: both are checked here, so a mistake stops the
    worker at start-up with :class:`ConfigError` rather than failing on every tick."""

    def __init__(
        self,
        store: RunStore,
        section: SchedulesSection,
        pipelines: Mapping[str, Any],
        *,
        queues: QueuesSection | None = None,
        grace_s: float = 60.0,
        max_sleep_s: float = 5.0,
        sleep: Callable[[float], Any] = anyio.sleep,
    ) -> None:
        from legato.store._durable import pipeline_version

        self.store = store
        self.section = section
        self.queues = queues if queues is not None else QueuesSection()
        self.grace_s = grace_s
        self.max_sleep_s = max_sleep_s
        self.sleep = sleep
        self.fired = 0
        self._versions: dict[str, str] = {}
        for name, settings in section.root.items():
            pipeline = pipelines.get(settings.pipeline)
            if pipeline is None:
                known = ", ".join(sorted(pipelines)) or "none"
                raise ConfigError(
                    f"schedules.{name}.pipeline: no pipeline {settings.pipeline!r} in `pipelines:` (declared: {known})"
                )
            try:
                pipeline.check_inputs(dict(settings.inputs))
            except InputError as exc:
                raise ConfigError(f"schedules.{name}.inputs: {exc}") from None
            self._versions[settings.pipeline] = pipeline_version(pipeline)

    async def fire_due(self) -> list[Fired]:
        """Enqueue a run for every due tick this scheduler wins; returns them."""
        states = await schedule_states(self.store)
        if any(name not in states for name in self.section.root):  # first sight: one write, then reads only
            await ensure_schedules(self.store, [n for n in self.section.root if n not in states])
            states = await schedule_states(self.store)
        now = self.store.clock()
        fired: list[Fired] = []
        for name, settings in self.section.root.items():
            state = states[name]
            if state.paused:
                continue
            for tick in settings.due(state.last_tick, now, self.grace_s):
                run = await self._fire(name, settings, tick)
                if run is not None:
                    fired.append(Fired(name, tick, run))
        self.fired += len(fired)
        return fired

    async def _fire(self, name: str, settings: ScheduleSettings, tick: int) -> RunRecord | None:
        store = self.store
        row = store.new_run_row(
            NewRun(
                pipeline=settings.pipeline,
                version_hash=self._versions[settings.pipeline],
                inputs=dict(settings.inputs),
                queue=queue_of(settings, self.queues),
                priority=settings.priority,
            )
        )
        now = row["created_at"]
        claim = (
            _insert_ignoring_conflicts(store.dialect, schedule_ticks)
            .values(schedule=name, tick=tick, run_id=row["id"], fired_at=now)
            .on_conflict_do_nothing(index_elements=["schedule", "tick"])
            .returning(schedule_ticks.c.tick)
        )
        advance = (
            schedules.update()
            .where(schedules.c.name == name, schedules.c.last_tick < tick)
            .values(last_tick=tick, updated_at=now)
        )
        paused = sa.select(schedules.c.paused).where(schedules.c.name == name)

        def fire(conn: Connection) -> RunRecord | None:
            if conn.execute(paused).scalar():  # paused since the states were read
                return None
            if conn.execute(claim).first() is None:  # another scheduler fired this tick
                return None
            record = insert_run(conn, row, store.dialect)
            conn.execute(advance)
            return record

        record = await store.run_sync(fire)
        if record is not None:
            log.info("schedule %s fired its tick %s: run %s on queue %s", name, tick, record.id, record.queue)
        return record

    def _wait_s(self) -> float:
        now = self.store.clock()
        upcoming = [s.following(now) for s in self.section.root.values()]
        return max(0.0, min([self.max_sleep_s, *(t - now for t in upcoming)])) + 0.005  # wake just after the tick

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Fire due ticks, sleep until the next one (at most ``max_sleep_s``, so pauses
        and resumes by others are seen), repeat until cancelled. A failing store is
        logged and retried on the next wake-up."""
        task_status.started()
        while True:
            try:
                await self.fire_due()
            except Exception:
                log.exception("firing schedules failed; retrying")
            await self.sleep(self._wait_s())
