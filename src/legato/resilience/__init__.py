"""Resilience wrappers: each takes a ``Model`` and is a ``Model``.

They compose like middleware, outermost first, for example::

    model = Retry(CircuitBreaker(RateLimiter(Timeout(adapter, 30), rpm=500)))

Every wrapper takes an injected :class:`Clock` (``SystemClock`` by default,
``VirtualClock`` in tests) and publishes :class:`ResilienceEvent` objects to an
:class:`EventHub` (``default_hub`` unless given another).
"""

from legato.resilience._breaker import (
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    is_client_error,
    is_local_rejection,
)
from legato.resilience._bulkhead import Bulkhead, BulkheadPolicy
from legato.resilience._clock import Clock, SystemClock, VirtualClock
from legato.resilience._events import (
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
from legato.resilience._hedge import Hedge, HedgePolicy
from legato.resilience._limiter import RateLimiter, RateLimitPolicy, estimate_tokens
from legato.resilience._retry import Retry, RetryBudget
from legato.resilience._streaming import interrupted
from legato.resilience._timeout import Timeout
from legato.retry import RetryPolicy

__all__ = [
    "BreakerPolicy",
    "BreakerState",
    "BreakerStateChanged",
    "Bulkhead",
    "BulkheadPolicy",
    "BulkheadRejected",
    "CascadeAnswered",
    "CircuitBreaker",
    "Clock",
    "DeploymentEjected",
    "DeploymentRestored",
    "EventHub",
    "FallbackTaken",
    "Hedge",
    "HedgePolicy",
    "HedgeSent",
    "RateLimitPolicy",
    "RateLimitWaited",
    "RateLimiter",
    "ResilienceEvent",
    "Retry",
    "RetryBudget",
    "RetryBudgetExhausted",
    "RetryPolicy",
    "RetryScheduled",
    "SystemClock",
    "TimedOut",
    "Timeout",
    "VirtualClock",
    "default_hub",
    "estimate_tokens",
    "interrupted",
    "is_client_error",
    "is_local_rejection",
]
