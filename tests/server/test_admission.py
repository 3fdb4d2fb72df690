"""Adaptive admission: the gradient limit follows latency, the queue is short and
bounded, and what does not fit is a 429 with ``Retry-After`` on the model routes only.

The limit is driven with explicit samples and clock readings (no sleeping); the
HTTP test checks what a client sees, not how fast it sees it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest
import uvicorn

from legato.server import create_app
from legato.server._admission import Admission, GradientLimit
from legato.server._conn import ARRIVED, ConnectionGuard, protocol_factory
from legato.server._keys import ApiKey
from legato.server._protect import Load, Protection
from legato.server._settings import AdmissionSettings
from legato.server._shed import EarlyRefusal
from legato.testing import FakeProvider, Reply

from .conftest import MASTER, catalog_for, gateway_settings, serve_in_thread

SETTINGS = AdmissionSettings(
    initial_limit=20, min_limit=4, window_s=1.0, window_samples=10, tolerance=1.5, baseline_s=10.0, slack_s=0
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


def test_a_lagging_event_loop_shrinks_the_limit_though_latency_stays_at_the_baseline() -> None:
    """A saturated worker delays requests before they are parsed, where no latency sample
    sees it: the loop's lag past ``max_loop_lag_s`` counts as queueing, a lag under it does not."""
    settings = SETTINGS.model_copy(update={"max_loop_lag_s": 0.01})
    limit = GradientLimit(settings, max_limit=100)
    now = feed(limit, rtt=0.1, in_flight=20, windows=1)
    grown = limit.limit
    limit.loop_lag(0.008)  # under the threshold: the limit grows as before
    now = feed(limit, rtt=0.1, in_flight=int(grown), windows=1, start=now)
    assert limit.limit > grown
    before = limit.limit
    limit.loop_lag(0.005)
    limit.loop_lag(0.04)  # the window's largest lag: gradient clamp(0.01 / 0.04) = 0.5
    now = feed(limit, rtt=0.1, in_flight=int(before), windows=1, start=now)
    assert limit.limit == pytest.approx(before - before * 0.5 * settings.smoothing)
    cut = limit.limit
    limit.loop_lag(0.011)  # barely over: a small cut, and still no growth
    now = feed(limit, rtt=0.1, in_flight=int(cut), windows=1, start=now)
    assert cut * 0.9 < limit.limit < cut
    after = limit.limit
    feed(limit, rtt=0.1, in_flight=int(after), windows=1, start=now)  # the lag was per window: growth resumes
    assert limit.limit > after


def test_the_loop_lag_is_ignored_when_max_loop_lag_is_unset() -> None:
    limit = GradientLimit(SETTINGS.model_copy(update={"max_loop_lag_s": None}), max_limit=100)
    now = feed(limit, rtt=0.1, in_flight=20, windows=1)
    grown = limit.limit
    limit.loop_lag(1.0)
    feed(limit, rtt=0.1, in_flight=int(grown), windows=1, start=now)
    assert limit.limit > grown


class ClockRanOut(Exception):
    pass


@pytest.mark.parametrize(("in_flight", "pause"), [(1, 0.005), (0, 0.1)])
async def test_the_loop_watcher_records_how_late_the_loop_woke_and_how_busy_it_was(
    in_flight: int, pause: float
) -> None:
    """The watcher reads the admission's clocks at each wake-up: readings 0 -> pause +
    30 ms stand for a loop that ran the timer 30 ms late, then one on time. With a call in
    flight it sleeps ``loop_lag_interval_s`` (5 ms); with none, twenty times that. The
    loop thread's CPU clock advanced by 60% of the wall clock: the window's busy share."""
    wall = [0.0, pause + 0.03, 2 * pause + 0.03]
    cpu = [5.0, 5.0 + 0.6 * (pause + 0.03), 5.0 + 0.6 * (2 * pause + 0.03)]

    def reader(readings: list[float]) -> Callable[[], float]:
        def read() -> float:
            if not readings:
                raise ClockRanOut
            return readings.pop(0)

        return read

    settings = SETTINGS.model_copy(update={"max_loop_lag_s": 0.01, "loop_lag_interval_s": 0.005})
    admission = Admission(settings, max_limit=100, clock=reader(wall), cpu_clock=reader(cpu))
    admission.in_flight = in_flight
    with anyio.fail_after(5), pytest.raises(ClockRanOut):  # after two measurements
        await admission.watch_loop()
    assert admission.estimate.lag == pytest.approx(0.03)
    assert admission.estimate.busy == pytest.approx(0.6)


