"""Key-cache invalidation across replicas through Redis pub/sub.

Each replica caches looked-up keys for ``key_cache_ttl_s``. When a key is revoked
on one replica, that replica publishes on one channel and every replica
subscribed to it clears its key cache at once, so their next request with that
key looks it up again and is refused: a revocation reaches the other replicas in
the time of one Redis round trip instead of the cache TTL.

Redis pub/sub delivers at most once, so the TTL stays the fallback: a replica that
cannot reach Redis keeps serving from its cache and forgets entries after the TTL,
as without Redis. A replica that (re)subscribes clears its cache, since it may have
missed messages while disconnected. A silent connection is noticed by pinging when
nothing arrived for ``ping_s``; one that does not answer is dropped and re-opened.

The listener uses its own connection (a subscribed connection can do nothing
else) without the command timeout, since it waits for messages indefinitely.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Protocol

import anyio

from legato.server._outage import OutageLog

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

__all__ = ["Revocations", "announce", "channel_for"]

log = logging.getLogger("legato.server")


def channel_for(redis_prefix: str) -> str:
    """The channel every replica with this ``redis_prefix`` listens on."""
    return f"{redis_prefix}keys:invalidate"


async def announce(url: str, redis_prefix: str, key_id: str, *, timeout_s: float = 1.0) -> bool:
    """Tell the replicas on ``url`` that ``key_id`` changed (for changes made outside a
    replica, e.g. ``legato keys revoke``); False when Redis could not be reached."""
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        await client.publish(channel_for(redis_prefix), key_id)
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()
    return True


class _Cache(Protocol):
    def invalidate(self) -> None: ...


class Revocations:
    """Publishes key changes and clears ``cache`` when any replica publishes one."""

    def __init__(
        self,
        url: str,
        channel: str,
        cache: _Cache,
        *,
        publisher: Redis,
        retry_s: float = 1.0,
        ping_s: float = 5.0,
        connect_timeout_s: float = 1.0,
    ) -> None:
        self.url = url
        self.channel = channel
        self.cache = cache
        self.publisher = publisher
        self.retry_s = retry_s
        self.ping_s = ping_s
        self.connect_timeout_s = connect_timeout_s
        self._outage = OutageLog(log, "Redis (key revocations from other replicas)")

    async def publish(self, key_id: str) -> None:
        """Tell every replica that ``key_id`` changed (logged, never raised, when Redis is down)."""
        from redis.exceptions import RedisError

        try:
            await self.publisher.publish(self.channel, key_id)
        except (RedisError, OSError) as exc:
            log.warning(
                "could not announce the change of API key %s to other replicas (%s); "
                "they drop it from their cache when its TTL ends",
                key_id,
                type(exc).__name__,
            )

    async def listen(self) -> None:
        """Clear the cache on every message until cancelled; reconnect after failures."""
        from redis.asyncio import Redis
        from redis.exceptions import RedisError

        client = Redis.from_url(self.url, socket_connect_timeout=self.connect_timeout_s)
        try:
            while True:
                try:
                    await self._subscribed(client)
                except (RedisError, OSError) as exc:
                    self._outage.failed(
                        "key revocations from other replicas are not received (%s); "
                        "falling back to the key cache TTL until Redis answers",
                        type(exc).__name__,
                    )
                    await anyio.sleep(self.retry_s)
        finally:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    async def _subscribed(self, client: Redis) -> None:
        async with client.pubsub() as pubsub:
            await pubsub.subscribe(self.channel)
            self.cache.invalidate()  # whatever was published while we were not listening
            self._outage.recovered()
            await self._receive(pubsub)

    async def _receive(self, pubsub: PubSub) -> None:
        from redis.exceptions import ConnectionError as RedisConnectionError

        heard = time.monotonic()
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=self.ping_s)
            if message is not None:
                heard, pinged = time.monotonic(), False
                if message.get("type") == "message":
                    self.cache.invalidate()
                continue
            if pinged and time.monotonic() - heard > 2 * self.ping_s:
                raise RedisConnectionError("no answer to a ping on the subscription")
            await pubsub.ping()
            pinged = True
