"""Adaptive admission: a concurrency limit for the model routes that follows latency.

A fixed ``max_in_flight`` is either too high (requests queue inside the process and
latency explodes before anything is refused) or too low (capacity is wasted). The
limit here is estimated from what the gateway observes, as Netflix's
``concurrency-limits`` (Gradient2) and Envoy's adaptive concurrency filter do:

- every admitted call that succeeds gives one sample, the time from admission to the
  response's first byte (a stream's time to first chunk) plus the time the request
  waited for the event loop between its headers' completion and the middleware
  (:mod:`legato.server._protect`; the clock must be ``time.monotonic``, which the
  protocol's stamp uses);
- samples are averaged over windows (at least ``window_s`` and ``window_samples``);
- the baseline is a long-term average of the window averages, following a lasting
  change of latency over about ``baseline_s`` (Gradient2's long RTT), and **anchored
  to a floor**: it never exceeds ``baseline_cap`` times the lowest window average
  measured without queueing (TCP Vegas's no-load RTT). Without the anchor, sustained
  overload drifts the average up until queueing itself is the baseline and the limit
  stops shrinking;
- the floor drops to any lower window average at once. When no window has come within
  ``baseline_cap`` of it for ``floor_s`` (latency stayed up: calls queue, or the
  upstream became slower), the limit probes, as Envoy's adaptive concurrency filter and
  BBR's ProbeRTT do: for one window only ``min_limit`` calls are admitted, and that
  window's average (every call of it with at most ``min_limit`` in flight) is the new
  floor, higher or lower. A slower upstream therefore becomes the floor within about
  ``floor_s`` instead of pinning the limit at its minimum, and a floor first measured
  under load is corrected the same way. A probe costs one short window of reduced
  admission per ``floor_s`` while latency stays up, nothing otherwise;
- at the end of each window, ``gradient = clamp((tolerance * baseline + slack_s) / average,
  0.5, 1)``. The samples are the gateway's own share of a call (:mod:`legato.server._protect`),
  a fraction of a millisecond without queueing: ``slack_s`` keeps a few milliseconds of
  jitter from reading as queueing.
  Below 1, latency has risen past the tolerance: calls are queueing somewhere, and the
  limit shrinks towards ``limit * gradient`` (a ``smoothing`` share of the step at a
  time, at most halving). At 1, the limit grows by ``sqrt(limit)``, but only when the
  traffic actually uses half of it (otherwise latency says nothing about a larger limit).
- the event loop's lag is a second signal, as Node's ``toobusy`` and loop-lag shedding
  use it: :meth:`Admission.watch_loop` sleeps ``loop_lag_interval_s`` over and over and
  records how late it woke (while no model call is in flight it sleeps twenty times
  longer: an idle worker has no lag to shed, and 200 wake-ups a second would be most
  of its idle CPU). A request that arrives while the worker's CPU is saturated
  waits for the loop before its headers are even parsed, which no latency sample can
  see; the loop's lag does. When a window's largest lag exceeds ``max_loop_lag_s``,
  the window counts as queueing: the gradient is at most
  ``clamp(max_loop_lag_s / lag, 0.5, 1)`` and the limit does not grow, leaving CPU for
  the refusals of what does not fit.
- the same watcher reads the CPU time of the event loop's thread: the share of a
  window it was busy is the third signal. Lag only shows once the loop is already
  saturated, and a limit that grows until then oscillates: windows that admit
  everything overload the loop, the next ones shed hard, and the calls admitted at the
  peak wait behind each other for 50-100 ms. When a window's busy share exceeds
  ``max_loop_busy``, the gradient is at most ``clamp(max_loop_busy / busy, 0.5, 1)``
  and the limit does not grow, so it settles where the worker keeps some CPU in
  reserve for bursts, refusals and its background work.

A call that finds every slot taken waits in a short FIFO queue (``queue`` places, at
most ``queue_timeout_s``); a call that finds the queue full, or times out in it, is
refused at once with 429 + ``Retry-After``. The queue absorbs bursts, not sustained
overload: while every slot is taken and a call was refused within the last
``queue_timeout_s``, the admission is :meth:`~Admission.saturated` and new calls are
refused without queueing (they would wait their ``queue_timeout_s`` and be refused
anyway). That state is cheap to read, so the gateway checks it as soon as a request's
headers are parsed and answers there (:mod:`legato.server._shed`). Failed calls give no sample (a fast 4xx
would drag the baseline down). Counts are per worker process.

Why our own: the Python libraries for this are either token buckets (rate, not
concurrency) or tied to a framework's request model; the algorithm is a few lines
and must be driven from an ASGI middleware with the event loop's clock.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

import anyio

from legato.server._settings import AdmissionSettings

__all__ = ["Admission", "GradientLimit"]


class GradientLimit:
    """The limit estimate alone: pure arithmetic over samples and a clock reading."""

    def __init__(self, settings: AdmissionSettings, max_limit: int) -> None:
        self.settings = settings
        self.max_limit = max(settings.min_limit, settings.max_limit or max_limit)
        self.limit = float(min(self.max_limit, max(settings.min_limit, settings.initial_limit)))
        self.average: float | None = None  # the long-term average latency, per window
        self.floor: float | None = None  # the no-load latency
        self.probing = False
        self.probes = 0
        self._weight = min(1.0, settings.window_s / settings.baseline_s)
        self._fresh = 0.0  # when a window last came within baseline_cap of the floor
        self._start: float | None = None
        self._sum = 0.0
        self._count = 0
        self._peak = 0
        self.lag = 0.0  # the event loop's largest lag in the current window
        self._busy = 0.0  # CPU seconds of the event loop's thread in the current window...
        self._watched = 0.0  # ...over this many seconds of wall-clock time

    @property
    def allowed(self) -> int:
        """Calls to admit at once now: the limit, or ``min_limit`` while probing the floor."""
        return self.settings.min_limit if self.probing else int(self.limit)

    @property
    def baseline(self) -> float | None:
        """Latency without queueing: the long-term average, at most ``baseline_cap`` x the floor."""
        if self.average is None or self.floor is None:
            return None
        return min(self.average, self.floor * self.settings.baseline_cap)

    def loop_lag(self, lag: float) -> None:
        """Record how late the event loop ran a timer (seconds)."""
        self.lag = max(self.lag, lag)

    def loop_time(self, busy: float, elapsed: float) -> None:
        """Record that the event loop's thread used ``busy`` CPU seconds in ``elapsed`` seconds."""
        self._busy += busy
        self._watched += elapsed

    @property
    def busy(self) -> float:
        """The share of the current window the event loop's thread was on the CPU (0 when unknown)."""
        return min(1.0, self._busy / self._watched) if self._watched > 0 else 0.0

    def sample(self, rtt: float, in_flight: int, now: float) -> None:
        """Add one latency sample taken with ``in_flight`` calls admitted."""
        if self._start is None:
            self._start = now
        self._sum += rtt
        self._count += 1
        self._peak = max(self._peak, in_flight)
        s = self.settings
        if self._count >= s.window_samples and now - self._start >= s.window_s:
            self._update(self._sum / self._count, self._peak, now)
            self._start, self._sum, self._count, self._peak, self.lag = None, 0.0, 0, 0, 0.0
            self._busy = self._watched = 0.0

    def _update(self, average: float, peak: int, now: float) -> None:
        s = self.settings
        if self.probing:
            if peak <= s.min_limit:  # a window at no more than min_limit in flight: the no-load latency
                self.floor, self.probing, self._fresh = average, False, now
            return
        self._follow(average, now)
        baseline = self.baseline
        assert baseline is not None
        allowed = s.tolerance * baseline + s.slack_s  # what latency may reach before it counts as queueing
        gradient = max(0.5, min(1.0, allowed / average)) if average > 0 else 1.0
        # The loop's signals: a lag or a busy share over its bound caps the gradient
        # below 1, so such a window always shrinks the limit and never grows it.
        if s.max_loop_lag_s is not None and self.lag > s.max_loop_lag_s:
            gradient = min(gradient, max(0.5, s.max_loop_lag_s / self.lag))
        busy = self.busy
        if s.max_loop_busy is not None and busy > s.max_loop_busy:
            gradient = min(gradient, max(0.5, s.max_loop_busy / busy))
        if gradient < 1.0:
            target = self.limit * gradient
            self.limit -= (self.limit - target) * s.smoothing
        elif peak >= self.limit / 2:
            self.limit += math.sqrt(self.limit)
        self.limit = max(float(s.min_limit), min(float(self.max_limit), self.limit))
        if now - self._fresh >= s.floor_s:
            self.probing = True
            self.probes += 1

    def _follow(self, average: float, now: float) -> None:
        """Move the long-term average and the floor by one window's average."""
        if self.average is None or self.floor is None:
            self.average = self.floor = average
            self._fresh = now
            return
        self.average += (average - self.average) * self._weight
        self.floor = min(self.floor, average)
        if average <= self.floor * self.settings.baseline_cap:
            self._fresh = now


