from __future__ import annotations

import pytest
from scripted_model import Cut, Scripted, drain, req

from legato.errors import (
    AuthenticationFailed,
    BadRequest,
    ContentFiltered,
    ContextWindowExceeded,
    NoDeploymentAvailable,
    PermissionDenied,
    QuotaExhausted,
    RateLimited,
    ServerError,
    StreamInterrupted,
)
from legato.providers import ChatRequest, ImagePart, Message, TextPart, Tool
from legato.resilience import BreakerPolicy, EventHub, FallbackTaken, VirtualClock
from legato.routing import Deployment, Fallbacks, OutlierPolicy, Router


def router(name: str, *models: Scripted, clock: VirtualClock, **kwargs: object) -> Router:
    return Router(name, list(models), clock=clock, **kwargs)  # type: ignore[arg-type]


async def test_fails_over_to_the_next_deployment(clock: VirtualClock) -> None:
    a = Scripted("a", [ServerError("down")], clock=clock)
    b = Scripted("b", ["from b"], clock=clock)
    r = router("g", a, b, clock=clock)
    response = await r.chat(req())
    assert response.text == "from b"
    assert response.tier == "g/b"
    assert a.calls == 1


@pytest.mark.parametrize(
    "error",
    [
        BadRequest("bad"),
        AuthenticationFailed("key"),
        PermissionDenied("no"),
        QuotaExhausted("quota", code="insufficient_quota"),
    ],
)
async def test_client_errors_make_exactly_one_attempt_and_no_fallback(clock: VirtualClock, error: Exception) -> None:
    a = Scripted("a", [error], clock=clock)
    b = Scripted("b", ["ok"], clock=clock)
    backup = Scripted("backup", ["ok"], clock=clock)
    r = Router("g", [a, b], clock=clock, fallbacks=Fallbacks(on_failure=[backup], degrade="busy"))
    with pytest.raises(type(error)):
        await r.chat(req())
    assert a.calls + b.calls == 1
    assert backup.calls == 0


async def test_authentication_failure_takes_the_deployment_out(clock: VirtualClock) -> None:
    a = Scripted("a", [AuthenticationFailed("revoked")], clock=clock)
    b = Scripted("b", ["ok"], clock=clock)
    r = router("g", a, b, clock=clock)
    with pytest.raises(AuthenticationFailed):
        await r.chat(req())
    for _ in range(5):
        assert (await r.chat(req())).tier == "g/b"
    assert a.calls == 1
    assert [h.state for h in r.health()] == ["unhealthy", "healthy"]


async def test_outlier_ejection_with_growing_cooldown(clock: VirtualClock) -> None:
    a = Scripted("a", [ServerError("down")], clock=clock)
    b = Scripted("b", ["ok"], clock=clock)
    r = router("g", a, b, clock=clock, breaker=None, outlier=OutlierPolicy(consecutive_failures=3, base_ejection=10))
    for _ in range(6):
        await r.chat(req())
    assert a.calls == 3  # ejected after three failures in a row
    assert r.health()[0].state == "ejected"
    clock.advance(10)
    for _ in range(6):
        await r.chat(req())
    assert a.calls == 6  # back after 10 s, failed 3 more times: ejected again, now for 20 s
    clock.advance(10)
    await r.chat(req())
    await r.chat(req())
    assert a.calls == 6
    assert r.health()[0].ejected_for == pytest.approx(10)


async def test_breaker_lets_only_half_open_probes_through(clock: VirtualClock) -> None:
    up = {"a": False}
    a = Scripted("a", lambda n: "a ok" if up["a"] else ServerError("down"), clock=clock)
    b = Scripted("b", ["ok"], clock=clock)
    policy = BreakerPolicy(
        sliding_window_size=4,
        minimum_number_of_calls=4,
        wait_duration_in_open_state=30,
        permitted_number_of_calls_in_half_open_state=1,
    )
    r = router("g", a, b, clock=clock, breaker=policy, outlier=None, strategy=None)
    for _ in range(8):
        assert (await r.chat(req())).tier == "g/b"
    assert a.calls == 4
    assert r.health()[0].state == "open"
    for _ in range(20):
        await r.chat(req())
    assert a.calls == 4
    clock.advance(30)
    for _ in range(4):
        await r.chat(req())
    assert a.calls == 5  # one probe, which failed: open again
    up["a"] = True
    clock.advance(30)
    for _ in range(4):
        await r.chat(req())
    assert r.health()[0].state == "healthy"
    assert a.calls == 5 + 2  # the probe closed the circuit, round-robin resumed


