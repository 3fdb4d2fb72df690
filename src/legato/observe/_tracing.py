"""OpenTelemetry spans for runs and steps, built from the engine's events.

Only the OpenTelemetry *API* is used here; spans are recorded when an SDK
``TracerProvider`` is installed (:func:`legato.observe.setup` does it when
``observe.tracing.enabled`` is set, or the application installs its own). Without
one, :func:`tracing_enabled` is false and every hook returns after one check, so
tracing costs close to nothing when it is off (``bench/observe.py`` measures it).

Span layout::

    run <pipeline>                      legato.run.id, legato.pipeline, legato.run.status
    ├── step <name>                     legato.step.name, legato.step.attempt, legato.step.status,
    │   │                               gen_ai.request.model, gen_ai.usage.*, legato.cost.usd
    │   └── chat <model>                (from :class:`legato.observe.Instrumented`)
    └── step <name> ...

A run span's parent is the span current when ``RunStarted`` is published: a run
started by a gateway request that carried ``traceparent`` joins the caller's trace.
Retries are ``retry`` span events; routing fallbacks, hedges and breaker changes are
span events added by :class:`~legato.observe.RoutingObserver`.
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import trace

from legato._version import __version__
from legato.engine import (
    Event,
    RunFinished,
    RunStarted,
    StepFailed,
    StepFinished,
    StepRetried,
    StepSkipped,
    StepStarted,
    current_step,
)

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["GenAI", "TracingSubscriber", "get_tracer", "tracing_enabled"]


class GenAI:
    """Attribute names from the OpenTelemetry GenAI semantic conventions."""

    OPERATION: Final = "gen_ai.operation.name"
    PROVIDER: Final = "gen_ai.provider.name"
    REQUEST_MODEL: Final = "gen_ai.request.model"
    REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
    REQUEST_TOP_P: Final = "gen_ai.request.top_p"
    REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
    REQUEST_SEED: Final = "gen_ai.request.seed"
    RESPONSE_MODEL: Final = "gen_ai.response.model"
    RESPONSE_ID: Final = "gen_ai.response.id"
    RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
    INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
    OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
    ERROR_TYPE: Final = "error.type"


_global_on = False
MAX_OPEN_RUNS = 10_000  # runs whose spans are kept open at once; the oldest is closed beyond it
_UNKNOWN = object()


@functools.cache
def _provider_from_env() -> bool:
    return "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def tracing_enabled(provider: TracerProvider | None = None) -> bool:
    """True when spans would be recorded: an SDK provider is given or installed globally.

    This is on every model call and step event, so the answer for the global
    provider is cached once it is true (a global provider, once set, stays set);
    while it is false, the check reads the API's module global directly instead of
    calling ``get_tracer_provider()``, which looks up an environment variable.
    """
    global _global_on
    if provider is not None:
        return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
    if _global_on:
        return True
    current = getattr(trace, "_TRACER_PROVIDER", _UNKNOWN)
    if current is _UNKNOWN or (current is None and _provider_from_env()):
        current = trace.get_tracer_provider()  # the slow, public way
    if current is None:
        return False
    _global_on = not isinstance(current, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
    return _global_on


def get_tracer(provider: TracerProvider | None = None) -> Tracer:
    from opentelemetry import trace

    return trace.get_tracer("legato", __version__, tracer_provider=provider)


def _ns(epoch_s: float) -> int:
    return int(epoch_s * 1e9)


class TracingSubscriber:
    """An engine event subscriber that turns a run's events into spans.

    Call it with each event (``bus.subscribe(TracingSubscriber())``). Spans are
    started and ended with the events' own timestamps, so they are exact even when
    events are delivered late. :meth:`step_context` gives the context of a running
    step so that model calls made inside it become its children.
    """

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._provider = provider
        self._tracer: Tracer | None = None
        self._runs: dict[str, tuple[Span, str, frozenset[int]]] = {}
        self._steps: dict[tuple[str, str], Span] = {}
        self._lock = threading.Lock()
        _subscribers.add(self)

    @property
    def enabled(self) -> bool:
        return tracing_enabled(self._provider)

    def _get_tracer(self) -> Tracer:
        if self._tracer is None:
            self._tracer = get_tracer(self._provider)
        return self._tracer

    def __call__(self, event: Event) -> None:
        if not self.enabled:
            return
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)

    # -- handlers ------------------------------------------------------------------

    def _run_started(self, e: Any) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

        caller = trace.get_current_span().get_span_context()
        span = self._get_tracer().start_span(
            f"run {e.pipeline}",
            kind=SpanKind.INTERNAL,
            start_time=_ns(e.at),
            attributes={
                "legato.run.id": e.run_id,
                "legato.pipeline": e.pipeline,
                "legato.run.resumed_steps": len(e.resumed_steps),
            },
        )
        outer = {span.get_span_context().span_id}
        if caller.is_valid:
            outer.add(caller.span_id)
        with self._lock:
            self._runs[e.run_id] = (span, e.pipeline, frozenset(outer))
            stale = next(iter(self._runs)) if len(self._runs) > MAX_OPEN_RUNS else None
            abandoned = self._runs.pop(stale) if stale is not None else None
        if abandoned is not None:  # a run that never reported its end (its process state was lost)
            abandoned[0].set_attribute("legato.run.status", "unknown")
            abandoned[0].end()

    def _step_started(self, e: Any) -> None:
        from opentelemetry import trace

        with self._lock:
            run = self._runs.get(e.run_id)
        ctx = trace.set_span_in_context(run[0]) if run else None
        span = self._get_tracer().start_span(
            f"step {e.step}",
            context=ctx,
            start_time=_ns(e.at),
            attributes={
                "legato.run.id": e.run_id,
                "legato.pipeline": run[1] if run else "",
                "legato.step.name": e.step,
                "legato.step.attempt": e.attempt,
            },
        )
        with self._lock:
            old = self._steps.pop((e.run_id, e.step), None)
            self._steps[(e.run_id, e.step)] = span
        if old is not None:  # a step restarted without a finish event: close the old attempt
            old.end(end_time=_ns(e.at))

    def _step_finished(self, e: Any) -> None:
        span = self._pop_step(e.run_id, e.step)
        if span is None:
            return
        meta = e.meta or {}
        attrs: dict[str, Any] = {"legato.step.status": "succeeded", "legato.step.duration_s": e.duration_s}
        # The engine's step meta is the step ledger's summary: ``by_model`` maps each
        # model the step called to its spend, ``calls`` counts the calls.
        models = sorted(meta.get("by_model") or ())
        if isinstance(meta.get("model"), str) and meta["model"]:
            models = [meta["model"]]
        if len(models) == 1:
            attrs[GenAI.REQUEST_MODEL] = models[0]
        elif models:
            attrs["legato.step.models"] = models
        if isinstance(meta.get("calls"), int):
            attrs["legato.step.model_calls"] = meta["calls"]
        for key, attr in (("input_tokens", GenAI.INPUT_TOKENS), ("output_tokens", GenAI.OUTPUT_TOKENS)):
            if isinstance(meta.get(key), int):
                attrs[attr] = meta[key]
        if isinstance(meta.get("cost"), int | float):
            attrs["legato.cost.usd"] = float(meta["cost"])
        if meta.get("cached"):
            attrs["legato.step.cached"] = True
        span.set_attributes(attrs)
        span.end(end_time=_ns(e.at))

    def _step_failed(self, e: Any) -> None:
        from opentelemetry.trace import Status, StatusCode

        span = self._pop_step(e.run_id, e.step)
        if span is None:
            return
        status = "cancelled" if e.cancelled else "failed"
        span.set_attributes(
            {"legato.step.status": status, GenAI.ERROR_TYPE: e.error_type, "legato.step.duration_s": e.duration_s}
        )
        if not e.cancelled:
            span.set_status(Status(StatusCode.ERROR, e.error_type))
        span.end(end_time=_ns(e.at))

    def _step_retried(self, e: Any) -> None:
        attrs = {"legato.step.name": e.step, "legato.step.attempt": e.attempt, "legato.retry.delay_s": e.delay_s}
        attrs[GenAI.ERROR_TYPE] = e.error_type
        with self._lock:
            step = self._steps.get((e.run_id, e.step))
            run = self._runs.get(e.run_id)
        target = step if step is not None else run[0] if run else None
        if target is not None:
            target.add_event("retry", attrs, timestamp=_ns(e.at))

    def _step_skipped(self, e: Any) -> None:
        with self._lock:
            run = self._runs.get(e.run_id)
        if run is not None:
            run[0].add_event("step.skipped", {"legato.step.name": e.step, "legato.skip.reason": e.reason})

    def _run_finished(self, e: Any) -> None:
        from opentelemetry.trace import Status, StatusCode

        with self._lock:
            run = self._runs.pop(e.run_id, None)
            orphans = [k for k in self._steps if k[0] == e.run_id]
            spans = [self._steps.pop(k) for k in orphans]
        for span in spans:  # steps still open when the run ended (cancelled)
            span.set_attribute("legato.step.status", "cancelled")
            span.end(end_time=_ns(e.at))
        if run is None:
            return
        span = run[0]
        span.set_attribute("legato.run.status", str(e.status))
        span.set_attribute("legato.run.duration_s", e.duration_s)
        if e.failed_step:
            span.set_attribute("legato.run.failed_step", e.failed_step)
        if str(e.status) == "failed":
            span.set_status(Status(StatusCode.ERROR, "run failed"))
        span.end(end_time=_ns(e.at))

    def _pop_step(self, run_id: str, step: str) -> Span | None:
        with self._lock:
            return self._steps.pop((run_id, step), None)

    # -- context for model calls ---------------------------------------------------

    def step_context(self, run_id: str, step: str | None = None) -> Context | None:
        """The OTel context of a running step (or of the run when ``step`` is None)."""
        from opentelemetry import trace

        with self._lock:
            span = self._steps.get((run_id, step)) if step else None
            if span is None and run_id in self._runs:
                span = self._runs[run_id][0]
        return trace.set_span_in_context(span) if span is not None else None

    def call_parent(self) -> Context | None:
        """The context a model call made by the current step should be a child of.

        That is the step's span, unless the calling code already made a span of its
        own inside the step (then the current context is right as it is).
        """
        ctx = current_step()
        if ctx is None:
            return None
        from opentelemetry import trace

        with self._lock:
            span = self._steps.get((ctx.run_id, ctx.step))
            run = self._runs.get(ctx.run_id)
        if span is None:
            return None
        current = trace.get_current_span().get_span_context()
        if current.is_valid and (run is None or current.span_id not in run[2]):
            return None
        return trace.set_span_in_context(span)

    @contextmanager
    def use_step(self, run_id: str, step: str | None = None) -> Iterator[None]:
        """Make the step's span current for the code inside (model calls become children)."""
        from opentelemetry import context

        ctx = self.step_context(run_id, step) if self.enabled else None
        if ctx is None:
            yield
            return
        token = context.attach(ctx)
        try:
            yield
        finally:
            context.detach(token)


_subscribers: weakref.WeakSet[TracingSubscriber] = weakref.WeakSet()


def step_parent_context() -> Context | None:
    """The span context of the running step, from whichever tracing subscriber has it."""
    if current_step() is None:
        return None
    for sub in list(_subscribers):
        ctx = sub.call_parent()
        if ctx is not None:
            return ctx
    return None


_HANDLERS: dict[type[Event], Callable[[TracingSubscriber, Any], None]] = {
    RunStarted: TracingSubscriber._run_started,
    StepStarted: TracingSubscriber._step_started,
    StepFinished: TracingSubscriber._step_finished,
    StepFailed: TracingSubscriber._step_failed,
    StepRetried: TracingSubscriber._step_retried,
    StepSkipped: TracingSubscriber._step_skipped,
    RunFinished: TracingSubscriber._run_finished,
}
