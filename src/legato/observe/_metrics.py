"""Prometheus metrics (``prometheus-client``) held in one :class:`Metrics` object.

All series live in the object's own ``CollectorRegistry`` (never the library's
global one), so several instances can coexist in one process (tests, two apps) and
the gateway serves exactly what legato records. Names, all prefixed ``legato_``:

========================================  =========  ==================================
name                                      type       labels
========================================  =========  ==================================
model_requests_total                      counter    model, provider, operation, status
model_request_duration_seconds            histogram  model, provider, operation
model_time_to_first_token_seconds         histogram  model, provider
model_tokens_total                        counter    model, provider, type (input|output|cached_input)
model_cost_usd_total                      counter    model, provider
model_requests_in_flight                  gauge      model
cache_requests_total                      counter    cache, result (hit|miss)
breaker_state                             gauge      deployment (0 closed, 1 half-open, 2 open)
routing_events_total                      counter    group, event (retry|fallback|...)
queue_depth                               gauge      queue
runs_total                                counter    pipeline, status
runs_in_progress                          gauge      pipeline
run_duration_seconds                      histogram  pipeline
steps_total                               counter    pipeline, step, status
step_duration_seconds                     histogram  pipeline, step
step_retries_total                        counter    pipeline, step
http_requests_total                       counter    method, route (template), status
http_request_duration_seconds             histogram  method, route
========================================  =========  ==================================

The process-wide instance (:func:`default_metrics`, what ``/metrics`` serves) also
has prometheus-client's standard ``process_*`` series (CPU seconds, memory, open
files) of the serving process; ``legato bench --url`` reads its CPU seconds to
estimate runs per CPU-second.

Label values are names from configuration (model, deployment, pipeline, step),
never request content, and pass through the redactor: a secret can never become a
label. ``status`` is ``ok`` or the :mod:`legato.errors` class name of the failure.

Multi-process servers (``legato serve --workers N``, gunicorn): set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before the workers start;
:meth:`Metrics.render` then merges every worker's files with prometheus-client's
``MultiProcessCollector``. Gauges declare how they merge (in-flight and queue depth
add up over live workers, breaker state takes the worst).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from legato.engine import Event, RunFinished, RunStarted, StepFailed, StepFinished, StepRetried, StepSkipped
from legato.redaction import Redactor, default_redactor

__all__ = ["BREAKER_STATES", "Metrics", "MetricsSubscriber", "default_metrics"]

LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TTFT_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)
RUN_BUCKETS: Final = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

BREAKER_STATES: Final = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}


class _ModelSeries:
    """The label children of one (model, provider, operation, status): the requests
    counter and duration histogram, and the time-to-first-token, token and cost children
    of the (model, provider) pair, each looked up at its first use."""

    __slots__ = ("cached", "cost", "duration", "input", "metrics", "model", "output", "provider", "requests", "ttft")

    def __init__(self, metrics: Metrics, model: str, provider: str, requests: Any, duration: Any) -> None:
        self.metrics, self.model, self.provider = metrics, model, provider
        self.requests, self.duration = requests, duration
        self.ttft: Any = None
        self.input: Any = None
        self.output: Any = None
        self.cached: Any = None
        self.cost: Any = None

    def record(
        self,
        duration_s: float,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int,
        cost: float | None,
        ttft_s: float | None,
    ) -> None:
        m = self.metrics
        self.requests.inc()
        self.duration.observe(duration_s)
        if ttft_s is not None:
            if self.ttft is None:
                self.ttft = m.model_ttft.labels(self.model, self.provider)
            self.ttft.observe(ttft_s)
        if input_tokens:
            if self.input is None:
                self.input = m.model_tokens.labels(self.model, self.provider, "input")
            self.input.inc(input_tokens)
        if output_tokens:
            if self.output is None:
                self.output = m.model_tokens.labels(self.model, self.provider, "output")
            self.output.inc(output_tokens)
        if cached_input_tokens:
            if self.cached is None:
                self.cached = m.model_tokens.labels(self.model, self.provider, "cached_input")
            self.cached.inc(cached_input_tokens)
        if cost:
            if self.cost is None:
                self.cost = m.model_cost.labels(self.model, self.provider)
            self.cost.inc(cost)


class Metrics:
    """legato's Prometheus series in one registry. Cheap to call from any thread."""

    def __init__(self, registry: CollectorRegistry | None = None, *, redactor: Redactor | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._redactor = redactor
        r = self.registry
        ns = "legato"
        self.model_requests = Counter(
            "model_requests", "Model calls by outcome.", ["model", "provider", "operation", "status"],
            namespace=ns, registry=r,
        )  # fmt: skip
        self.model_duration = Histogram(
            "model_request_duration_seconds", "Model call latency (whole response).",
            ["model", "provider", "operation"], namespace=ns, registry=r, buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.model_ttft = Histogram(
            "model_time_to_first_token_seconds", "Streaming time to the first chunk.",
            ["model", "provider"], namespace=ns, registry=r, buckets=TTFT_BUCKETS,
        )  # fmt: skip
        self.model_tokens = Counter(
            "model_tokens", "Tokens by direction.", ["model", "provider", "type"], namespace=ns, registry=r
        )
        self.model_cost = Counter("model_cost_usd", "Spend in USD.", ["model", "provider"], namespace=ns, registry=r)
        self.model_in_flight = Gauge(
            "model_requests_in_flight", "Model calls under way.", ["model"],
            namespace=ns, registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.cache_requests = Counter(
            "cache_requests", "Response cache lookups.", ["cache", "result"], namespace=ns, registry=r
        )
        self.breaker_state = Gauge(
            "breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.", ["deployment"],
            namespace=ns, registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.routing_events = Counter(
            "routing_events", "Retries, fallbacks, hedges and ejections.", ["group", "event"], namespace=ns, registry=r
        )
        self.queue_depth = Gauge(
            "queue_depth", "Work waiting for a slot.", ["queue"], namespace=ns, registry=r, multiprocess_mode="livesum"
        )
        self.runs = Counter("runs", "Finished pipeline runs.", ["pipeline", "status"], namespace=ns, registry=r)
        self.runs_in_progress = Gauge(
            "runs_in_progress", "Runs under way.", ["pipeline"], namespace=ns, registry=r, multiprocess_mode="livesum"
        )
        self.run_duration = Histogram(
            "run_duration_seconds", "Run wall time.", ["pipeline"], namespace=ns, registry=r, buckets=RUN_BUCKETS
        )
        self.steps = Counter(
            "steps", "Finished step attempts.", ["pipeline", "step", "status"], namespace=ns, registry=r
        )
        self.step_duration = Histogram(
            "step_duration_seconds", "Step attempt wall time.", ["pipeline", "step"],
            namespace=ns, registry=r, buckets=RUN_BUCKETS,
        )  # fmt: skip
        self.http_requests = Counter(
            "http_requests", "HTTP requests served.", ["method", "route", "status"], namespace=ns, registry=r
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds", "HTTP request time (whole body, streams included).",
            ["method", "route"], namespace=ns, registry=r, buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self._model_series: dict[tuple[str, str, str, str], _ModelSeries] = {}
        self._in_flight: dict[str, Any] = {}
        self._cache_children: dict[tuple[str, bool], Any] = {}
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.step_retries = Counter("step_retries", "Step retries.", ["pipeline", "step"], namespace=ns, registry=r)

    def label(self, value: str | None) -> str:
        """A safe label value: redacted, bounded in length, never empty."""
        if not value:
            return "unknown"
        return (self._redactor or default_redactor()).text(value)[:120]

    def child(self, metric: Any, *raw_labels: str) -> Any:
        """``metric.labels(...)`` with each value passed through :meth:`label`, cached."""
        key = (id(metric), raw_labels)
        found = self._children.get(key)
        if found is None:
            if len(self._children) > 50_000:
                self._children.clear()
            found = self._children[key] = metric.labels(*(self.label(v) for v in raw_labels))
        return found

    # -- recording, used by Instrumented, the event subscriber and routing --

    def record_model_call(
        self,
        *,
        model: str,
        provider: str,
        operation: str,
        status: str,
        duration_s: float,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cached_input_tokens: int = 0,
        cost: float | None = None,
        ttft_s: float | None = None,
    ) -> None:
        series = self.model_series(model, provider, operation, status)
        series.record(duration_s, input_tokens, output_tokens, cached_input_tokens, cost, ttft_s)

    def model_series(self, model: str, provider: str, operation: str, status: str) -> _ModelSeries:
        """The series one model call's outcome is recorded in (``.record(...)``), cached."""
        series = self._model_series.get((model, provider, operation, status))
        if series is None:
            series = self._new_model_series(model, provider, operation, status)
        return series

    def _new_model_series(self, model: str, provider: str, operation: str, status: str) -> _ModelSeries:
        # Label children are looked up once per label set: prometheus-client's
        # ``labels()`` takes a lock and builds a tuple each time, which is most of
        # the cost of a recording when done per call.
        m, p = self.label(model), self.label(provider)
        series = _ModelSeries(
            self, m, p, self.model_requests.labels(m, p, operation, status), self.model_duration.labels(m, p, operation)
        )
        if len(self._model_series) > 10_000:  # label sets are bounded by configuration; this is a safety net
            self._model_series.clear()
        self._model_series[(model, provider, operation, status)] = series
        return series

    def in_flight(self, model: str) -> Any:
        """The in-flight gauge child of ``model`` (cached)."""
        gauge = self._in_flight.get(model)
        if gauge is None:
            gauge = self._in_flight[model] = self.model_in_flight.labels(self.label(model))
        return gauge

    def record_cache(self, hit: bool, *, cache: str = "response") -> None:
        child = self._cache_children.get((cache, hit))
        if child is None:
            child = self.cache_requests.labels(self.label(cache), "hit" if hit else "miss")
            self._cache_children[(cache, hit)] = child
        child.inc()

    def set_breaker_state(self, deployment: str, state: str) -> None:
        """``state`` is ``closed``, ``half_open`` or ``open``; anything else raises ``ValueError``."""
        try:
            value = BREAKER_STATES[state.lower()]
        except KeyError:
            raise ValueError(f"unknown breaker state {state!r}; expected closed, half_open or open") from None
        self.breaker_state.labels(self.label(deployment)).set(value)

    def set_queue_depth(self, queue: str, depth: int) -> None:
        self.queue_depth.labels(self.label(queue)).set(depth)

    def watch_queue(self, queue: str, source: Any) -> None:
        """Report ``queue``'s depth at every scrape from ``source``: a zero-argument
        callable, or an object with a ``waiting`` (:class:`~legato.resilience.Bulkhead`)
        or ``queued`` (:class:`~legato.batching.Batcher`) count. Objects are held
        weakly: a closed and collected queue reads 0. Raises ``TypeError`` for a
        source that is neither."""
        if callable(source):
            read: Callable[[], float] = source
        else:
            attr = next((a for a in ("waiting", "queued") if hasattr(source, a)), None)
            if attr is None:
                raise TypeError(f"watch_queue({queue!r}): {source!r} has no 'waiting' or 'queued' count")
            ref = weakref.ref(source)

            def read() -> float:
                obj = ref()
                return float(getattr(obj, attr)) if obj is not None else 0.0

        self.queue_depth.labels(self.label(queue)).set_function(read)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type, merged over workers in multi-process mode."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


_default: Metrics | None = None


def default_metrics() -> Metrics:
    """The process-wide :class:`Metrics` (created on first use)."""
    global _default
    if _default is None:
        from prometheus_client import ProcessCollector

        _default = Metrics()
        ProcessCollector(registry=_default.registry)
    return _default


class MetricsSubscriber:
    """An engine event subscriber that counts runs and steps into :class:`Metrics`."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics if metrics is not None else default_metrics()
        self._pipelines: dict[str, str] = {}

    def __call__(self, event: Event) -> None:
        m = self.metrics
        if isinstance(event, RunStarted):
            if len(self._pipelines) > 10_000:  # runs that never reported their end
                self._pipelines.pop(next(iter(self._pipelines)))
            self._pipelines[event.run_id] = event.pipeline
            m.child(m.runs_in_progress, event.pipeline).inc()
            return
        pipeline = self._pipelines.get(event.run_id, "unknown")
        if isinstance(event, StepFinished):
            m.child(m.steps, pipeline, event.step, "succeeded").inc()
            m.child(m.step_duration, pipeline, event.step).observe(event.duration_s)
        elif isinstance(event, StepFailed):
            m.child(m.steps, pipeline, event.step, "cancelled" if event.cancelled else "failed").inc()
            m.child(m.step_duration, pipeline, event.step).observe(event.duration_s)
        elif isinstance(event, StepSkipped):
            m.child(m.steps, pipeline, event.step, "skipped").inc()
        elif isinstance(event, StepRetried):
            m.child(m.step_retries, pipeline, event.step).inc()
        elif isinstance(event, RunFinished):
            self._pipelines.pop(event.run_id, None)
            m.child(m.runs, pipeline, str(event.status)).inc()
            m.child(m.run_duration, pipeline).observe(event.duration_s)
            m.child(m.runs_in_progress, pipeline).dec()
