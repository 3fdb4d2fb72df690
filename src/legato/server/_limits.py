"""Per-key requests-per-minute, tokens-per-minute and budgets, shared across replicas.

Counting uses a sliding window approximated from two fixed one-minute windows
(``previous * (1 - elapsed) + current``), the usual trade of a few bytes per key for
smooth limits without per-request logs. With a Redis URL every replica counts in
the same Redis keys; the admission check runs as one Lua script so that
check-and-increment is atomic across replicas. Without Redis the same arithmetic
runs in process (one replica).

Budgets are reservations (:mod:`legato.cost`): :meth:`KeyLimiter.admit` holds the
call's worst case (input estimate plus ``max_tokens``, or the gateway's
``max_output_tokens``, at the model's prices) on the key's budget before the call,
atomically across replicas, and :meth:`Admission.settle` replaces the hold with
what the call really cost (nothing, when it failed). A key's budget is exhausted
once ``spent >= limit``; a call whose worst case does not fit in what is left runs
only when nothing else of that key is in flight, and the others wait for it
(``budget_wait_s``), so a budget ends above its limit by at most one call's worst
case, however many callers race for it.

The live budget count of the current period is seeded from the durable ``spend``
table the first time it is needed (and again whenever Redis lost it), so a Redis
restart does not reset anyone's budget.

When Redis cannot be reached, ``failure_mode`` decides: ``fail_closed`` answers
503 with ``Retry-After`` for keys that have limits or a budget; ``fail_open`` lets
their calls through uncounted. Keys without limits never touch Redis.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from legato.cost import Budget, BudgetStore, Reservation
from legato.cost._budget import FailureMode, shielded
from legato.errors import BudgetBusy, BudgetExceeded, LimitsUnavailable
from legato.server._errors import GatewayError, from_exception
from legato.server._keys import ApiKey
from legato.server._outage import OutageLog

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Admission", "KeyLimiter", "MemoryCounters", "Quota", "RedisCounters", "period_start"]

log = logging.getLogger("legato.server")

WINDOW_S = 60

SpendSeed = Callable[[str, str | None], Awaitable[float]]


def period_start(period: str, now: float) -> str | None:
    """First day (``YYYY-MM-DD``) of the budget period containing ``now``; None for ``total``."""
    day = datetime.fromtimestamp(now, UTC)
    if period == "day":
        return day.strftime("%Y-%m-%d")
    if period == "month":
        return day.strftime("%Y-%m-01")
    return None


Verdict = Literal["ok", "rpm", "tpm"]


@dataclass(frozen=True, slots=True)
class _Verdict:
    """For ``ok``: ``current``/``previous`` count requests (this one included) and
    ``tokens``/``tokens_previous`` the tokens, in this window and the one before."""

    kind: Verdict
    current: float = 0.0
    previous: float = 0.0
    tokens: float = 0.0
    tokens_previous: float = 0.0


@dataclass(frozen=True, slots=True)
class Quota:
    """What a key has left of its per-minute limits, as OpenAI's ``x-ratelimit-*`` headers."""

    rpm: int | None
    requests: float  # sliding count, this request included
    tpm: int | None
    tokens: float  # sliding count of tokens used
    reset_s: float  # until the current one-minute window ends

    def headers(self) -> dict[str, str]:
        reset = f"{max(1, math.ceil(self.reset_s))}s"
        out: dict[str, str] = {}
        if self.rpm is not None:
            out["x-ratelimit-limit-requests"] = str(self.rpm)
            out["x-ratelimit-remaining-requests"] = str(max(0, math.floor(self.rpm - self.requests)))
            out["x-ratelimit-reset-requests"] = reset
        if self.tpm is not None:
            out["x-ratelimit-limit-tokens"] = str(self.tpm)
            out["x-ratelimit-remaining-tokens"] = str(max(0, math.floor(self.tpm - self.tokens)))
            out["x-ratelimit-reset-tokens"] = reset
        return out


class MemoryCounters:
    """Counters for one replica."""

    suspends = False  # never waits: nothing to shield (see legato.cost._budget.shielded)

    def __init__(self) -> None:
        self._values: dict[str, float] = {}

    async def admit(self, keys: list[str], rpm: int, tpm: int, weight: float) -> _Verdict:
        get = self._values.get
        if tpm >= 0:
            tc, tp = get(keys[2], 0.0), get(keys[3], 0.0)
            if tc + tp * weight >= tpm:
                return _Verdict("tpm", tc, tp)
        rc, rp = get(keys[0], 0.0), get(keys[1], 0.0)
        if rpm >= 0 and rc + rp * weight + 1 > rpm:
            return _Verdict("rpm", rc, rp)
        self._values[keys[0]] = rc + 1
        return _Verdict("ok", rc + 1, rp, get(keys[2], 0.0), get(keys[3], 0.0))

    async def settle(self, tokens_key: str, tokens: int) -> None:
        self._values[tokens_key] = self._values.get(tokens_key, 0.0) + tokens

    def prune(self, live_windows: set[str]) -> None:
        """Forget window counters other than ``live_windows`` (window ids)."""
        for name in [k for k in self._values if ":w" in k and k.rsplit(":w", 1)[1] not in live_windows]:
            del self._values[name]


