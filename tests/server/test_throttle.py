"""The failure throttle counted in this process, on a virtual clock: the limit, the
window, the wait it reports, and IPv6 addresses counted per /64 network."""

from __future__ import annotations

from legato.server._throttle import FailureThrottle, client_key


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
