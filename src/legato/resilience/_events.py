"""Resilience events: what retries, breakers, limiters, hedges and routers did.

Every wrapper and router publishes small frozen dataclasses to an
:class:`EventHub`. By default they all share :data:`default_hub`, so a tracing or
metrics subscriber sees everything with one call::

    from legato.resilience import default_hub

    unsubscribe = default_hub.subscribe(lambda event: print(event))

A subscriber is a plain callable; it runs synchronously on the caller's task and
must be quick (count, annotate the current span, log). A subscriber that raises is
logged with its traceback and does not fail the model call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "BreakerStateChanged",
    "BulkheadRejected",
    "CascadeAnswered",
    "DeploymentEjected",
    "DeploymentRestored",
    "EventHub",
    "FallbackTaken",
    "HedgeSent",
    "RateLimitWaited",
    "ResilienceEvent",
    "RetryBudgetExhausted",
    "RetryScheduled",
    "TimedOut",
    "default_hub",
]

_log = logging.getLogger("legato.resilience")


@dataclass(frozen=True, slots=True)
class ResilienceEvent:
    """Base of every event. ``source`` is the name of the wrapper, deployment or group."""

    source: str
    at: float  # the injected clock's time


@dataclass(frozen=True, slots=True)
class BreakerStateChanged(ResilienceEvent):
    old: str  # "closed" | "open" | "half_open"
    new: str
    failure_rate: float | None = None  # percent, when the change was a rate decision
    slow_call_rate: float | None = None


@dataclass(frozen=True, slots=True)
class RetryScheduled(ResilienceEvent):
    attempt: int  # the attempt that failed (from 1)
    delay: float  # seconds until the next attempt
    error: str  # exception class name


@dataclass(frozen=True, slots=True)
class RetryBudgetExhausted(ResilienceEvent):
    attempt: int
    error: str


@dataclass(frozen=True, slots=True)
class FallbackTaken(ResilienceEvent):
    failed: str  # the deployment or group that failed
    target: str  # what is tried next
    error: str  # exception class name that caused the move
    kind: str  # "deployment" (same group), "group" (fallback chain) or "degraded"


@dataclass(frozen=True, slots=True)
class DeploymentEjected(ResilienceEvent):
    deployment: str
    until: float
    reason: str  # "consecutive_failures", "authentication", "health_check"


@dataclass(frozen=True, slots=True)
class DeploymentRestored(ResilienceEvent):
    deployment: str


@dataclass(frozen=True, slots=True)
class RateLimitWaited(ResilienceEvent):
    seconds: float
    limit: str  # "rpm" or "tpm"


@dataclass(frozen=True, slots=True)
class BulkheadRejected(ResilienceEvent):
    reason: str  # "queue_full" or "queue_timeout"


@dataclass(frozen=True, slots=True)
class TimedOut(ResilienceEvent):
    seconds: float


@dataclass(frozen=True, slots=True)
class HedgeSent(ResilienceEvent):
    delay: float  # how long the first attempt had run when the hedge was sent


@dataclass(frozen=True, slots=True)
class CascadeAnswered(ResilienceEvent):
    tier: str
    escalations: int
    saved: float | None  # USD saved against the top tier, None when prices are unknown


Subscriber = Callable[[ResilienceEvent], None]


class EventHub:
    """A list of subscribers. ``subscribe`` returns the function that unsubscribes."""

    def __init__(self) -> None:
        self._subscribers: tuple[Subscriber, ...] = ()
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subscribers = (*self._subscribers, subscriber)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(s for s in self._subscribers if s is not subscriber)

        return unsubscribe

    def emit(self, event: ResilienceEvent) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:
                _log.exception("resilience event subscriber %r failed on %r", subscriber, event)

    @property
    def active(self) -> bool:
        """Whether anyone listens (lets hot paths skip building an event)."""
        return bool(self._subscribers)


default_hub = EventHub()
"""The hub every wrapper publishes to unless it was given its own."""
