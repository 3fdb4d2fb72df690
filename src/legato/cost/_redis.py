"""Budget counts in Redis, shared by every gateway replica and worker.

Each budget key has three Redis keys (one hash tag, so they live on one cluster
slot): a hash with ``spent`` and ``reserved`` (integer nano-USD), a hash of the
open reservations' amounts, and a sorted set of their lapse times. Reserving and
settling are Lua scripts, so the check-and-reserve is atomic across replicas; a
reservation whose process died lapses after its lease and is purged by the next
reserve.

Every Redis failure (refused, timed out, reset, an error reply) is raised as
:class:`~legato.errors.LimitsUnavailable`, never as a ``redis`` exception; the
client made from a URL gives up on a silent server after ``timeout_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from legato.cost._budget import BudgetStore, FailureMode, Rule
from legato.errors import LimitsUnavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisBudgetStore"]

_PURGE = """
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, rid in ipairs(lapsed) do
  local amount = redis.call('HGET', KEYS[3], rid)
  if amount then
    redis.call('HINCRBY', KEYS[1], 'reserved', 0 - tonumber(amount))  -- never -0: Redis refuses it as an integer
    redis.call('HDEL', KEYS[3], rid)
  end
  redis.call('ZREM', KEYS[2], rid)
end
"""

_KEEP = """
local keep = tonumber(ARGV[KEEP])
if keep > 0 then
  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], keep) end
end
"""

# KEYS: counts, lapse zset, amounts
# ARGV: now_ms, amount, limit, lapses_at_ms, rid, keep_ms, padded, last_alone (0/1), seeding (0/1)
# Returns {status, spent, reserved}: 1 admitted, 0 exhausted, -1 busy, 2 unseeded (see legato.cost._budget).
_RESERVE = (
    """
if ARGV[9] == '1' and redis.call('HEXISTS', KEYS[1], 'seeded') == 0 then
  return {2, 0, 0}
end
"""
    + _PURGE
    + """
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
local amount = tonumber(ARGV[2])
local padded = tonumber(ARGV[7])
local limit = tonumber(ARGV[3])
local exhausted
if ARGV[8] == '1' then exhausted = spent >= limit else exhausted = spent + amount > limit end
local hold
if exhausted then
  return {0, spent, reserved}
elseif spent + reserved + padded <= limit then
  hold = padded
elseif reserved == 0 then
  hold = amount
else
  return {-1, spent, reserved}
end
redis.call('HINCRBY', KEYS[1], 'reserved', hold)
redis.call('HSET', KEYS[3], ARGV[5], hold)
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
"""
    + _KEEP.replace("KEEP", "6")
    + """
return {1, spent, reserved + hold}
"""
)

# KEYS: as above; ARGV: rid, actual, keep_ms
_SETTLE = (
    """
local amount = redis.call('HGET', KEYS[3], ARGV[1])
if amount then
  redis.call('HINCRBY', KEYS[1], 'reserved', 0 - tonumber(amount))  -- never -0: Redis refuses it as an integer
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
redis.call('HINCRBY', KEYS[1], 'spent', ARGV[2])
"""
    + _KEEP.replace("KEEP", "3")
    + """
return 1
"""
)

# KEYS: as above; ARGV: spent, keep_ms
_SEED = (
    """
if redis.call('HSETNX', KEYS[1], 'seeded', 1) == 1 then
  redis.call('HINCRBY', KEYS[1], 'spent', ARGV[1])
end
"""
    + _KEEP.replace("KEEP", "2")
    + """
return 1
"""
)

# KEYS: as above; ARGV: now_ms
_COUNTS = (
    _PURGE
    + """
return {tonumber(redis.call('HGET', KEYS[1], 'spent') or '0'), tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')}
"""
)


class RedisBudgetStore(BudgetStore):
    """Budget counts in Redis. Pass a ``url`` (client created on first use, closed by
    :meth:`aclose`) or a ``client`` you own. ``clock`` is epoch seconds."""

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        prefix: str = "legato:budget:",
        lease_s: float = 600.0,
        clock: Callable[[], float] = time.time,
        timeout_s: float = 1.0,
        on_unavailable: FailureMode = "fail_closed",
    ) -> None:
        if (url is None) == (client is None):
            raise ValueError("RedisBudgetStore needs exactly one of url= or client=")
        if on_unavailable not in ("fail_closed", "fail_open"):
            raise ValueError(f"on_unavailable must be 'fail_closed' or 'fail_open', got {on_unavailable!r}")
        self.url = url
        self.prefix = prefix
        self.lease_s = lease_s
        self.clock = clock
        self.timeout_s = timeout_s
        self.on_unavailable = on_unavailable
        self._client = client
        self._owns_client = client is None
        self._scripts: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"RedisBudgetStore({self.url or self._client!r}, prefix={self.prefix!r})"

    @property
    def client(self) -> Redis:
        if self._client is None:
            from redis.asyncio import Redis

            assert self.url is not None
            self._client = Redis.from_url(
                self.url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s
            )
        return self._client

    def _keys(self, key: str) -> list[str]:
        tag = f"{self.prefix}{{{key}}}"
        return [f"{tag}:counts", f"{tag}:lapses", f"{tag}:leases"]

    async def _run(self, name: str, source: str, keys: list[str], args: list[Any]) -> Any:
        from redis.exceptions import RedisError

        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.client.register_script(source)
        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise LimitsUnavailable(f"the budget store (Redis) is unavailable: {type(exc).__name__}") from exc

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
        args = [_ms(now), amount, limit, _ms(now + lease_s), rid, _ms(keep_s or 0), padded]
        args += [int(rule.last_alone), int(rule.seeding)]
        status, spent, reserved = await self._run("reserve", _RESERVE, self._keys(key), args)
        return int(status), int(spent), int(reserved)

    async def seed(self, key: str, spent: int, *, keep_s: float | None) -> None:
        await self._run("seed", _SEED, self._keys(key), [spent, _ms(keep_s or 0)])

    async def settle(self, key: str, rid: str, actual: int, *, keep_s: float | None) -> None:
        await self._run("settle", _SETTLE, self._keys(key), [rid or "-", actual, _ms(keep_s or 0)])

    async def counts(self, key: str, *, now: float) -> tuple[int, int]:
        spent, reserved = await self._run("counts", _COUNTS, self._keys(key), [_ms(now)])
        return int(spent), int(reserved)

    async def aclose(self) -> None:
        client = self._client
        if client is not None and self._owns_client:
            self._client = None
            self._scripts.clear()
            await client.aclose()


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
