"""Budget counts in Redis, shared by every gateway replica and worker.

Each budget key has three Redis keys (one hash tag, so they live on one cluster
slot): a hash with ``spent`` and ``reserved`` (integer nano-USD), a hash of the
open reservations' amounts, and a sorted set of their lapse times. Reserving and
settling are Lua scripts, so the check-and-reserve is atomic across replicas; a
reservation whose process died lapses after its lease and is purged by the next
reserve.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from legato.cost._budget import BudgetStore

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisBudgetStore"]

_PURGE = """
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, rid in ipairs(lapsed) do
  local amount = redis.call('HGET', KEYS[3], rid)
  if amount then
    redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(amount))
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

# KEYS: counts, lapse zset, amounts; ARGV: now_ms, amount, limit, lapses_at_ms, rid, keep_ms, padded
# Returns {status, spent, reserved}: 1 admitted, 0 exhausted, -1 busy (see legato.cost._budget).
_RESERVE = (
    _PURGE
    + """
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
local amount = tonumber(ARGV[2])
local padded = tonumber(ARGV[7])
local limit = tonumber(ARGV[3])
local hold
if spent + amount > limit then
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
  redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(amount))
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
    ) -> None:
        if (url is None) == (client is None):
            raise ValueError("RedisBudgetStore needs exactly one of url= or client=")
        self.url = url
        self.prefix = prefix
        self.lease_s = lease_s
        self.clock = clock
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
            self._client = Redis.from_url(self.url)
        return self._client

    def _keys(self, key: str) -> list[str]:
        tag = f"{self.prefix}{{{key}}}"
        return [f"{tag}:counts", f"{tag}:lapses", f"{tag}:leases"]

    async def _run(self, name: str, source: str, keys: list[str], args: list[Any]) -> Any:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.client.register_script(source)
        return await script(keys=keys, args=args)

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
    ) -> tuple[int, int, int]:
        status, spent, reserved = await self._run(
            "reserve",
            _RESERVE,
            self._keys(key),
            [_ms(now), amount, limit, _ms(now + lease_s), rid, _ms(keep_s or 0), padded],
        )
        return int(status), int(spent), int(reserved)

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
