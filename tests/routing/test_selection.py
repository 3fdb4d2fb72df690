from __future__ import annotations

import pytest
from scripted_model import Scripted, drain, req

from legato.errors import ContextWindowExceeded, ServerError
from legato.ledger import Ledger, use_ledger
from legato.providers import ChatRequest, ImagePart, Message, TextPart
from legato.resilience import CascadeAnswered, EventHub, VirtualClock
from legato.routing import Cascade, Rule, Selector, Tier, confidence_at_least, json_valid

# -- Selector ------------------------------------------------------------------


def selector(clock: VirtualClock) -> tuple[Selector, dict[str, Scripted]]:
    m = {n: Scripted(n, [n], clock=clock) for n in ("small", "long", "vision", "coder", "budget", "fast", "default")}
    rules = [
        Rule(m["vision"], needs={"vision"}),
        Rule(m["long"], min_input_tokens=10_000),
        Rule(m["coder"], tags={"code"}),
        Rule(m["budget"], max_budget_remaining=0.05),
        Rule(m["fast"], max_latency_sla=1.0),
        Rule(m["small"], max_input_tokens=100),
    ]
    return Selector("auto", rules, m["default"]), m


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (req("short question"), "small"),
        (req("x" * 50_000), "long"),
        (req("x" * 1000, metadata={"tags": ["code"]}), "coder"),
        (req("x" * 1000, metadata={"budget_remaining": 0.01}), "budget"),
        (req("x" * 1000, metadata={"budget_remaining": 5.0}), "default"),
        (req("x" * 1000, metadata={"latency_sla": 0.5}), "fast"),
        (req("x" * 1000), "default"),
        (
            ChatRequest(
                messages=[Message(role="user", content=[TextPart(text="?"), ImagePart(url="https://x/a.png")])]
            ),
            "vision",
        ),
    ],
)
async def test_rules_pick_the_model(clock: VirtualClock, request_: ChatRequest, expected: str) -> None:
    s, _ = selector(clock)
    assert (await s.chat(request_)).text == expected


async def test_rule_skips_a_target_that_cannot_serve(clock: VirtualClock) -> None:
    small = Scripted("small", ["small"], clock=clock)
    big = Scripted("big", ["big"], clock=clock)
    s = Selector("s", [Rule(small, tags={"chat"}, context_window=100)], big)
    assert (await s.chat(req("hi", metadata={"tags": "chat"}))).text == "small"
    assert (await s.chat(req("x" * 4000, metadata={"tags": "chat"}))).text == "big"


async def test_bad_metadata_is_a_clear_error(clock: VirtualClock) -> None:
    s, _ = selector(clock)
    with pytest.raises(ValueError, match="budget_remaining"):
        await s.chat(req("x" * 1000, metadata={"budget_remaining": "lots"}))


def test_unknown_capability_is_rejected() -> None:
    with pytest.raises(ValueError, match="telepathy"):
        Rule(Scripted("m"), needs={"telepathy"})


# -- Cascade -------------------------------------------------------------------


async def test_cheap_tier_answers_when_the_scorer_accepts(clock: VirtualClock) -> None:
    cheap = Scripted("cheap", ['{"answer": 42}'], clock=clock)
    strong = Scripted("strong", ['{"answer": 42}'], clock=clock)
    hub = EventHub()
    seen: list[CascadeAnswered] = []
    hub.subscribe(lambda e: seen.append(e) if isinstance(e, CascadeAnswered) else None)
    c = Cascade(
        "c",
        [
            Tier(cheap, input_cost_per_mtok=0.1, output_cost_per_mtok=0.1),
            Tier(strong, input_cost_per_mtok=10, output_cost_per_mtok=30),
        ],
        json_valid,
        clock=clock,
        events=hub,
    )
    ledger = Ledger("run")
    with use_ledger(ledger.child("step")):
        response = await c.chat(req())
    assert response.tier == "c/cheap"
    assert strong.calls == 0
    # Scripted reports 10 input + 5 output tokens: the strong tier would have cost
    # 10 * 10 / 1e6 + 5 * 30 / 1e6, the cheap one cost 10 * 0.1 / 1e6 + 5 * 0.1 / 1e6.
    assert seen[0].tier == "cheap"
    assert seen[0].saved == pytest.approx((10 * 10 + 5 * 30) / 1e6 - (10 * 0.1 + 5 * 0.1) / 1e6)
    assert c.stats["answered"] == {"cheap": 1, "strong": 0}
    assert c.stats["saved"] == pytest.approx(seen[0].saved)
    assert ledger.saved == pytest.approx(seen[0].saved)  # credited to the run through the step


async def test_escalates_when_the_scorer_rejects_or_the_tier_fails(clock: VirtualClock) -> None:
    cheap = Scripted("cheap", ["not json", ServerError("down")], clock=clock)
    strong = Scripted("strong", ["{}"], clock=clock)
    c = Cascade("c", [cheap, strong], json_valid, clock=clock)
    assert (await c.chat(req())).tier == "c/strong"
    assert (await c.chat(req())).tier == "c/strong"
    assert c.stats["answered"] == {"cheap": 0, "strong": 2}


async def test_confidence_scorer_and_async_custom_scorer(clock: VirtualClock) -> None:
    low = Scripted("low", ['{"label": "x", "confidence": 0.4}'], clock=clock)
    high = Scripted("high", ['{"label": "y", "confidence": 0.9}'], clock=clock)
    assert (await Cascade("c", [low, high], confidence_at_least(0.7), clock=clock).chat(req())).tier == "c/high"

    async def long_enough(request: ChatRequest, response: object) -> bool:
        return len(getattr(response, "text", "")) > 5

    short = Scripted("short", ["ok"], clock=clock)
    assert (await Cascade("d", [short, high], long_enough, clock=clock).chat(req())).tier == "d/high"


async def test_last_tier_errors_propagate(clock: VirtualClock) -> None:
    c = Cascade("c", [Scripted("a", ["nope"], clock=clock), Scripted("b", [ContextWindowExceeded("x")], clock=clock)])
    with pytest.raises(ContextWindowExceeded):
        await c.chat(req())


async def test_cascade_stream_yields_the_accepted_answer(clock: VirtualClock) -> None:
    c = Cascade("c", [Scripted("a", ['{"a": 1}'], clock=clock), Scripted("b", clock=clock)], clock=clock)
    assert await drain(c.stream(req())) == ['{"a": 1}', ""]
