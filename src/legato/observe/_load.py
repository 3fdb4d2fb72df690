"""Open-loop load tests (``legato bench``): runs started on a fixed schedule whatever
the pipeline's speed, each run's latency measured from its *intended* start.

A closed-loop tester (the next request when the previous one answers) slows down
with the system it measures, and a stall hides behind it: the requests that would
have arrived during the stall are never sent, so the percentiles look flattering
(coordinated omission). Here run ``i`` is due at ``i / rate`` seconds; it starts
then if it can, later if the process was busy, and its latency counts from when
it was due. What the generator itself lagged is reported apart (``start_lag``).

Written here rather than with a load-testing tool (Locust, k6, wrk2): those drive
HTTP endpoints, while the same schedule must also drive a pipeline in-process, and
the summary needs what only legato knows (a run's cost, the options' frontier).
The caller supplies one coroutine per run (:data:`Fire`); this module schedules,
measures and summarises.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio
import numpy as np

__all__ = [
    "Capacity",
    "Fire",
    "LoadReport",
    "Outcome",
    "Sample",
    "Slo",
    "parse_duration",
    "parse_rate",
    "parse_slos",
    "run_open_loop",
    "summarize",
]


@dataclass(frozen=True)
class Outcome:
    """What one run reported: did it succeed, what it cost, why it failed, and whether it was
    served at all (``False``: refused or lost before it ran to an end, e.g. an HTTP 429)."""

    ok: bool
    cost: float = 0.0
    error: str | None = None
    run_id: str | None = None
    served: bool = True
    http_status: int | None = None  # through a gateway: the status of a refused start


Fire = Callable[[dict[str, Any]], Awaitable[Outcome]]


@dataclass(frozen=True)
class Sample:
    """One run of the test, in seconds since the test began."""

    intended: float
    started: float
    finished: float
    ok: bool
    cost: float = 0.0
    error: str | None = None
    run_id: str | None = None
    served: bool = True

    @property
    def latency(self) -> float:
        return self.finished - self.intended


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """``30s``, ``500ms``, ``2m``, ``1h`` or a bare number of seconds, > 0."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|min|m|h)?\s*", text)
    value = float(m.group(1)) * _UNITS[m.group(2) or "s"] if m else math.nan
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"duration {text!r}: expected a positive time such as 30s, 500ms or 2m")
    return value