def test_a_busy_event_loop_shrinks_the_limit_and_stops_its_growth() -> None:
    """Lag only shows once the loop is saturated; a limit that grows until then
    oscillates. A window whose loop thread was on the CPU more than ``max_loop_busy`` of
    the time counts as queueing: gradient ``clamp(max_loop_busy / busy, 0.5, 1)``, no
    growth. Under it, or with the setting off, the limit grows as before."""
    settings = SETTINGS.model_copy(update={"max_loop_busy": 0.75, "max_loop_lag_s": None})
    limit = GradientLimit(settings, max_limit=100)
    now = feed(limit, rtt=0.1, in_flight=20, windows=1)
    grown = limit.limit
    limit.loop_time(0.7, 1.0)  # 70% busy: under the threshold, the limit grows
    now = feed(limit, rtt=0.1, in_flight=int(grown), windows=1, start=now)
    assert limit.limit > grown
    before = limit.limit
    limit.loop_time(0.5, 0.5)
    limit.loop_time(0.5, 0.5)  # a window busy all the time: gradient 0.75
    assert limit.busy == pytest.approx(1.0)
    now = feed(limit, rtt=0.1, in_flight=int(before), windows=1, start=now)
    assert limit.limit == pytest.approx(before - before * 0.25 * settings.smoothing)
    cut = limit.limit
    limit.loop_time(0.76, 1.0)  # barely over: a small cut, and no growth
    now = feed(limit, rtt=0.1, in_flight=int(cut), windows=1, start=now)
    assert cut * 0.99 < limit.limit < cut
    after = limit.limit
    assert limit.busy == 0.0  # the busy share is per window
    feed(limit, rtt=0.1, in_flight=int(after), windows=1, start=now)
    assert limit.limit > after

    off = GradientLimit(settings.model_copy(update={"max_loop_busy": None}), max_limit=100)
    now = feed(off, rtt=0.1, in_flight=20, windows=1)
    grown = off.limit
    off.loop_time(1.0, 1.0)
    feed(off, rtt=0.1, in_flight=int(grown), windows=1, start=now)
    assert off.limit > grown


def test_a_lasting_change_of_latency_becomes_the_baseline_and_the_limit_recovers() -> None:
    """A slower upstream or a busy machine is not queueing the limit can fix: once latency
    has stayed up for ``floor_s``, one window at ``min_limit`` re-measures the floor,
    the new latency becomes the baseline and the limit grows again."""
    limit = GradientLimit(SETTINGS, max_limit=100)  # baseline_s 10, floor_s 30, windows of 1.2 s
    now = feed(limit, rtt=0.05, in_flight=20, windows=1)
    now = feed(limit, rtt=0.2, in_flight=20, windows=5, start=now)
    low = limit.limit
    assert low < 20
    now = feed(limit, rtt=0.2, in_flight=20, windows=25, start=now)
    assert limit.probing
    assert limit.allowed == SETTINGS.min_limit
    now = feed(limit, rtt=0.2, in_flight=SETTINGS.min_limit, windows=1, start=now)  # the probe window
    assert not limit.probing
    assert limit.floor == pytest.approx(0.2)
    feed(limit, rtt=0.2, in_flight=20, windows=20, start=now)
    assert limit.baseline == pytest.approx(0.2, rel=0.05)
    assert limit.limit > low
    assert limit.probes == 1


def queueing_latency(base: float, knee: int) -> Callable[[int], float]:
    """A server that does ``knee`` calls at once in ``base`` seconds; more wait their turn
    (latency grows in proportion to what is in flight beyond the knee, as Little's law says)."""
    return lambda in_flight: base * max(1.0, in_flight / knee)


class Drive:
    """Clients with ``demand`` calls always waiting; every 0.1 s of a virtual clock the
    admitted calls (what the limit allows, at most the demand) report the latency the
    model gives them."""

    def __init__(self, limit: GradientLimit) -> None:
        self.limit = limit
        self.now = 0.0

    def __call__(self, latency: Callable[[int], float], demand: int, seconds: float) -> list[tuple[float, float]]:
        """Run for ``seconds``; (limit, baseline) after every step."""
        trace: list[tuple[float, float]] = []
        limit, end = self.limit, self.now + seconds
        while self.now < end:
            in_flight = min(demand, limit.allowed)
            rtt = latency(in_flight)
            for _ in range(10):
                limit.sample(rtt, in_flight, self.now)
            self.now += 0.1
            if limit.baseline is not None:
                trace.append((limit.limit, limit.baseline))
        return trace


