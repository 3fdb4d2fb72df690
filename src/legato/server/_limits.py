"""Per-key requests-per-minute, tokens-per-minute and budgets, shared across replicas.

Counting uses a sliding window approximated from two fixed one-minute windows
(``previous * (1 - elapsed) + current``), the usual trade of a few bytes per key for
smooth limits without per-request logs. With a Redis URL every replica counts in
the same Redis keys; the admission check runs as one Lua script so that
check-and-increment is atomic across replicas. Without Redis the same arithmetic
runs in process (one replica).

Admission (:meth:`KeyLimiter.admit`) counts the request and refuses it when the
key is over its RPM, its TPM (tokens already used in the window) or its budget.
Settlement (:meth:`KeyLimiter.settle`) adds the tokens and dollars the call really
used. Budgets are therefore checked before a call with what has been spent so far:
one call may overrun a budget by its own cost, never more.

The live budget counter of the current period is seeded from the durable ``spend``
table the first time a replica needs it (and again whenever Redis lost it), so a
Redis restart does not reset anyone's budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from legato.server._errors import GatewayError
from legato.server._keys import ApiKey

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["KeyLimiter", "MemoryCounters", "RedisCounters", "period_start"]

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


@dataclass(frozen=True, slots=True)
class _Verdict:
    """``kind`` is ``ok``, ``rpm``, ``tpm``, ``budget`` or ``seed`` (budget counter missing)."""

    kind: str
    current: float = 0.0
    previous: float = 0.0


class MemoryCounters:
    """Counters for one replica."""

    def __init__(self) -> None:
        self._values: dict[str, float] = {}

    async def admit(self, keys: list[str], rpm: int, tpm: int, weight: float, budget: float) -> _Verdict:
        get = self._values.get
        if budget >= 0:
            spent = get(keys[4])
            if spent is None:
                return _Verdict("seed")
            if spent >= budget:
                return _Verdict("budget", spent)
        if tpm >= 0:
            tc, tp = get(keys[2], 0.0), get(keys[3], 0.0)
            if tc + tp * weight >= tpm:
                return _Verdict("tpm", tc, tp)
        rc = get(keys[0], 0.0)
        if rpm >= 0:
            rp = get(keys[1], 0.0)
            if rc + rp * weight + 1 > rpm:
                return _Verdict("rpm", rc, rp)
        self._values[keys[0]] = rc + 1
        return _Verdict("ok")

    async def settle(self, tokens_key: str, tokens: int, spend_key: str | None, cost: float) -> None:
        self._values[tokens_key] = self._values.get(tokens_key, 0.0) + tokens
        if spend_key is not None and cost:
            self._values[spend_key] = self._values.get(spend_key, 0.0) + cost

    async def seed(self, spend_key: str, value: float) -> None:
        self._values.setdefault(spend_key, value)

    def prune(self, live_windows: set[str]) -> None:
        """Forget window counters other than ``live_windows`` (window ids)."""
        for name in [k for k in self._values if ":w" in k and k.rsplit(":w", 1)[1] not in live_windows]:
            del self._values[name]


_ADMIT_LUA = """
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local w = tonumber(ARGV[3])
local budget = tonumber(ARGV[4])
if budget >= 0 then
  local spent = redis.call('GET', KEYS[5])
  if not spent then return {'seed', '0', '0'} end
  if tonumber(spent) >= budget then return {'budget', spent, '0'} end
end
if tpm >= 0 then
  local tc = tonumber(redis.call('GET', KEYS[3]) or '0')
  local tp = tonumber(redis.call('GET', KEYS[4]) or '0')
  if tc + tp * w >= tpm then return {'tpm', tostring(tc), tostring(tp)} end
end
local rc = tonumber(redis.call('GET', KEYS[1]) or '0')
if rpm >= 0 then
  local rp = tonumber(redis.call('GET', KEYS[2]) or '0')
  if rc + rp * w + 1 > rpm then return {'rpm', tostring(rc), tostring(rp)} end
