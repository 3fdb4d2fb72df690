"""Adaptive admission: a concurrency limit for the model routes that follows latency.

A fixed ``max_in_flight`` is either too high (requests queue inside the process and
latency explodes before anything is refused) or too low (capacity is wasted). The
limit here is estimated from what the gateway observes, as Netflix's
``concurrency-limits`` (Gradient2) and Envoy's adaptive concurrency filter do:

- every admitted call that succeeds gives one sample, the time from admission to the
  response's first byte (a stream's time to first chunk);
- samples are averaged over windows (at least ``window_s`` and ``window_samples``);
- the baseline is a long-term average of the window averages, following a lasting
  change of latency over about ``baseline_s`` (Gradient2's long RTT): latency that rose
  for reasons the limit cannot fix (a slower upstream, a busy machine) stops counting
  as queueing after a while instead of pinning the limit at its minimum;
- at the end of each window, ``gradient = clamp(tolerance * baseline / average, 0.5, 1)``.
  Below 1, latency has risen past the tolerance: calls are queueing somewhere, and the
  limit shrinks towards ``limit * gradient`` (a ``smoothing`` share of the step at a
  time, at most halving). At 1, the limit grows by ``sqrt(limit)``, but only when the
  traffic actually uses half of it (otherwise latency says nothing about a larger limit).

A call that finds every slot taken waits in a short FIFO queue (``queue`` places, at
most ``queue_timeout_s``); a call that finds the queue full, or times out in it, is
refused at once with 429 + ``Retry-After``. Failed calls give no sample (a fast 4xx
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
        self.baseline: float | None = None  # the long-term average latency, per window
        self._weight = min(1.0, settings.window_s / settings.baseline_s)
        self._start: float | None = None
        self._sum = 0.0
        self._count = 0
        self._peak = 0

    def sample(self, rtt: float, in_flight: int, now: float) -> None:
        """Add one latency sample taken with ``in_flight`` calls admitted."""
        if self._start is None:
            self._start = now
        self._sum += rtt
        self._count += 1
        self._peak = max(self._peak, in_flight)
        s = self.settings
        if self._count >= s.window_samples and now - self._start >= s.window_s:
            self._update(self._sum / self._count, self._peak)
            self._start, self._sum, self._count, self._peak = None, 0.0, 0, 0

    def _update(self, average: float, peak: int) -> None:
        s = self.settings
        if self.baseline is None:
            self.baseline = average
        self.baseline += (average - self.baseline) * self._weight
        if average > 0 and self.baseline / average > 2:  # back from a long overload: forget it faster
            self.baseline *= 0.9
        gradient = max(0.5, min(1.0, s.tolerance * self.baseline / average)) if average > 0 else 1.0
        if gradient < 1.0:
            target = self.limit * gradient
            self.limit -= (self.limit - target) * s.smoothing
        elif peak >= self.limit / 2:
            self.limit += math.sqrt(self.limit)
        self.limit = max(float(s.min_limit), min(float(self.max_limit), self.limit))


class Admission:
    """Slots for model calls under a :class:`GradientLimit`, with a short bounded queue."""

    def __init__(
        self, settings: AdmissionSettings, *, max_limit: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.estimate = GradientLimit(settings, max_limit)
        self.clock = clock
        self.in_flight = 0
        self.rejected = 0
        self._waiting: deque[anyio.Event] = deque()

    @property
    def limit(self) -> int:
        return int(self.estimate.limit)

    async def acquire(self) -> bool:
        """Take a slot (True), or False when the call must be refused."""
        if self.in_flight < self.limit and not self._waiting:
            self.in_flight += 1
            return True
        if len(self._waiting) >= self.settings.queue:
            self.rejected += 1
            return False
        handed = anyio.Event()
        self._waiting.append(handed)
        with anyio.move_on_after(self.settings.queue_timeout_s):
            await handed.wait()
        if handed.is_set():  # release() gave us its slot, possibly as the timeout fired
            return True
        self._waiting.remove(handed)
        self.rejected += 1
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
        baseline = self.estimate.baseline
        return {
            "limit": self.limit,
            "in_flight": self.in_flight,
            "queued": len(self._waiting),
            "rejected": self.rejected,
            "baseline_ms": round(baseline * 1e3, 2) if baseline is not None else None,
        }
