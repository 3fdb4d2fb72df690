"""The failure throttle counted in this process, on a virtual clock: the limit, the
window, the wait it reports, IPv6 addresses counted per /64 network, and how a Redis
outage is logged."""

from __future__ import annotations

import logging

import pytest

from legato.server._throttle import FailureThrottle, client_key

from .conftest import closed_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_past_the_limit_the_client_waits_until_the_window_ends() -> None:
    clock = Clock()
    throttle = FailureThrottle("test", limit=3, window_s=60, clock=clock)
    assert [await throttle.failed("10.0.0.1") for _ in range(3)] == [None, None, None]
    assert throttle.blocked("10.0.0.1") == 60
    assert await throttle.retry_after("10.0.0.1") == 60
    assert await throttle.failed("10.0.0.1") == 60  # past the limit: refused
    assert throttle.blocked("10.0.0.2") is None  # another client is not affected
    clock.now += 45
    assert throttle.blocked("10.0.0.1") == 15
    clock.now += 15
    assert throttle.blocked("10.0.0.1") is None  # the window that counted them ended
    assert await throttle.failed("10.0.0.1") is None


async def test_ipv6_addresses_are_counted_per_64_network() -> None:
    throttle = FailureThrottle("test", limit=2, window_s=60, clock=Clock())
    assert client_key("2001:db8:1:2::5") == client_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert client_key("127.0.0.1") == "127.0.0.1"
    await throttle.failed("2001:db8:1:2::5")
    await throttle.failed("2001:db8:1:2:ffff::1")
    assert throttle.blocked("2001:db8:1:2::77") == 60  # the same host, another address of its block
    assert throttle.blocked("2001:db8:1:3::5") is None  # the next /64 is someone else


async def test_a_redis_outage_is_logged_once_a_minute_not_once_a_request(caplog: pytest.LogCaptureFixture) -> None:
    """Counting falls back to this process while Redis is down; the log says so when the
    outage starts, then at most once a minute with what it left out, and when it ends."""
    from redis.asyncio import Redis

    clock = Clock()
    down = Redis.from_url(f"redis://127.0.0.1:{closed_port()}/0", socket_connect_timeout=1)
    up = Redis.from_url("redis://127.0.0.1:6379/0")
    current = [down]
    throttle = FailureThrottle("outage-test", limit=1000, window_s=60, redis=lambda: current[0], clock=clock)
    caplog.set_level(logging.INFO, logger="legato.server")
    try:
        for _ in range(50):
            await throttle.failed("10.0.0.9")
        assert throttle.blocked("10.0.0.9") is None  # counted here: 50 of 1,000
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "counts on this replica only" in warnings[0]
        clock.now += 61
        await throttle.failed("10.0.0.9")
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2
        assert "49 more such failures" in warnings[1]
        current[0] = up
        await throttle.failed("10.0.0.9")
        await throttle.failed("10.0.0.9")
        infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
        assert infos == ["Redis (outage-test throttling) answers again"]
    finally:
        await up.delete("legato:outage-test:10.0.0.9")
        await down.aclose()
        await up.aclose()
