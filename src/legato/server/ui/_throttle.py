"""Throttling of failed dashboard sign-ins, per client address.

After ``limit`` failed sign-ins from one address within ``window_s`` seconds, every
sign-in from it (right or wrong) is answered 429 with ``Retry-After`` until the
window that counted them ends. With Redis the count is shared by every replica
(one ``SET NX EX`` + ``INCR`` transaction, so the window always has an expiry);
without it, or while Redis cannot be reached (logged), each replica counts alone, in
a bounded table: throttling keeps working through a Redis outage.

The client is the connection's peer address as uvicorn reports it (behind a proxy,
uvicorn's ``--forwarded-allow-ips`` decides whether ``X-Forwarded-For`` is used).
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["LoginThrottle"]

log = logging.getLogger("legato.server")


class LoginThrottle:
    """``redis``: a zero-argument callable returning the Redis client to count in (or
    None: count in this process); called on each use, so it may be opened later."""

    def __init__(
        self,
        *,
        limit: int = 5,
        window_s: float = 300.0,
        redis: Callable[[], Any] | None = None,
        prefix: str = "legato:",
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("login throttling needs limit >= 1 and window_s > 0")
        self.limit = limit
        self.window_s = window_s
        self._redis = redis or (lambda: None)
        self._prefix = prefix + "dashboard-login:"
        self._max = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()  # client -> (window end, count)

    async def retry_after(self, client: str) -> int | None:
        """Seconds ``client`` must wait before signing in again; None when it may try now."""
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
                return max(1, math.ceil(int(ttl_ms) / 1000))
        entry = self._live(client)
        if entry is None or entry[1] < self.limit:
            return None
        return max(1, math.ceil(entry[0] - self._clock()))

    async def failed(self, client: str) -> None:
        """Count one failed sign-in of ``client``."""
        redis = self._redis()
        if redis is not None:
            pipe = redis.pipeline(transaction=True)
            pipe.set(self._prefix + client, 0, px=int(self.window_s * 1000), nx=True)
            pipe.incr(self._prefix + client)
            if await self._shared(pipe) is not None:
                return
        entry = self._live(client)
        end, count = entry if entry is not None else (self._clock() + self.window_s, 0)
        self._failures[client] = (end, count + 1)
        self._failures.move_to_end(client)
        while len(self._failures) > self._max:
            self._failures.popitem(last=False)

    @staticmethod
    async def _shared(pipe: Any) -> list[Any] | None:
        """The pipeline's answers; None when Redis cannot be reached (count locally)."""
        from redis.exceptions import RedisError

        try:
            return list(await pipe.execute())
        except (RedisError, OSError) as exc:
            log.warning("sign-in throttling counts on this replica only: Redis failed (%s)", type(exc).__name__)
            return None

    def _live(self, client: str) -> tuple[float, int] | None:
        entry = self._failures.get(client)
        if entry is not None and entry[0] <= self._clock():
            del self._failures[client]
            return None
        return entry