def parse_rate(text: str) -> float:
    """``R/s``, ``R/m`` (per minute) or a bare number of runs per second, > 0."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(?:/\s*(s|sec|m|min|h))?\s*", text)
    per = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
    value = float(m.group(1)) / per[m.group(2) or "s"] if m else math.nan
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"rate {text!r}: expected a positive number of runs such as 10/s, 120/m or 2.5")
    return value


@dataclass(frozen=True)
class Slo:
    """An objective: a latency percentile at most ``limit`` seconds, or the error rate at most ``limit``."""

    name: str  # p50, p90, p95, p99 or errors
    limit: float
    measured: float | None = None

    @property
    def passed(self) -> bool:
        return self.measured is not None and self.measured <= self.limit

    def describe(self) -> str:
        if self.name == "errors":
            return f"errors <= {self.limit:.2%}"
        return f"{self.name} <= {_s(self.limit)}"


def parse_slos(texts: Sequence[str]) -> list[Slo]:
    """``p95=2s``, ``p99=800ms``, ``errors=1%`` (several per argument, comma-separated)."""
    out: list[Slo] = []
    for part in (p.strip() for t in texts for p in t.split(",") if p.strip()):
        name, _, value = part.partition("=")
        name = name.strip().lower()
        try:
            if name == "errors":
                limit = float(value.strip().rstrip("%")) / (100 if value.strip().endswith("%") else 1)
                if not 0 <= limit <= 1:
                    raise ValueError
            elif re.fullmatch(r"p(50|90|95|99)", name):
                limit = parse_duration(value)
            else:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"SLO {part!r}: expected p50|p90|p95|p99=TIME (such as p95=2s) or errors=PERCENT"
            ) from None
        out.append(Slo(name, limit))
    return out


async def run_open_loop(
    fire: Fire,
    *,
    rate: float,
    duration: float,
    inputs: Sequence[dict[str, Any]],
    on_done: Callable[[Sample], None] | None = None,
    drain_s: float = 30.0,
    max_in_flight: int = 10_000,
    clock: Callable[[], float] = time.perf_counter,
) -> list[Sample]:
    """Start ``round(rate * duration)`` runs, run ``i`` due at ``i / rate`` seconds, and wait up
    to ``drain_s`` after the last for those in flight; runs still unfinished then are cancelled
    and reported as failed (``unfinished``). ``max_in_flight`` bounds memory: a run due while
    that many are in flight waits for a slot, and the wait counts in its latency."""
    total = max(1, round(rate * duration))
    samples: list[Sample] = []
    limiter = anyio.CapacityLimiter(max_in_flight)
    t0 = clock()

    async def one(i: int) -> None:
        async with limiter:
            started = clock() - t0
            try:
                outcome = await fire(inputs[i % len(inputs)])
            except Exception as exc:  # a run that raised is that run's failure, not the test's
                outcome = Outcome(False, error=f"{type(exc).__name__}: {exc}", served=False)
            o = outcome
            sample = Sample(i / rate, started, clock() - t0, o.ok, o.cost, o.error, o.run_id, o.served)
            samples.append(sample)
            if on_done is not None:
                on_done(sample)

    with anyio.move_on_after(duration + drain_s):
        async with anyio.create_task_group() as tg:
            for i in range(total):
                delay = t0 + i / rate - clock()  # from the schedule, never from the previous start
                if delay > 0:
                    await anyio.sleep(delay)
                tg.start_soon(one, i)
    end = clock() - t0
    done = len(samples)
    samples += [Sample(i / rate, math.nan, end, False, 0.0, "unfinished", None, False) for i in range(done, total)]
    return samples


@dataclass(frozen=True)
class Capacity:
    """Runs per second one worker sustains, how that was found, and replicas for a target rate."""

    per_worker: float | None
    basis: str  # "saturated", "cpu" or "lower bound"
    target_rate: float | None = None
    replicas: int | None = None
    cpu_per_run_s: float | None = None  # the worker's CPU time per served run, when known


@dataclass
class LoadReport:
    pipeline: str
    target: str  # "in-process" or the gateway's URL
    rate: float
    duration: float
    runs: int
    succeeded: int
    error_rate: float
    throughput: float  # runs served to an end (succeeded or failed) per second, between the first and last
    goodput: float  # succeeded runs per second
    p50_s: float
    p95_s: float
    p99_s: float
    max_s: float
    start_lag_p99_s: float  # how late the generator itself started runs (its own load)
    cost_per_run: float
    slos: list[Slo]
    capacity: Capacity
    timeline: list[dict[str, float]]
    errors: dict[str, int]
    options: list[dict[str, Any]] = field(default_factory=list)  # the latency-cost frontier, from analyze

    @property
    def slo_passed(self) -> bool:
        return all(s.passed for s in self.slos)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["slos"] = [{**asdict(s), "passed": s.passed} for s in self.slos]
        data["slo_passed"] = self.slo_passed
        return data


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q, method="inverted_cdf")) if len(values) else 0.0


def summarize(
    samples: Sequence[Sample],
    *,
    pipeline: str,
    target: str,
    rate: float,
    duration: float,
    slos: Sequence[Slo] = (),
    cpu_s: float | None = None,
    target_rate: float | None = None,
) -> LoadReport:
    """Percentiles of every run's latency from its intended start (unfinished runs count with the
    time they had been waiting), throughput, errors, cost, SLOs, the timeline and the capacity.
    ``cpu_s`` is the CPU time the worker spent during the test, when known."""
    latency = np.array([s.latency for s in samples])
    ok = [s for s in samples if s.ok]
    error_rate = 1 - len(ok) / len(samples) if samples else 0.0
    figures = {"p50": _pct(latency, 50), "p90": _pct(latency, 90), "p95": _pct(latency, 95), "p99": _pct(latency, 99)}
    measured = [Slo(s.name, s.limit, error_rate if s.name == "errors" else figures[s.name]) for s in slos]
    throughput = _throughput(samples, rate)
    served = sum(1 for s in samples if s.served)
    lag = np.array([s.started - s.intended for s in samples if not math.isnan(s.started)])
    return LoadReport(
        pipeline=pipeline,
        target=target,
        rate=rate,
        duration=duration,
        runs=len(samples),
        succeeded=len(ok),
        error_rate=error_rate,
        throughput=throughput,
        goodput=throughput * len(ok) / served if served else 0.0,
        p50_s=figures["p50"],
        p95_s=figures["p95"],
        p99_s=figures["p99"],
        max_s=float(latency.max()) if len(latency) else 0.0,
        start_lag_p99_s=_pct(lag, 99),
        cost_per_run=sum(s.cost for s in samples) / len(samples) if samples else 0.0,
        slos=measured,
        capacity=_capacity(samples, rate, throughput, cpu_s, target_rate),
        timeline=_timeline(samples, duration),
        errors=dict(Counter((s.error or "failed").split(":")[0] for s in samples if not s.ok).most_common()),
    )


def _throughput(samples: Sequence[Sample], rate: float) -> float:
    """Runs served per second between the first end and the last: the schedule's rate when the
    runs kept up (they end 1/rate apart), what the system sustains when they did not. Runs refused
    or lost (not served) do not count; a single served run gives the rate it was offered at."""
    ends = sorted(s.finished for s in samples if s.served)
    if len(ends) < 2:
        return rate if ends else 0.0
    span = ends[-1] - ends[0]
    return (len(ends) - 1) / span if span > 0 else rate


def _saturated(samples: Sequence[Sample], rate: float, throughput: float) -> bool:
    """Did the runs fall behind the schedule: fewer finished than offered, or latency growing
    through the test (the last quarter's median more than twice the first quarter's)."""
    if throughput < 0.9 * rate:
        return True
    ordered = sorted(samples, key=lambda s: s.intended)
    quarter = len(ordered) // 4
    if quarter < 5:
        return False
    first = np.median([s.latency for s in ordered[:quarter]])
    last = np.median([s.latency for s in ordered[-quarter:]])
    return bool(last > 2 * first)


def _capacity(
    samples: Sequence[Sample], rate: float, throughput: float, cpu_s: float | None, target: float | None
) -> Capacity:
    finished = sum(1 for s in samples if s.served)
    if _saturated(samples, rate, throughput):
        per, basis = throughput, "saturated"  # what it did while falling behind is what it can do
    elif cpu_s is not None and cpu_s > 0 and finished:
        per, basis = max(throughput, finished / cpu_s), "cpu"  # utilization law: one core's worth of runs
    else:
        per, basis = throughput, "lower bound"  # it kept up: it can do at least this
    replicas = math.ceil(target / per) if target and per > 0 else None
    cpu_per_run = cpu_s / finished if cpu_s is not None and finished else None
    return Capacity(per if per > 0 else None, basis, target, replicas, cpu_per_run)


def _timeline(samples: Sequence[Sample], duration: float) -> list[dict[str, float]]:
    """Latency percentiles of the runs due in each window of the test: twenty windows, fewer
    (down to five) when that leaves under 40 runs in each, so a window's p99 is not just its maximum."""
    windows_n = max(5, min(20, len(samples) // 40))
    width = max(duration / windows_n, 0.25)
    windows: dict[int, list[float]] = {}
    for s in samples:
        windows.setdefault(int(s.intended // width), []).append(s.latency)
    out = []
    for k in sorted(windows):
        values = np.array(windows[k])
        out.append(
            {"t": (k + 0.5) * width, "runs": float(len(values))} | {f"p{q}_s": _pct(values, q) for q in (50, 95, 99)}
        )
    return out


def _s(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
