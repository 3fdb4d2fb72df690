"""Adaptive admission: the gradient limit follows latency, the queue is short and
bounded, and what does not fit is a 429 with ``Retry-After`` on the model routes only.

The limit is driven with explicit samples and clock readings (no sleeping); the
HTTP test checks what a client sees, not how fast it sees it.
"""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import httpx
import pytest

from legato.server import create_app
from legato.server._admission import Admission, GradientLimit
from legato.server._settings import AdmissionSettings
from legato.testing import FakeProvider, Reply

from .conftest import MASTER, catalog_for, gateway_settings, serve_in_thread

SETTINGS = AdmissionSettings(
    initial_limit=20, min_limit=4, window_s=1.0, window_samples=10, tolerance=1.5, baseline_s=10.0
)


def feed(limit: GradientLimit, rtt: float, in_flight: int, windows: int, start: float = 0.0) -> float:
    """``windows`` full windows of identical samples; returns the clock at the end."""
    now = start
    for _ in range(windows):
        for i in range(10):
            limit.sample(rtt, in_flight, now + i * 0.12)
        now += 1.2
    return now


def test_the_limit_grows_while_latency_stays_at_the_baseline_and_the_traffic_uses_it() -> None:
    limit = GradientLimit(SETTINGS, max_limit=100)
    feed(limit, rtt=0.1, in_flight=20, windows=3)
    assert limit.limit > 20
    assert limit.baseline == pytest.approx(0.1)


def test_the_limit_does_not_grow_when_the_traffic_does_not_use_it() -> None:
    limit = GradientLimit(SETTINGS, max_limit=100)
    feed(limit, rtt=0.1, in_flight=3, windows=5)
    assert limit.limit == 20


def test_the_limit_shrinks_when_latency_rises_past_the_tolerance_and_not_below_the_minimum() -> None:
    limit = GradientLimit(SETTINGS.model_copy(update={"baseline_s": 600.0}), max_limit=100)
    now = feed(limit, rtt=0.1, in_flight=20, windows=1)
    grown = limit.limit
    now = feed(limit, rtt=0.14, in_flight=20, windows=1, start=now)  # within the tolerance: no cut
    assert limit.limit >= grown
    before = limit.limit
    now = feed(limit, rtt=0.4, in_flight=20, windows=1, start=now)
    assert limit.limit < before
    assert limit.limit >= before / 2  # one window never more than halves it
    feed(limit, rtt=2.0, in_flight=20, windows=25, start=now)
    assert limit.limit == SETTINGS.min_limit


def test_a_lasting_change_of_latency_becomes_the_baseline_and_the_limit_recovers() -> None:
    """A slower upstream or a busy machine is not queueing the limit can fix: after about
    ``baseline_s`` the new latency is the baseline and the limit grows again."""
    limit = GradientLimit(SETTINGS, max_limit=100)  # baseline_s 10, windows of 1 s
    now = feed(limit, rtt=0.05, in_flight=20, windows=1)
    now = feed(limit, rtt=0.2, in_flight=20, windows=5, start=now)
    low = limit.limit
    assert low < 20
    feed(limit, rtt=0.2, in_flight=20, windows=40, start=now)
    assert limit.baseline == pytest.approx(0.2, rel=0.05)
    assert limit.limit > low


async def test_a_full_limit_queues_briefly_then_refuses() -> None:
    admission = Admission(AdmissionSettings(initial_limit=2, min_limit=1, queue=1, queue_timeout_s=5), max_limit=2)
    assert await admission.acquire()
    assert await admission.acquire()
    results: list[bool] = []
    async with anyio.create_task_group() as tg:

        async def queued() -> None:
            results.append(await admission.acquire())

        tg.start_soon(queued)
        await anyio.wait_all_tasks_blocked()
        assert admission.snapshot()["queued"] == 1
        assert not await admission.acquire()  # the queue is full: refused at once
        admission.release(None)  # the slot goes to the queued call
    assert results == [True]
    assert admission.in_flight == 2
    assert admission.rejected == 1


async def test_a_queued_call_that_waits_too_long_is_refused() -> None:
    admission = Admission(AdmissionSettings(initial_limit=1, min_limit=1, queue=4, queue_timeout_s=0), max_limit=1)
    assert await admission.acquire()
    assert not await admission.acquire()
    assert admission.snapshot() == {"limit": 1, "in_flight": 1, "queued": 0, "rejected": 1, "baseline_ms": None}


def test_model_calls_over_the_limit_get_429_with_retry_after(tmp_path: Path) -> None:
    """One model call admitted at once and no queue: a second one is refused with 429 +
    Retry-After in the client's format, while other routes are still served."""
    admission = AdmissionSettings(initial_limit=1, min_limit=1, max_limit=1, queue=0)
    with FakeProvider(seed=0).in_thread() as fake:
        release = threading.Event()

        def slow(_: object) -> Reply:
            release.wait(30)
            return Reply(text="done")

        fake.responder = slow
        app = create_app(gateway_settings(tmp_path, admission=admission), catalog=catalog_for(fake))
        with serve_in_thread(app) as url:
            headers = {"Authorization": f"Bearer {MASTER}"}
            body = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}
            first: list[int] = []

            def call() -> None:
                with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
                    first.append(c.post("/v1/chat/completions", json=body).status_code)

            t = threading.Thread(target=call)
            t.start()
            while not fake.requests:
                t.join(0.01)
            with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
                r = c.post("/v1/chat/completions", json=body)
                assert r.status_code == 429
                assert r.headers["retry-after"] == "1"
                assert r.json()["error"]["code"] == "server_overloaded"
                assert r.json()["error"]["type"] == "rate_limit_error"
                r = c.post("/v1/messages", json={**body, "model": "claude-fake", "max_tokens": 5})
                assert r.status_code == 429
                assert r.json()["type"] == "error"  # Anthropic's shape
                assert r.json()["error"]["type"] == "rate_limit_error"
                assert c.get("/v1/models").status_code == 200  # not a model call: not limited
                assert c.get("/readyz").json()["checks"]["admission"]["rejected"] == 2
                release.set()
                t.join(30)
                assert first == [200]
                assert c.post("/v1/chat/completions", json=body).status_code == 200