def test_a_few_milliseconds_over_a_sub_millisecond_baseline_are_not_queueing() -> None:
    """The gateway's own share of a call is a fraction of a millisecond: jitter of a few
    milliseconds (``slack_s``, 5 ms) leaves the limit alone; queueing past it shrinks it."""
    settings = SETTINGS.model_copy(update={"slack_s": 0.005})
    limit = GradientLimit(settings, max_limit=100)
    now = feed(limit, rtt=0.0004, in_flight=20, windows=1)
    steady = limit.limit
    now = feed(limit, rtt=0.004, in_flight=int(steady), windows=3, start=now)
    assert limit.limit >= steady  # 4 ms of a 0.4 ms baseline: within tolerance x 0.4 ms + 5 ms
    grown = limit.limit
    feed(limit, rtt=0.03, in_flight=int(grown), windows=3, start=now)
    assert limit.limit < grown  # 30 ms: calls are queueing in the gateway


@pytest.mark.parametrize(("base", "knee"), [(0.05, 30), (0.05, 100), (0.2, 16), (0.01, 60)])
def test_under_sustained_overload_the_limit_settles_near_the_knee(base: float, knee: int) -> None:
    """Demand far above what the server does at once, for ten minutes: the limit comes
    down from its initial value and stays between the knee and the point where latency
    passes the tolerance, so admitted latency stays within tolerance x cap of the no-load
    latency instead of drifting with the queue."""
    s = AdmissionSettings(initial_limit=256, max_limit=1024, min_limit=4, slack_s=0)
    limit = GradientLimit(s, max_limit=1024)
    trace = Drive(limit)(queueing_latency(base, knee), demand=2000, seconds=600)
    settled = [lim for lim, _ in trace[len(trace) // 10 :]]  # after the first probe (at floor_s)
    shrinks_at = knee * s.tolerance * s.baseline_cap  # where latency passes tolerance x baseline
    ceiling = shrinks_at + 2 * math.sqrt(shrinks_at) + 1  # at most two growth steps past it
    assert knee * 0.7 <= min(settled)
    assert max(settled) <= ceiling
    latencies = [queueing_latency(base, knee)(int(lim)) for lim in settled]
    assert sum(latencies) / len(latencies) <= base * s.tolerance * s.baseline_cap * 1.1


@pytest.mark.parametrize("start_limit", [16, 30])
def test_queueing_never_becomes_the_baseline(start_limit: int) -> None:
    """Demand far above the knee for five minutes, the traffic having started below it:
    the baseline never exceeds ``baseline_cap`` x the no-load latency, however long the
    calls queue, and the floor stays at that latency."""
    s = AdmissionSettings(initial_limit=start_limit, max_limit=1024, min_limit=4, slack_s=0)
    limit = GradientLimit(s, max_limit=1024)
    base = 0.05
    trace = Drive(limit)(queueing_latency(base, 30), demand=5000, seconds=300)
    assert max(baseline for _, baseline in trace) <= base * s.baseline_cap * 1.001
    assert limit.floor == pytest.approx(base, rel=0.01)


def test_a_floor_first_measured_under_queueing_is_corrected_by_a_probe() -> None:
    """The first window already queued (the limit started far above the knee): the floor
    is wrong at first, and the probe after ``floor_s`` finds the no-load latency; the
    limit then comes down to the knee."""
    s = AdmissionSettings(initial_limit=512, max_limit=1024, min_limit=4, slack_s=0)
    limit = GradientLimit(s, max_limit=1024)
    drive = Drive(limit)
    drive(queueing_latency(0.05, 30), demand=5000, seconds=s.floor_s + 5)
    assert limit.probes >= 1
    assert limit.floor == pytest.approx(0.05)
    drive(queueing_latency(0.05, 30), demand=5000, seconds=30)
    shrinks_at = 30 * s.tolerance * s.baseline_cap
    assert limit.limit <= shrinks_at + 2 * math.sqrt(shrinks_at) + 1


def test_after_an_overload_the_limit_grows_back_to_what_the_traffic_needs() -> None:
    s = AdmissionSettings(initial_limit=64, max_limit=1024, min_limit=4, slack_s=0)
    limit = GradientLimit(s, max_limit=1024)
    drive = Drive(limit)
    drive(queueing_latency(0.05, 30), demand=5000, seconds=120)
    assert limit.limit < 64
    drive(queueing_latency(0.05, 400), demand=300, seconds=60)  # more capacity upstream
    assert limit.limit >= 150  # grows while the traffic uses it (it needs 300; half is enough to grow)


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
    assert admission.snapshot() == {
        "limit": 1,
        "in_flight": 1,
        "queued": 0,
        "rejected": 1,
        "baseline_ms": None,
        "floor_ms": None,
        "probes": 0,
        "loop_busy": 0.0,
    }


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


async def test_early_refusal_answers_only_saturated_model_calls_of_known_keys_with_the_scope() -> None:
    """What the HTTP protocol asks when a request's headers are complete."""
    admission = Admission(AdmissionSettings(initial_limit=1, min_limit=1, max_limit=1, queue=0), max_limit=1)
    chat, embed = (
        ApiKey("k1", "lg_chat", "chat", frozenset({"chat"})),
        ApiKey("k2", "lg_emb", "emb", frozenset({"embed"})),
    )
    keys = {"Bearer lg-chat": chat, "Bearer lg-embed": embed}
    early = EarlyRefusal(admission, lambda headers: keys.get(headers.get("authorization", "")))
    auth = [(b"authorization", b"Bearer lg-chat")]
    assert early(b"/v1/chat/completions", auth) is None  # a free slot: served normally
    assert await admission.acquire()
    assert early(b"/v1/models", auth) is None  # not a model route
    assert early(b"/v1/chat/completions", [(b"authorization", b"Bearer unknown")]) is None  # the app answers 401
    assert early(b"/v1/chat/completions", [(b"authorization", b"Bearer lg-embed")]) is None  # the route answers 403
    assert admission.rejected == 0
    given = [*auth, (b"x-request-id", b"abc-1")]
    answer = early(b"/v1/chat/completions?x=1", given)
    assert answer is not None
    assert admission.rejected == 1
    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def receive() -> dict[str, object]:
        raise AssertionError("the body is never read")

    await answer({"type": "http", "path": "/v1/chat/completions", "headers": given, "state": {}}, receive, send)
    start, body = sent
    assert start["status"] == 429
    headers = dict(start["headers"])  # type: ignore[arg-type]
    assert headers[b"retry-after"] == b"1"
    assert headers[b"x-request-id"] == b"abc-1"
    assert b"server_overloaded" in body["body"]  # type: ignore[operator]
    anthropic = early(b"/v1/messages", auth)
    assert anthropic is not None
    sent.clear()
    await anthropic({"type": "http", "path": "/v1/messages", "headers": [], "state": {}}, receive, send)
    assert sent[1]["body"].startswith(b'{"type":"error"')  # type: ignore[union-attr]


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def admitted_calls(admission: Admission, clock: VirtualClock, windows: int, waited: float | None) -> None:
    """Model calls one after another through the protection middleware, each answered
    0.1 s after admission; ``waited``: how long each waited for the event loop after its
    headers were complete (None: no stamp, as in-process)."""
    load = Load(max_in_flight=100, max_body_bytes=1024, admission=admission)

    async def model(scope: object, receive: object, send: Callable[[dict[str, object]], object]) -> None:
        clock.now += 0.1
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[misc]
        await send({"type": "http.response.body", "body": b"{}"})  # type: ignore[misc]

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: object) -> None:
        pass

    protection = Protection(model, load=load)  # type: ignore[arg-type]
    for _ in range(windows * 10):
        clock.now += 0.02
        state = {} if waited is None else {ARRIVED: clock.now - waited}
        scope = {"type": "http", "path": "/v1/chat/completions", "headers": [], "state": state}
        await protection(scope, receive, send)  # type: ignore[arg-type]


@pytest.mark.parametrize("waited", [0.4, None])
async def test_time_waited_for_the_event_loop_before_admission_lowers_the_limit(waited: float | None) -> None:
    """A saturated worker: calls wait for the event loop after their headers are parsed,
    then are served in the usual 0.1 s. The limit sees that wait (it is queueing the
    limit causes) and shrinks; without the protocol's stamp only admission-to-first-byte
    counts and the limit holds."""
    clock = VirtualClock()
    admission = Admission(SETTINGS, max_limit=100, clock=clock)
    await admitted_calls(admission, clock, windows=2, waited=0.0)
    assert admission.limit == 20
    assert admission.estimate.floor == pytest.approx(0.1)
    await admitted_calls(admission, clock, windows=2, waited=waited)
    assert (admission.limit < 20) is (waited is not None)


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_the_protocol_stamps_each_request_when_its_headers_were_complete(http: str) -> None:
    stamps: list[float] = []

    async def app(scope: dict[str, object], receive: object, send: Callable[[dict[str, object]], object]) -> None:
        stamps.append(scope["state"][ARRIVED] - time.monotonic())  # type: ignore[index]
        await send({"type": "http.response.start", "status": 204, "headers": []})  # type: ignore[misc]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[misc]

    guard = ConnectionGuard(header_timeout_s=5, max_connections_per_client=0)
    protocol = protocol_factory(http, guard)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", http=protocol)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            assert [c.get("/").status_code for _ in range(2)] == [204, 204]  # kept alive: each one stamped
    finally:
        server.should_exit = True
        thread.join(30)
    assert len(stamps) == 2
    assert all(stamp <= 0 for stamp in stamps)  # taken before the app ran