_ADMIT_LUA = """
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local w = tonumber(ARGV[3])
if tpm >= 0 then
  local tc = tonumber(redis.call('GET', KEYS[3]) or '0')
  local tp = tonumber(redis.call('GET', KEYS[4]) or '0')
  if tc + tp * w >= tpm then return {'tpm', tostring(tc), tostring(tp)} end
end
local rc = tonumber(redis.call('GET', KEYS[1]) or '0')
local rp = tonumber(redis.call('GET', KEYS[2]) or '0')
if rpm >= 0 then
  if rc + rp * w + 1 > rpm then return {'rpm', tostring(rc), tostring(rp)} end
end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
local tc = redis.call('GET', KEYS[3]) or '0'
local tp = redis.call('GET', KEYS[4]) or '0'
return {'ok', tostring(rc + 1), tostring(rp), tc, tp}
"""


class RedisCounters:
    """Counters in Redis, shared by every replica that uses the same URL and prefix.

    Every Redis failure is raised as :class:`LimitsUnavailable`."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._admit = redis.register_script(_ADMIT_LUA)

    async def admit(self, keys: list[str], rpm: int, tpm: int, weight: float) -> _Verdict:
        async with _translated():
            raw: list[Any] = await self._admit(keys=keys, args=[rpm, tpm, weight, 2 * WINDOW_S + 5])
        kind, *numbers = (v.decode() if isinstance(v, bytes) else str(v) for v in raw)
        verdict: Verdict = "rpm" if kind == "rpm" else "tpm" if kind == "tpm" else "ok"
        return _Verdict(verdict, *(float(n) for n in numbers))

    async def settle(self, tokens_key: str, tokens: int) -> None:
        async with _translated(), self.redis.pipeline(transaction=False) as pipe:
            pipe.incrby(tokens_key, tokens)
            pipe.expire(tokens_key, 2 * WINDOW_S + 5)
            await pipe.execute()


@asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    """Raise any Redis failure as :class:`LimitsUnavailable` (the type callers decide on)."""
    from redis.exceptions import RedisError

    try:
        yield
    except (RedisError, OSError) as exc:
        raise LimitsUnavailable(f"the limits store (Redis) is unavailable: {type(exc).__name__}") from exc


Counters = MemoryCounters | RedisCounters


@dataclass(eq=False)
class Admission:
    """An admitted call: settle it once with what it used (:meth:`KeyLimiter.admit`)."""

    limiter: KeyLimiter
    key: ApiKey
    reservation: Reservation | None = None
    quota: Quota | None = None  # what is left of the key's RPM/TPM (None: no such limit)

    async def settle(self, *, tokens: int, cost: float | None) -> None:
        """Add the tokens to TPM and replace the budget hold with ``cost`` (0 releases it).
        Not cancelled half-way: each step that waits is shielded (the reservation's own)."""
        if self.key.tpm is not None and tokens > 0:
            with shielded(self.limiter.counters):
                await self.limiter.settle_tokens(self.key, tokens)
        if self.reservation is not None:
            await self.reservation.settle(cost or 0.0)


class KeyLimiter:
    """Admits requests of a key within its limits and records what they used.

    ``failure_mode`` applies to the RPM/TPM counters; the budget store applies its own
    ``on_unavailable`` (the app gives both the same setting)."""

    def __init__(
        self,
        counters: Counters,
        budgets: BudgetStore,
        *,
        prefix: str = "legato:",
        seed: SpendSeed | None = None,
        clock: Callable[[], float] = time.time,
        failure_mode: FailureMode = "fail_closed",
        budget_wait_s: float = 10.0,
    ) -> None:
        self.counters = counters
        self.budgets = budgets
        self.prefix = prefix
        self.failure_mode = failure_mode
        self.budget_wait_s = budget_wait_s
        self._seed = seed
        self._clock = clock
        self._outage = OutageLog(log, "the limits store (Redis)")
        self._pruned = -1  # the window whose start last pruned the in-memory counters
        # Whether settling a call may wait (a Redis or database store): only then does it
        # need a shield from cancellation (legato.cost._budget.shielded).
        self.suspends = bool(getattr(counters, "suspends", True) or getattr(budgets, "suspends", True))

    def _keys(self, key: ApiKey, now: float) -> tuple[list[str], int, float]:
        window = int(now // WINDOW_S)
        tag = f"{self.prefix}limit:{{{key.id}}}"
        keys = [f"{tag}:req:w{window}", f"{tag}:req:w{window - 1}", f"{tag}:tok:w{window}", f"{tag}:tok:w{window - 1}"]
        return keys, window, (now % WINDOW_S) / WINDOW_S

    async def admit(self, key: ApiKey, worst_usd: float = 0.0) -> Admission:
        """Hold ``worst_usd`` on the key's budget and count one request against its RPM.

        :class:`GatewayError` 429 when over a limit or the budget, 503 when the limits
        store is unreachable and the failure mode is ``fail_closed``."""
        admission = Admission(self, key, await self._reserve(key, worst_usd))
        try:
            admission.quota = await self._count(key)
        except BaseException:
            await admission.settle(tokens=0, cost=0.0)
            raise
        return admission

    async def _reserve(self, key: ApiKey, worst_usd: float) -> Reservation | None:
        if key.budget_usd is None:
            return None
        period = None if key.budget_period == "total" else key.budget_period
        budget = Budget(key.budget_usd, f"key:{key.id}", period)

        async def spent_so_far() -> float:
            start = period_start(key.budget_period, self._clock())
            return await self._seed(key.id, start) if self._seed else 0.0

        try:
            return await self.budgets.reserve(
                budget, worst_usd, margin=1.0, wait_s=self.budget_wait_s, last_alone=True, seed=spent_so_far
            )
        except BudgetBusy:
            raise GatewayError(
                429,
                "rate_limit",
                f"the budget of API key {key.prefix}... left is held by its calls in flight; retry shortly",
                code="budget_busy",
                headers={"Retry-After": "1"},
            ) from None
        except BudgetExceeded as exc:
            raise GatewayError(
                429,
                "quota",
                f"budget of API key {key.prefix}... is exhausted: spent ${exc.spent:.4f} "
                f"of ${key.budget_usd:.4f} this {key.budget_period}",
                code="budget_exceeded",
            ) from None
        except LimitsUnavailable as exc:
            raise from_exception(exc) from None

    async def _count(self, key: ApiKey) -> Quota | None:
        if key.rpm is None and key.tpm is None:
            return None
        now = self._clock()
        keys, window, elapsed = self._keys(key, now)
        rpm = key.rpm if key.rpm is not None else -1
        tpm = key.tpm if key.tpm is not None else -1
        try:
            verdict = await self.counters.admit(keys, rpm, tpm, 1.0 - elapsed)
        except LimitsUnavailable as exc:
            if self.failure_mode == "fail_open":
                self._outage.failed("rate limits of API key %s... not counted (fail_open): %s", key.prefix, exc)
                return None
            self._outage.failed("requests answered 503 (fail_closed): %s", exc)
            raise from_exception(exc) from None
        self._outage.recovered()
        if isinstance(self.counters, MemoryCounters) and window % 8 == 0 and window != self._pruned:
            self._pruned = window  # once in the window, not on each of its requests
            self.counters.prune({str(window), str(window - 1)})
        weight, reset = 1.0 - elapsed, (1.0 - elapsed) * WINDOW_S
        if verdict.kind == "ok":
            requests = verdict.current + verdict.previous * weight
            return Quota(key.rpm, requests, key.tpm, verdict.tokens + verdict.tokens_previous * weight, reset)
        # the exhausted limit's headers (remaining 0); the other counter was not read
        exhausted = (
            Quota(key.rpm, float(rpm), None, 0.0, reset)
            if verdict.kind == "rpm"
            else Quota(None, 0, key.tpm, tpm, reset)
        ).headers()
        limit = rpm if verdict.kind == "rpm" else tpm
        wait = _wait_seconds(verdict.current, verdict.previous, limit, elapsed, verdict.kind == "rpm")
        raise GatewayError(
            429,
            "rate_limit",
            f"rate limit of API key {key.prefix}... reached: {limit} "
            f"{'requests' if verdict.kind == 'rpm' else 'tokens'} per minute",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(max(1, math.ceil(wait))), **exhausted},
        )

    async def settle_tokens(self, key: ApiKey, tokens: int) -> None:
        """Add the tokens a finished call used to the key's TPM window (never raises for Redis)."""
        if key.tpm is None or tokens <= 0:
            return
        keys, _, _ = self._keys(key, self._clock())
        try:
            await self.counters.settle(keys[2], tokens)
        except LimitsUnavailable as exc:
            self._outage.failed("tokens of API key %s... not counted: %s", key.prefix, exc)


def _wait_seconds(current: float, previous: float, limit: float, elapsed: float, counting_this: bool) -> float:
    """Seconds until the sliding count drops below ``limit`` (no new traffic assumed)."""
    need = limit - (1 if counting_this else 0)
    if previous > 0 and need > current:
        # The previous window's share decays during this window.
        f = 1.0 - (need - current) / previous
        return max(0.0, (f - elapsed) * WINDOW_S)
    # Only the next window helps: this window's count becomes the decaying one.
    rest = (1.0 - elapsed) * WINDOW_S
    if current <= 0 or need <= 0:
        return rest + WINDOW_S
    return rest + max(0.0, 1.0 - need / current) * WINDOW_S