async def test_no_deployment_available_carries_retry_after(clock: VirtualClock) -> None:
    a = Scripted("a", [ServerError("down")], clock=clock)
    r = router("g", a, clock=clock, breaker=None, outlier=OutlierPolicy(consecutive_failures=1, base_ejection=7))
    with pytest.raises(ServerError):
        await r.chat(req())
    with pytest.raises(NoDeploymentAvailable) as info:
        await r.chat(req())
    assert info.value.retry_after == pytest.approx(7)


async def test_rate_limited_keeps_retry_after_when_every_deployment_failed(clock: VirtualClock) -> None:
    a = Scripted("a", [RateLimited("slow", retry_after=2.0)], clock=clock)
    with pytest.raises(RateLimited) as info:
        await router("g", a, clock=clock).chat(req())
    assert info.value.retry_after == 2.0


async def test_fallback_group_then_degraded_answer(clock: VirtualClock) -> None:
    hub = EventHub()
    moves: list[FallbackTaken] = []
    hub.subscribe(lambda e: moves.append(e) if isinstance(e, FallbackTaken) else None)
    a = Scripted("a", [ServerError("down")], clock=clock)
    backup = router("backup", Scripted("c", [ServerError("down too")], clock=clock), clock=clock)
    r = Router("main", [a], clock=clock, events=hub, fallbacks=Fallbacks(on_failure=[backup], degrade="try later"))
    response = await r.chat(req())
    assert response.degraded is True
    assert response.text == "try later"
    assert response.tier == "main/degraded:static"
    assert [m.kind for m in moves] == ["deployment", "group", "degraded"]


async def test_degraded_tier_can_be_a_local_model(clock: VirtualClock) -> None:
    local = Scripted("local-llama", ["local answer"], clock=clock)
    r = router("g", Scripted("a", [ServerError("x")], clock=clock), clock=clock, fallbacks=Fallbacks(degrade=local))
    response = await r.chat(req())
    assert (response.text, response.degraded, response.tier) == ("local answer", True, "g/degraded:local-llama")


async def test_answer_from_fallback_group_names_its_tier(clock: VirtualClock) -> None:
    backup = router("backup", Scripted("c", ["c ok"], clock=clock), clock=clock)
    failing = Scripted("a", [ServerError("x")], clock=clock)
    r = router("g", failing, clock=clock, fallbacks=Fallbacks(on_failure=[backup]))
    response = await r.chat(req())
    assert response.tier == "backup/c"
    assert response.degraded is False


async def test_context_window_goes_to_the_larger_group(clock: VirtualClock) -> None:
    long = router("long", Scripted("big", ["long ok"], clock=clock), clock=clock)
    small = Scripted("small", [ContextWindowExceeded("too long")], clock=clock)
    r = router("g", small, clock=clock, fallbacks=Fallbacks(context_window=[long], on_failure=[]))
    assert (await r.chat(req())).tier == "long/big"


async def test_declared_context_window_skips_the_small_deployment_before_sending(clock: VirtualClock) -> None:
    small = Scripted("small", ["small"], clock=clock)
    big = Scripted("big", ["big"], clock=clock)
    r = Router("g", [Deployment(small, context_window=100), Deployment(big, context_window=100_000)], clock=clock)
    assert (await r.chat(req("x" * 2000))).tier == "g/big"
    assert small.calls == 0
    with pytest.raises(ContextWindowExceeded):
        await r.chat(req("x" * 1_000_000))


