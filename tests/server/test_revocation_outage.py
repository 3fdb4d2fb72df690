"""The key-revocation listener logs a Redis outage as the other Redis users do: one
warning when it starts, reminders at most once a minute, one line when Redis answers
again, and it clears the key cache once it is subscribed (it may have missed messages)."""

from __future__ import annotations

import logging

import anyio
import pytest

from legato.server._revocation import Revocations, channel_for

from .conftest import closed_port


class Cache:
    def __init__(self) -> None:
        self.cleared = anyio.Event()

    def invalidate(self) -> None:
        self.cleared.set()


async def test_an_outage_of_the_revocation_channel_is_logged_once_and_its_end_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from redis.asyncio import Redis

    caplog.set_level(logging.INFO, logger="legato.server")
    cache = Cache()
    publisher = Redis.from_url("redis://127.0.0.1:6379/0")
    listener = Revocations(
        f"redis://127.0.0.1:{closed_port()}/0", channel_for("outage-test:"), cache, publisher=publisher, retry_s=0.01
    )
    try:
        with anyio.move_on_after(0.3):  # a refused connection, then a retry every 10 ms
            await listener.listen()
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, warnings
        assert "key revocations from other replicas are not received" in warnings[0]
        assert not cache.cleared.is_set()

        listener.url = "redis://127.0.0.1:6379/0"  # Redis answers again
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.listen)
            with anyio.fail_after(10):
                await cache.cleared.wait()
            tg.cancel_scope.cancel()
        infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
        assert len(infos) == 1, infos
        assert infos[0].startswith("Redis (key revocations from other replicas) answers again")
        assert "failures were not logged" in infos[0]  # the retries were counted, not logged
    finally:
        await publisher.aclose()
