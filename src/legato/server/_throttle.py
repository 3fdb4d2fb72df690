"""Throttling of failed authentications, per client address: API keys on ``/v1`` and
``/mcp`` (:mod:`legato.server._protect`) and dashboard sign-ins (:mod:`legato.server.ui`).

After ``limit`` failures from one address within ``window_s`` seconds, the address is
answered 429 with ``Retry-After`` until the window that counted them ends, whatever it
presents (right or wrong): otherwise a right guess would still stand out. With Redis
the count is shared by every replica (one ``SET NX PX`` + ``INCR`` transaction, so the
window always has an expiry); without it, or while Redis cannot be reached (logged),
each replica counts alone, in a bounded table: throttling keeps working through a
Redis outage. A replica remembers the addresses it has seen go over the limit, so
:meth:`FailureThrottle.blocked` is answered without asking Redis.

The client is the connection's peer address as uvicorn reports it (behind a proxy,
uvicorn's ``--forwarded-allow-ips`` decides whether ``X-Forwarded-For`` is used). IPv6
addresses are counted per /64 network, the block one host is usually given: otherwise
a single host could spread its guesses over 2**64 addresses.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from legato.server._outage import OutageLog

__all__ = ["FailureThrottle", "client_key"]

log = logging.getLogger("legato.server")


@lru_cache(maxsize=4096)
def client_key(address: str) -> str:
    """What failures are counted under: the address, or its /64 network for IPv6."""
    if ":" not in address:
        return address
    try:
        return str(ipaddress.IPv6Network((address.split("%", 1)[0], 64), strict=False))
    except ValueError:
        return address


class FailureThrottle:
    """Failures counted under ``name`` (the Redis key namespace). ``redis``: a
    zero-argument callable returning the Redis client to count in (or None: count in
    this process); called on each use, so it may be opened later."""

    def __init__(
        self,
        name: str,
        *,
        limit: int = 5,
        window_s: float = 300.0,
        redis: Callable[[], Any] | None = None,
        prefix: str = "legato:",
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("throttling needs limit >= 1 and window_s > 0")
        self.name = name
        self.limit = limit
        self.window_s = window_s
        self._redis = redis or (lambda: None)
        self._prefix = f"{prefix}{name}:"
        self._max = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()  # client -> (window end, count)
        self._outage = OutageLog(log, f"Redis ({name} throttling)", clock=clock)

    def blocked(self, client: str) -> int | None:
        """Seconds ``client`` must wait, from what this replica knows (no I/O); None: not known to be blocked."""
        entry = self._live(client_key(client))
        if entry is None or entry[1] < self.limit:
            return None
        return max(1, math.ceil(entry[0] - self._clock()))

    async def retry_after(self, client: str) -> int | None:
        """Seconds ``client`` must wait before trying again, from the shared count; None: it may try now."""
        client = client_key(client)
        redis = self._redis()
        if redis is not None:
            pipe = redis.pipeline(transaction=True)
            pipe.get(self._prefix + client)
            pipe.pttl(self._prefix + client)
            answer = await self._shared(pipe)
            if answer is not None:
                count, ttl_ms = answer
                if count is None or int(count) < self.limit or ttl_ms <= 0:
                    return None
                self._remember(client, self._clock() + ttl_ms / 1000, int(count))
                return max(1, math.ceil(int(ttl_ms) / 1000))
        return self.blocked(client)  # client_key is idempotent

    async def failed(self, client: str) -> int | None:
        """Count one failure of ``client``; seconds it must now wait when it is past the
        limit (this failure was not the last one allowed), else None."""
        client = client_key(client)
        redis = self._redis()
        if redis is not None:
            pipe = redis.pipeline(transaction=True)
            pipe.set(self._prefix + client, 0, px=int(self.window_s * 1000), nx=True)
            pipe.incr(self._prefix + client)
            pipe.pttl(self._prefix + client)
            answer = await self._shared(pipe)
            if answer is not None:
                _, count, ttl_ms = answer
                self._remember(client, self._clock() + max(0, ttl_ms) / 1000, int(count))
                return max(1, math.ceil(ttl_ms / 1000)) if int(count) > self.limit else None
        entry = self._live(client)
        end, count = entry if entry is not None else (self._clock() + self.window_s, 0)
        self._remember(client, end, count + 1)
        return max(1, math.ceil(end - self._clock())) if count + 1 > self.limit else None

    def _remember(self, client: str, end: float, count: int) -> None:
        self._failures[client] = (end, count)
        self._failures.move_to_end(client)
        while len(self._failures) > self._max:
            self._failures.popitem(last=False)

    async def _shared(self, pipe: Any) -> list[Any] | None:
        """The pipeline's answers; None when Redis cannot be reached (count locally)."""
        from redis.exceptions import RedisError

        try:
            answer = list(await pipe.execute())
        except (RedisError, OSError) as exc:
            failure = type(exc).__name__
            self._outage.failed("%s throttling counts on this replica only: Redis failed (%s)", self.name, failure)
            return None
        self._outage.recovered()
        return answer

    def _live(self, client: str) -> tuple[float, int] | None:
        entry = self._failures.get(client)
        if entry is not None and entry[0] <= self._clock():
            del self._failures[client]
            return None
        return entry