async def test_content_filtered_only_goes_where_configured(clock: VirtualClock) -> None:
    lenient = Scripted("lenient", ["ok"], clock=clock)
    strict = Scripted("strict", [ContentFiltered("no")], clock=clock)
    with pytest.raises(ContentFiltered):
        await router("g", strict, clock=clock, fallbacks=Fallbacks(on_failure=[lenient])).chat(req())
    assert lenient.calls == 0
    r = router("g2", strict, clock=clock, fallbacks=Fallbacks(content_filtered=[lenient]))
    assert (await r.chat(req())).text == "ok"


async def test_fallback_cycles_are_cut_by_the_visited_set(clock: VirtualClock) -> None:
    a = Scripted("a", [ServerError("x")], clock=clock)
    b = Scripted("b", [ServerError("y")], clock=clock)
    first = router("first", a, clock=clock)
    second = router("second", b, clock=clock, fallbacks=Fallbacks(on_failure=[first]))
    first.fallbacks = Fallbacks(on_failure=[second])
    with pytest.raises(ServerError):
        await first.chat(req())
    assert (a.calls, b.calls) == (1, 1)


async def test_capabilities_filter_deployments(clock: VirtualClock) -> None:
    text_only = Scripted("text", ["t"], clock=clock)
    vision = Scripted("vision", ["v"], clock=clock)
    r = Router(
        "g",
        [Deployment(text_only, capabilities=set()), Deployment(vision, capabilities={"vision", "tools"})],
        clock=clock,
    )
    image = ChatRequest(
        messages=[Message(role="user", content=[TextPart(text="what?"), ImagePart(url="https://x.test/a.png")])]
    )
    for _ in range(3):
        assert (await r.chat(image)).tier == "g/vision"
    tools = ChatRequest(messages=[Message(role="user", content="x")], tools=[Tool(name="f")])
    assert (await r.chat(tools)).tier == "g/vision"
    only_text = Router("t", [Deployment(text_only, capabilities=set())], clock=clock)
    with pytest.raises(BadRequest, match="vision"):
        await only_text.chat(image)


async def test_stream_falls_back_before_the_first_chunk(clock: VirtualClock) -> None:
    a = Scripted("a", [ServerError("early")], clock=clock)
    b = Scripted("b", ["hello from b"], clock=clock)
    texts = await drain(router("g", a, b, clock=clock).stream(req()))
    assert "".join(texts) == "hello from b "


async def test_stream_cut_after_the_first_chunk_is_interrupted_never_spliced(clock: VirtualClock) -> None:
    a = Scripted("a", [Cut(2, ServerError("cut"))], clock=clock)
    b = Scripted("b", ["should never appear"], clock=clock)
    got: list[str] = []
    r = router("g", a, b, clock=clock, fallbacks=Fallbacks(degrade="busy"))
    with pytest.raises(StreamInterrupted) as info:
        await drain(r.stream(req()), got)
    assert info.value.retryable is False
    assert got == ["a-0 ", "a-1 "]
    assert b.calls == 0


async def test_stream_degrades_to_the_declared_answer(clock: VirtualClock) -> None:
    a = Scripted("a", [ServerError("x")], clock=clock)
    texts = await drain(router("g", a, clock=clock, fallbacks=Fallbacks(degrade="later")).stream(req()))
    assert texts == ["later", ""]


async def test_abandoned_stream_releases_the_deployment(clock: VirtualClock) -> None:
    a = Scripted("a", ["one two three"], clock=clock)
    r = router("g", a, clock=clock)
    stream = r.stream(req())
    await stream.__anext__()  # type: ignore[attr-defined]
    await stream.aclose()  # type: ignore[attr-defined]
    assert r.health()[0].in_flight == 0


async def test_duplicate_deployment_names_are_rejected(clock: VirtualClock) -> None:
    with pytest.raises(ValueError, match="named 'a'"):
        router("g", Scripted("a", clock=clock), Scripted("a", clock=clock), clock=clock)
