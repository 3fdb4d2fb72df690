"""Budgets: how much a scope may spend, and the stores that keep the count.

A :class:`Budget` is a limit in USD for a scope: ``run`` (the current run),
``pipeline:NAME``, ``key:ID`` (a gateway API key), ``day`` (everything, per UTC
day), or any ``label`` of your own; ``period="day"`` or ``"month"`` makes any
scope restart at 00:00 UTC of each day or month.

Spending is *reserved* before a call and *settled* after it:

1. ``await store.reserve(budget, estimate)`` holds money for the call, atomically,
   or raises :class:`~legato.errors.BudgetExceeded`;
2. ``await reservation.settle(actual)`` releases the hold and adds the real cost
   to ``spent`` (``release()`` when nothing was spent).

The admission rule (one atomic step, in memory or in a Redis script):

* ``spent + estimate > limit``: refused, the budget is exhausted;
* ``spent + reserved + estimate * margin <= limit``: admitted, holding
  ``estimate * margin`` (``margin`` defaults to 2);
* nothing else in flight (``reserved == 0``): admitted alone, holding ``estimate``;
* otherwise the money is held by calls in flight: the caller waits for them to
  settle (up to ``wait_s``) and tries again; refused if they do not settle in time.

So concurrent calls only ever share money they could each overspend twice over,
and the last calls of a budget run one at a time: the budget ends above its limit
by at most one call's overrun, provided no call costs more than ``margin`` times
its estimate (with ``max_tokens`` set, estimates are upper bounds on output). No
money is wasted: a caller refused while others are in flight would have been
admitted after they settle, so it waits instead.

With ``last_alone=True`` (the gateway's key budgets, which reserve each call's
worst case) a budget is exhausted only when ``spent >= limit``: a call that does
not fit in what is left still runs when nothing else is in flight, so the budget
ends above its limit by at most that one call's worst case, and a small remainder
stays usable by calls whose worst case is large.

A reservation is a lease (``lease_s``): if its process dies before settling, the
hold lapses instead of keeping the money for ever. Amounts are integer
nano-dollars, so thousands of small charges add up exactly.

When the store cannot be reached (:class:`~legato.errors.LimitsUnavailable`),
``on_unavailable`` decides: ``"fail_closed"`` (the default) raises it, nothing is
spent; ``"fail_open"`` lets the call through uncounted (logged as a warning).
Settling never raises: a settlement the store cannot take is logged and its hold
lapses with its lease.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import anyio

from legato.errors import BudgetBusy, BudgetExceeded, LimitsUnavailable
from legato.ledger import current_ledger

__all__ = ["Budget", "BudgetState", "BudgetStore", "FailureMode", "MemoryBudgetStore", "Reservation"]

log = logging.getLogger("legato.cost")

FailureMode = Literal["fail_closed", "fail_open"]
Seed = Callable[[], Awaitable[float]]

NANO = 1_000_000_000
_DAY_S = 86_400.0


def to_nano(usd: float) -> int:
    return round(usd * NANO)


def from_nano(nano: int) -> float:
    return nano / NANO


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending limit in USD for a scope. See the module docstring for scopes.

    ``period``: ``"day"`` or ``"month"`` restarts the count at 00:00 UTC on each new
    day or month; ``None`` never restarts (the ``day`` scope is daily by itself).
    """

    limit_usd: float
    scope: str = "run"
    period: Literal["day", "month"] | None = None

    def __post_init__(self) -> None:
        if not self.limit_usd >= 0:
            raise ValueError(f"budget {self.scope!r}: limit_usd must be >= 0, got {self.limit_usd}")
        if not self.scope or self.scope.split() != [self.scope]:  # empty, or holds whitespace
            raise ValueError(f"budget scope must be a non-empty word such as 'run' or 'key:ID', got {self.scope!r}")
        if self.period not in (None, "day", "month"):
            raise ValueError(f"budget {self.scope!r}: period must be 'day', 'month' or None, got {self.period!r}")

    @property
    def effective_period(self) -> str | None:
        return "day" if self.scope == "day" else self.period

    def key(self, now: float, *, run: str | None = None) -> str:
        """The store key this budget counts under at time ``now`` (epoch seconds).

        ``run`` names the run for a ``run`` budget; by default it is the outermost
        usage ledger of the calling code (the run's, inside ``Pipeline.run``).
        """
        scope = self.scope
        if scope == "run":
            scope = f"run:{run or _current_run()}"
        period = self.effective_period
        if period is not None:
            scope = f"{scope}@{_period_of(period, int(now // _DAY_S))[0]}"
        return scope

    def expires_after(self, now: float) -> float | None:
        """Seconds a store keeps this budget's count: a day past the end of its period."""
        period = self.effective_period
        if period is None:
            return None
        return _period_of(period, int(now // _DAY_S))[1] - now + _DAY_S


@functools.lru_cache(maxsize=16)
def _period_of(period: str, day: int) -> tuple[str, float]:
    """The stamp (``YYYY-MM-DD`` or ``YYYY-MM``) and the end (epoch seconds) of the ``day`` or
    ``month`` period holding UTC day number ``day``: worked out once a day, not once a call."""
    start = datetime.fromtimestamp(day * _DAY_S, UTC)
    if period == "day":
        return start.strftime("%Y-%m-%d"), (start + timedelta(days=1)).timestamp()
    end = datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)
    return start.strftime("%Y-%m"), end.timestamp()


def _current_run() -> str:
    ledger = current_ledger()
    if ledger is None:
        return "default"
    while ledger.parent is not None:
        ledger = ledger.parent
    return ledger.name or f"ledger-{id(ledger):x}"


@dataclass(frozen=True, slots=True)
class BudgetState:
    """A budget's count: ``spent`` (settled) and ``reserved`` (in flight), in USD."""

    key: str
    limit: float
    spent: float
    reserved: float

    @property
    def remaining(self) -> float:
        return max(0.0, self.limit - self.spent - self.reserved)


EXHAUSTED, ADMITTED, BUSY, UNSEEDED = 0, 1, -1, 2


@dataclass(frozen=True, slots=True)
class Rule:
    """How :meth:`BudgetStore.try_reserve` admits a call (see the module docstring).

    ``last_alone``: exhausted only at ``spent >= limit``; a call that does not fit
    runs when nothing else is in flight. ``seeding``: answer ``UNSEEDED`` while the
    count of the key has not been seeded (:meth:`BudgetStore.seed`).
    """

    last_alone: bool = False
    seeding: bool = False


class BudgetStore(ABC):
    """Atomic reserve/settle counters per budget key; subclasses keep them somewhere.

    A store implements three primitives on integer nano-USD (:meth:`try_reserve`,
    :meth:`settle`, :meth:`counts`); the budget operations (:meth:`reserve`,
    :meth:`charge`, :meth:`state`) are built on them here.
    """

    clock: Callable[[], float]
    lease_s: float
    on_unavailable: FailureMode = "fail_closed"
    poll_s: float = 0.05  # how often a waiting caller looks again (settles elsewhere are not signalled)
    # Whether the primitives wait (a store over the network). One that never waits cannot
    # be cancelled half-way, so it needs no shield (a cancel scope costs about 3 us a call).
    suspends: bool = True
    _settled: anyio.Event | None = None

    @abstractmethod
    async def try_reserve(
        self,
        key: str,
        rid: str,
        amount: int,
        padded: int,
        limit: int,
        *,
        now: float,
        lease_s: float,
        keep_s: float | None,
        rule: Rule = Rule(),
    ) -> tuple[int, int, int]:
        """Apply the admission rule (module docstring) atomically.

        Returns ``(status, spent, reserved)``: ``ADMITTED``, ``EXHAUSTED``, ``BUSY`` or
        ``UNSEEDED``, with the counts seen by the check. ``keep_s``: seconds to keep
        the key's counts (``None``: for ever).
        """

    @abstractmethod
    async def seed(self, key: str, spent: int, *, keep_s: float | None) -> None:
        """Add ``spent`` to the count of ``key`` unless it was seeded already."""

    @abstractmethod
    async def settle(self, key: str, rid: str, actual: int, *, keep_s: float | None) -> None:
        """Drop reservation ``rid`` (if it has not lapsed) and add ``actual`` to spent."""

    @abstractmethod
    async def counts(self, key: str, *, now: float) -> tuple[int, int]:
        """``(spent, reserved)`` of ``key`` (lapsed reservations are not counted)."""

    async def aclose(self) -> None:  # noqa: B027 - optional: stores without connections keep it
        """Release connections."""

    async def reserve(
        self,
        budget: Budget,
        usd: float,
        *,
        run: str | None = None,
        margin: float = 2.0,
        wait_s: float = 30.0,
        last_alone: bool = False,
        seed: Seed | None = None,
    ) -> Reservation:
        """Hold ``usd`` against ``budget`` or raise :class:`BudgetExceeded`.

        ``margin``, ``wait_s`` and ``last_alone``: see the module docstring (``wait_s=0``
        never waits). ``seed``: where the count of a budget this store has not seen
        starts (the USD already spent, e.g. from a durable record). Raises
        :class:`BudgetBusy` when the money left stayed held by calls in flight for
        ``wait_s``, :class:`LimitsUnavailable` when the store cannot be reached
        (unless ``on_unavailable`` is ``"fail_open"``).
        """
        if not usd >= 0:
            raise ValueError(f"cannot reserve {usd!r} USD")
        if margin < 1:
            raise ValueError(f"margin must be >= 1, got {margin}")
        rid = os.urandom(16).hex()
        rule = Rule(last_alone=last_alone, seeding=seed is not None)
        try:
            status, key, spent, reserved = await self._admit(budget, usd, rid, run, margin, rule, seed, wait_s)
        except LimitsUnavailable as exc:
            if self.on_unavailable == "fail_closed":
                raise
            log.warning("budget %s not counted (fail_open): %s", budget.scope, exc)
            return Reservation(self, budget, budget.key(self.clock(), run=run), "", usd, held=False)
        if status == ADMITTED:
            return Reservation(self, budget, key, rid, usd)
        error = BudgetBusy if status == BUSY else BudgetExceeded
        raise error(key, budget.limit_usd, from_nano(spent + reserved), usd)

    async def _admit(
        self,
        budget: Budget,
        usd: float,
        rid: str,
        run: str | None,
        margin: float,
        rule: Rule,
        seed: Seed | None,
        wait_s: float,
    ) -> tuple[int, str, int, int]:
        async def attempt() -> tuple[int, str, int, int]:
            now = self.clock()
            key = budget.key(now, run=run)
            with shielded(self):  # never leave a hold behind half-made
                status, spent, reserved = await self.try_reserve(
                    key,
                    rid,
                    to_nano(usd),
                    to_nano(usd * margin),
                    to_nano(budget.limit_usd),
                    now=now,
                    lease_s=self.lease_s,
                    keep_s=budget.expires_after(now),
                    rule=rule,
                )
            return status, key, spent, reserved

        status, key, spent, reserved = await attempt()
        if status == UNSEEDED and seed is not None:
            await self.seed(key, to_nano(max(0.0, await seed())), keep_s=budget.expires_after(self.clock()))
            status, key, spent, reserved = await attempt()
        if status == BUSY and wait_s > 0:
            with anyio.move_on_after(wait_s):
                while status == BUSY:
                    await self._wait_for_settle()
                    status, key, spent, reserved = await attempt()
        return status, key, spent, reserved

    async def charge(self, budget: Budget, usd: float, *, run: str | None = None) -> None:
        """Add ``usd`` to ``budget``'s spend without a reservation (spend known after the fact)."""
        now = self.clock()
        await self.settle(budget.key(now, run=run), "", to_nano(max(0.0, usd)), keep_s=budget.expires_after(now))
        self._signal_settle()

    async def state(self, budget: Budget, *, run: str | None = None) -> BudgetState:
        """What ``budget`` has spent and holds in reservations now."""
        now = self.clock()
        key = budget.key(now, run=run)
        spent, reserved = await self.counts(key, now=now)
        return BudgetState(key, budget.limit_usd, from_nano(spent), from_nano(reserved))

    async def _wait_for_settle(self) -> None:
        if self._settled is None or self._settled.is_set():
            self._settled = anyio.Event()
        with anyio.move_on_after(self.poll_s):
            await self._settled.wait()

    def _signal_settle(self) -> None:
        if self._settled is not None:
            self._settled.set()


@dataclass(eq=False)
class Reservation:
    """Money held for one call. Settle it exactly once (later calls are no-ops).

    ``held`` is False for a call let through uncounted while the store was
    unreachable (``fail_open``): settling it still tries to charge the real cost.
    """

    store: BudgetStore
    budget: Budget
    key: str
    rid: str
    usd: float
    held: bool = True
    settled: bool = field(default=False)

    async def settle(self, actual_usd: float) -> None:
        """Release the reservation and charge ``actual_usd`` (the real cost of the call).

        Never raises for an unreachable store: the call already happened; the failure
        is logged and the hold lapses with its lease."""
        if self.settled:
            return
        self.settled = True
        keep_s = self.budget.expires_after(self.store.clock())
        try:
            with shielded(self.store):
                await self.store.settle(self.key, self.rid, to_nano(max(0.0, actual_usd)), keep_s=keep_s)
        except LimitsUnavailable as exc:
            log.warning("could not settle $%.6f on budget %s: %s", actual_usd, self.key, exc)
        finally:
            self.store._signal_settle()

    async def release(self) -> None:
        """Release the reservation without charging anything."""
        await self.settle(0.0)


_UNSHIELDED = contextlib.nullcontext()


def shielded(store: object) -> AbstractContextManager[object]:
    """A shield from cancellation around a call of ``store`` that must not stop half-way;
    none for a store whose calls never wait (``suspends = False``)."""
    return anyio.CancelScope(shield=True) if getattr(store, "suspends", True) else _UNSHIELDED


class MemoryBudgetStore(BudgetStore):
    """Budget counts in this process (thread-safe). ``clock`` is epoch seconds."""

    suspends = False

    def __init__(self, *, lease_s: float = 600.0, clock: Callable[[], float] = time.time) -> None:
        self.lease_s = lease_s
        self.clock = clock
        self._lock = threading.Lock()
        self._spent: dict[str, int] = {}
        self._seeded: set[str] = set()
        self._leases: dict[str, dict[str, tuple[int, float]]] = {}  # key -> rid -> (amount, lapses_at)
        self._expiry: dict[str, float] = {}
        self._next_sweep = 0.0

    def _purge(self, key: str, now: float) -> None:
        if now >= self._next_sweep:  # drop the counts of periods long over (yesterday's keys)
            self._next_sweep = now + 3600.0
            for old in [k for k, at in self._expiry.items() if now >= at]:
                self._forget(old)
        expires = self._expiry.get(key)
        if expires is not None and now >= expires:
            self._forget(key)
        leases = self._leases.get(key)
        if leases:
            for rid in [r for r, (_, lapses_at) in leases.items() if now >= lapses_at]:
                del leases[rid]

    def _forget(self, key: str) -> None:
        self._spent.pop(key, None)
        self._leases.pop(key, None)
        self._expiry.pop(key, None)
        self._seeded.discard(key)

    async def try_reserve(
        self,
        key: str,
        rid: str,
        amount: int,
        padded: int,
        limit: int,
        *,
        now: float,
        lease_s: float,
        keep_s: float | None,
        rule: Rule = Rule(),
    ) -> tuple[int, int, int]:
        with self._lock:
            self._purge(key, now)
            if rule.seeding and key not in self._seeded:
                return UNSEEDED, 0, 0
            spent = self._spent.get(key, 0)
            leases = self._leases.setdefault(key, {})
            reserved = sum(a for a, _ in leases.values())
            if (spent >= limit) if rule.last_alone else (spent + amount > limit):
                return EXHAUSTED, spent, reserved
            if spent + reserved + padded <= limit:
                hold = padded
            elif reserved == 0:
                hold = amount
            else:
                return BUSY, spent, reserved
            leases[rid] = (hold, now + lease_s)
            if keep_s is not None:
                self._expiry[key] = now + keep_s
            return ADMITTED, spent, reserved + hold

    async def seed(self, key: str, spent: int, *, keep_s: float | None) -> None:
        with self._lock:
            if key in self._seeded:
                return
            self._seeded.add(key)
            self._spent[key] = self._spent.get(key, 0) + spent
            if keep_s is not None:
                self._expiry[key] = self.clock() + keep_s

    async def settle(self, key: str, rid: str, actual: int, *, keep_s: float | None) -> None:
        with self._lock:
            self._purge(key, self.clock())
            self._leases.get(key, {}).pop(rid, None)
            self._spent[key] = self._spent.get(key, 0) + actual
            if keep_s is not None:
                self._expiry[key] = self.clock() + keep_s

    async def counts(self, key: str, *, now: float) -> tuple[int, int]:
        with self._lock:
            self._purge(key, now)
            leases = self._leases.get(key, {})
            return self._spent.get(key, 0), sum(a for a, _ in leases.values())
