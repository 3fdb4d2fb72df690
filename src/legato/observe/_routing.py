"""Retries, fallbacks, hedges, ejections and breaker changes as span events and metrics.

The resilience wrappers and routers publish small events on an
:class:`~legato.resilience.EventHub`; :class:`RoutingObserver` subscribes to one
(``default_hub`` unless told otherwise). Subscribers run synchronously on the task
making the model call, so the current span is that call's span (the
:class:`~legato.observe.Instrumented` wrapper around the router makes it current)
and each event is added to it:

==========================  ===========================  ==============================
resilience event            span event                   metric
==========================  ===========================  ==============================
RetryScheduled              ``retry``                    routing_events{event="retry"}
RetryBudgetExhausted        ``retry.budget_exhausted``   routing_events{event=...}
FallbackTaken               ``fallback``                 routing_events{event="fallback"}
HedgeSent                   ``hedge``                    routing_events{event="hedge"}
TimedOut                    ``timeout``                  routing_events{event="timeout"}
RateLimitWaited             ``rate_limit.wait``          routing_events{event=...}
BulkheadRejected            ``bulkhead.rejected``        routing_events{event=...}
DeploymentEjected           ``deployment.ejected``       routing_events{event="ejected"}
DeploymentRestored          ``deployment.restored``      routing_events{event="restored"}
BreakerStateChanged         ``breaker.state_change``     breaker_state{deployment=...}
CascadeAnswered             ``cascade``                  routing_events{event="cascade"}
==========================  ===========================  ==============================

Breaker changes and ejections are also logged (``legato.routing`` logger).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from legato.observe._metrics import Metrics, default_metrics
from legato.resilience import (
    BreakerStateChanged,
    BulkheadRejected,
    CascadeAnswered,
    DeploymentEjected,
    DeploymentRestored,
    EventHub,
    FallbackTaken,
    HedgeSent,
    RateLimitWaited,
    ResilienceEvent,
    RetryBudgetExhausted,
    RetryScheduled,
    TimedOut,
    default_hub,
)

__all__ = ["RoutingObserver"]

log = logging.getLogger("legato.routing")


def _describe(e: ResilienceEvent) -> tuple[str, str, dict[str, Any]]:
    """(span event name, metric event label, attributes) for an event."""
    attrs: dict[str, Any]
    if isinstance(e, RetryScheduled):
        return "retry", "retry", {"legato.attempt": e.attempt, "legato.retry.delay_s": e.delay, "error.type": e.error}
    if isinstance(e, RetryBudgetExhausted):
        return "retry.budget_exhausted", "retry_budget_exhausted", {"legato.attempt": e.attempt, "error.type": e.error}
    if isinstance(e, FallbackTaken):
        attrs = {"legato.fallback.from": e.failed, "legato.fallback.to": e.target, "legato.fallback.kind": e.kind}
        return "fallback", "fallback", {**attrs, "error.type": e.error}
    if isinstance(e, HedgeSent):
        return "hedge", "hedge", {"legato.hedge.delay_s": e.delay}
    if isinstance(e, TimedOut):
        return "timeout", "timeout", {"legato.timeout_s": e.seconds}
    if isinstance(e, RateLimitWaited):
        return "rate_limit.wait", "rate_limit_wait", {"legato.wait_s": e.seconds, "legato.limit": e.limit}
    if isinstance(e, BulkheadRejected):
        return "bulkhead.rejected", "bulkhead_rejected", {"legato.reason": e.reason}
    if isinstance(e, DeploymentEjected):
        attrs = {"legato.deployment": e.deployment, "legato.reason": e.reason, "legato.ejected_until": e.until}
        return "deployment.ejected", "ejected", attrs
    if isinstance(e, DeploymentRestored):
        return "deployment.restored", "restored", {"legato.deployment": e.deployment}
    if isinstance(e, BreakerStateChanged):
        attrs = {"legato.breaker.from": e.old, "legato.breaker.to": e.new}
        if e.failure_rate is not None:
            attrs["legato.breaker.failure_rate"] = e.failure_rate
        if e.slow_call_rate is not None:
            attrs["legato.breaker.slow_call_rate"] = e.slow_call_rate
        return "breaker.state_change", "breaker_" + e.new, attrs
    if isinstance(e, CascadeAnswered):
        attrs = {"legato.tier": e.tier, "legato.cascade.escalations": e.escalations}
        if e.saved is not None:
            attrs["legato.cascade.saved_usd"] = e.saved
        return "cascade", "cascade", attrs
    return type(e).__name__, type(e).__name__.lower(), {}


class RoutingObserver:
    """Subscribe to routing/resilience events: span events, metrics and logs.

    ``attach()`` subscribes to ``hub`` (the shared ``default_hub`` by default) and
    returns the function that detaches. Calling the observer with an event is what
    the hub does; it never raises into the model call.
    """

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics if metrics is not None else default_metrics()

    def attach(self, hub: EventHub | None = None) -> Callable[[], None]:
        return (hub or default_hub).subscribe(self)

    def __call__(self, event: ResilienceEvent) -> None:
        name, label, attrs = _describe(event)
        m = self.metrics
        source = m.label(event.source)
        attrs = {"legato.source": source, **{k: (m.label(v) if isinstance(v, str) else v) for k, v in attrs.items()}}
        if isinstance(event, BreakerStateChanged):
            m.set_breaker_state(event.source, event.new)
            log.warning("circuit breaker %s: %s -> %s", source, event.old, event.new,
                        extra={"deployment": source, "breaker_from": event.old, "breaker_to": event.new})  # fmt: skip
        m.routing_events.labels(source, label).inc()
        if isinstance(event, DeploymentEjected):
            log.warning("deployment %s ejected (%s)", event.deployment, event.reason,
                        extra={"deployment": m.label(event.deployment), "reason": event.reason})  # fmt: skip
        from opentelemetry import trace

        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(name, attrs)
