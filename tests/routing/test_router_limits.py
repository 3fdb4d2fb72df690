from __future__ import annotations

import anyio
import pytest
from scripted_model import Scripted, drain, req

from legato.errors import NoDeploymentAvailable, ServerError, StreamInterrupted
from legato.providers import ChatChunk, EmbedRequest
from legato.resilience import Bulkhead, BulkheadPolicy, RateLimiter, RateLimitPolicy, Timeout, VirtualClock
from legato.routing import Deployment, HealthChecker, OutlierPolicy, Router, Rule, Selector


async def test_a_deployment_at_its_rpm_limit_sends_traffic_elsewhere_without_a_health_penalty(
    clock: VirtualClock,
) -> None:
    a, b = Scripted("a", clock=clock), Scripted("b", clock=clock)
    r = Router("g", [Deployment(a, rpm=2), Deployment(b)], clock=clock)
    tiers = [(await r.chat(req())).tier for _ in range(8)]
    assert a.calls == 2
    assert tiers.count("g/b") == 6
    assert r.health()[0].state == "healthy"
    assert r.health()[0].failures == 0


async def test_router_embeds_across_deployments(clock: VirtualClock) -> None:
    a = Scripted("a", [ServerError("x")], clock=clock)
    b = Scripted("b", clock=clock)
    response = await Router("g", [a, b], clock=clock).embed(EmbedRequest(inputs=["x", "y"]))
    assert len(response.vectors) == 2
    assert b.calls == 1


async def test_every_deployment_ejected_raises_no_deployment_available(clock: VirtualClock) -> None:
    a = Scripted("a", [ServerError("x")], clock=clock)
    r = Router("g", [a], clock=clock, breaker=None, outlier=OutlierPolicy(consecutive_failures=1))
    with pytest.raises(ServerError):
        await r.chat(req())
    with pytest.raises(NoDeploymentAvailable):
        await drain(r.stream(req()))
    assert a.calls == 1


async def test_health_checker_runs_periodically_in_virtual_time(clock: VirtualClock) -> None:
    state = {"down": True}
    a = Scripted("a", lambda n: ServerError("down") if state["down"] else "ok", clock=clock)
    r = Router("g", [a], clock=clock)
    checker = HealthChecker([r], interval=10, timeout=1, clock=clock)
    seen: list[str] = []
    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(checker.run)
        await clock.sleep(5)
        seen.append(r.health()[0].state)
        state["down"] = False
        await clock.sleep(10)
        seen.append(r.health()[0].state)
        tg.cancel_scope.cancel()
    assert seen == ["ejected", "healthy"]
    assert a.calls == 2


async def test_rate_limiter_and_bulkhead_pass_streams_through(clock: VirtualClock) -> None:
    model = Scripted("m", ["one two"], clock=clock)
    bulkhead = Bulkhead(model, BulkheadPolicy(max_concurrent=1), clock=clock)
    limited = RateLimiter(bulkhead, RateLimitPolicy(tpm=10_000), clock=clock)
    assert await drain(limited.stream(req())) == ["one ", "two ", ""]
    assert bulkhead.in_flight == 0
    headroom = limited.headroom()
    assert headroom is not None
    assert headroom > 0.99  # reconciled with the 15 tokens actually used


async def test_stream_total_timeout(clock: VirtualClock) -> None:
    class Slow(Scripted):
        async def stream(self, request):  # type: ignore[no-untyped-def,override]
            for word in ("a", "b", "c", "d"):
                await self.clock.sleep(2)
                yield ChatChunk(text=word)

    got: list[str] = []
    with pytest.raises(StreamInterrupted, match="took longer"):
        await drain(Timeout(Slow("s", clock=clock), 3, total=5, clock=clock).stream(req()), got)
    assert got == ["a", "b"]  # 2 s each; the third would end at 6 s, past the 5 s total


async def test_selector_streams_from_the_chosen_model(clock: VirtualClock) -> None:
    small = Scripted("small", ["from small"], clock=clock)
    big = Scripted("big", ["from big"], clock=clock)
    s = Selector("s", [Rule(small, max_input_tokens=50)], big)
    assert "".join(await drain(s.stream(req("short")))) == "from small "
    assert "".join(await drain(s.stream(req("x" * 1000)))) == "from big "