_IDLE_SLOWDOWN = 20  # how much less often the loop's lag is measured while no call is in flight


class Admission:
    """Slots for model calls under a :class:`GradientLimit`, with a short bounded queue."""

    def __init__(
        self,
        settings: AdmissionSettings,
        *,
        max_limit: int,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        self.settings = settings
        self.estimate = GradientLimit(settings, max_limit)
        self.clock = clock
        self.cpu_clock = cpu_clock  # CPU time of the calling thread: the event loop's, in watch_loop
        self.in_flight = 0
        self.rejected = 0
        self._refused_at = -math.inf
        self._waiting: deque[anyio.Event] = deque()

    @property
    def limit(self) -> int:
        return self.estimate.allowed

    async def watch_loop(self) -> None:
        """Measure the event loop's lag and busy share until cancelled (a task of the app's lifespan)."""
        interval = self.settings.loop_lag_interval_s
        if self.settings.max_loop_lag_s is None and self.settings.max_loop_busy is None:
            return
        start, cpu = self.clock(), self.cpu_clock()
        while True:
            pause = interval if self.in_flight else interval * _IDLE_SLOWDOWN
            await anyio.sleep(pause)
            now, cpu_now = self.clock(), self.cpu_clock()
            self.estimate.loop_lag(max(0.0, now - start - pause))
            self.estimate.loop_time(cpu_now - cpu, now - start)
            start, cpu = now, cpu_now

    def saturated(self) -> bool:
        """Every slot is taken and the queue is full, or a call was refused within the
        last ``queue_timeout_s`` (sustained overload, not a burst): a new call is refused."""
        if self.in_flight < self.limit:
            return False
        recent = self.clock() - self._refused_at < self.settings.queue_timeout_s
        return recent or len(self._waiting) >= self.settings.queue

    def refuse(self) -> None:
        """Count one refused call (also those refused before reaching :meth:`acquire`)."""
        self.rejected += 1
        self._refused_at = self.clock()

    async def acquire(self) -> bool:
        """Take a slot (True), or False when the call must be refused."""
        if self.in_flight < self.limit and not self._waiting:
            self.in_flight += 1
            return True
        if self.saturated():
            self.refuse()
            return False
        handed = anyio.Event()
        self._waiting.append(handed)
        with anyio.move_on_after(self.settings.queue_timeout_s):
            await handed.wait()
        if handed.is_set():  # release() gave us its slot, possibly as the timeout fired
            return True
        self._waiting.remove(handed)
        self.refuse()
        return False

    def release(self, rtt: float | None) -> None:
        """Give back a slot; ``rtt`` is the call's latency sample (None: no sample)."""
        if rtt is not None:
            self.estimate.sample(rtt, self.in_flight, self.clock())
        self.in_flight -= 1
        while self._waiting and self.in_flight < self.limit:
            self.in_flight += 1
            self._waiting.popleft().set()

    def snapshot(self) -> dict[str, float | int | None]:
        baseline, floor = self.estimate.baseline, self.estimate.floor
        return {
            "limit": self.limit,
            "in_flight": self.in_flight,
            "queued": len(self._waiting),
            "rejected": self.rejected,
            "baseline_ms": round(baseline * 1e3, 2) if baseline is not None else None,
            "floor_ms": round(floor * 1e3, 2) if floor is not None else None,
            "probes": self.estimate.probes,
            "loop_busy": round(self.estimate.busy, 2),
        }