end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
return {'ok', '0', '0'}
"""


class RedisCounters:
    """Counters in Redis, shared by every replica that uses the same URL and prefix."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._admit = redis.register_script(_ADMIT_LUA)

    async def admit(self, keys: list[str], rpm: int, tpm: int, weight: float, budget: float) -> _Verdict:
        raw: list[Any] = await self._admit(keys=keys, args=[rpm, tpm, weight, budget, 2 * WINDOW_S + 5])
        kind, cur, prev = (v.decode() if isinstance(v, bytes) else str(v) for v in raw)
        return _Verdict(kind, float(cur), float(prev))

    async def settle(self, tokens_key: str, tokens: int, spend_key: str | None, cost: float) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            if tokens:
                pipe.incrby(tokens_key, tokens)
                pipe.expire(tokens_key, 2 * WINDOW_S + 5)
            if spend_key is not None and cost:
                pipe.incrbyfloat(spend_key, cost)
                pipe.expire(spend_key, 40 * 86400)
            await pipe.execute()

    async def seed(self, spend_key: str, value: float) -> None:
        await self.redis.set(spend_key, repr(float(value)), nx=True, ex=40 * 86400)


Counters = MemoryCounters | RedisCounters


class KeyLimiter:
    """Admits requests of a key within its limits and records what they used."""

    def __init__(
        self,
        counters: Counters,
        *,
        prefix: str = "legato:",
        seed: SpendSeed | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.counters = counters
        self.prefix = prefix
        self._seed = seed
        self._clock = clock

    def _keys(self, key: ApiKey, now: float) -> tuple[list[str], int, float]:
        window = int(now // WINDOW_S)
        tag = f"{self.prefix}limit:{{{key.id}}}"
        start = period_start(key.budget_period, now)
        spend = f"{tag}:spend:{start or 'total'}"
        keys = [f"{tag}:req:w{window}", f"{tag}:req:w{window - 1}", f"{tag}:tok:w{window}", f"{tag}:tok:w{window - 1}"]
        return [*keys, spend], window, (now % WINDOW_S) / WINDOW_S

    async def admit(self, key: ApiKey) -> None:
        """Count one request for ``key``; :class:`GatewayError` 429 when over a limit or budget."""
        if key.rpm is None and key.tpm is None and key.budget_usd is None:
            return
        now = self._clock()
        keys, window, elapsed = self._keys(key, now)
        rpm = key.rpm if key.rpm is not None else -1
        tpm = key.tpm if key.tpm is not None else -1
        budget = key.budget_usd if key.budget_usd is not None else -1.0
        verdict = await self.counters.admit(keys, rpm, tpm, 1.0 - elapsed, budget)
        if verdict.kind == "seed":
            spent = await self._seed(key.id, period_start(key.budget_period, now)) if self._seed else 0.0
            await self.counters.seed(keys[4], spent)
            verdict = await self.counters.admit(keys, rpm, tpm, 1.0 - elapsed, budget)
        if isinstance(self.counters, MemoryCounters) and window % 8 == 0:
            self.counters.prune({str(window), str(window - 1)})
        if verdict.kind == "ok":
            return
        if verdict.kind == "budget":
            raise GatewayError(
                429,
                "quota",
                f"budget of API key {key.prefix}... is exhausted: spent ${verdict.current:.4f} "
                f"of ${budget:.4f} this {key.budget_period}",
                code="budget_exceeded",
            )
        limit = rpm if verdict.kind == "rpm" else tpm
        wait = _wait_seconds(verdict.current, verdict.previous, limit, elapsed, verdict.kind == "rpm")
        raise GatewayError(
            429,
            "rate_limit",
            f"rate limit of API key {key.prefix}... reached: {limit} "
            f"{'requests' if verdict.kind == 'rpm' else 'tokens'} per minute",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )

    async def settle(self, key: ApiKey, *, tokens: int, cost: float | None) -> None:
        """Add what a finished call used (tokens for TPM, dollars for the budget)."""
        if key.tpm is None and key.budget_usd is None:
            return
        keys, _, _ = self._keys(key, self._clock())
        await self.counters.settle(keys[2], tokens, keys[4] if key.budget_usd is not None else None, cost or 0.0)


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
