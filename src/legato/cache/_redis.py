"""A cache backend in Redis, shared by every process and gateway replica.

Uses ``redis.asyncio`` (the ``redis`` extra). Keys are ``prefix + key`` so several
applications (and tests) share one server; expiry is Redis' own (``PX``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisBackend"]


class RedisBackend:
    """Cache entries in Redis. Pass a ``url`` (a client is created on first use and
    closed by :meth:`aclose`) or a ``client`` you own."""

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        prefix: str = "legato:cache:",
    ) -> None:
        if (url is None) == (client is None):
            raise ValueError("RedisBackend needs exactly one of url= or client=")
        self.url = url
        self.prefix = prefix
        self._client = client
        self._owns_client = client is None

    def __repr__(self) -> str:
        return f"RedisBackend({self.url or self._client!r}, prefix={self.prefix!r})"

    @property
    def client(self) -> Redis:
        if self._client is None:
            from redis.asyncio import Redis

            assert self.url is not None
            self._client = Redis.from_url(self.url)
        return self._client

    async def get(self, key: str) -> bytes | None:
        value = await self.client.get(self.prefix + key)
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else bytes(value)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        px = None if ttl is None else max(1, int(ttl * 1000))
        await self.client.set(self.prefix + key, value, px=px)

    async def delete(self, key: str) -> None:
        await self.client.delete(self.prefix + key)

    async def tag(self, subject: str, key: str, ttl: float | None) -> None:
        """The subject's keys are a Redis set that lives as long as its newest entry."""
        name = f"{self.prefix}subject:{subject}"
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.sadd(name, key)
            if ttl is None:
                pipe.persist(name)
            else:
                pipe.pexpire(name, max(1, int(ttl * 1000)), gt=True)
            await pipe.execute()

    async def erase(self, subject: str) -> int:
        name = f"{self.prefix}subject:{subject}"
        keys = [k.decode() if isinstance(k, bytes) else str(k) for k in await self.client.smembers(name)]
        if not keys:
            return 0
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(*(self.prefix + k for k in keys))
            pipe.delete(name)
            deleted, _ = await pipe.execute()
        return int(deleted)

    async def aclose(self) -> None:
        client = self._client
        if client is not None and self._owns_client:
            self._client = None
            await client.aclose()
