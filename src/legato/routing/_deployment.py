"""Deployments: one upstream model in a group, and the router's view of its health.

A :class:`Deployment` is what the user declares (a Model plus weight, limits,
context window, capabilities and prices). A :class:`DeploymentState` is what the
router learns about it at run time: calls in flight, a latency EWMA, its circuit
breaker, and passive outlier ejection (Envoy's "consecutive 5xx" detector):
after ``consecutive_failures`` failures in a row the deployment is ejected for a
cooldown that doubles with each ejection (capped), and it gets traffic again when
the cooldown ends; a success resets the count.
"""

from __future__ import annotations

import math
from collections.abc import Set
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from legato.errors import AuthenticationFailed, ModelError
from legato.providers import ChatRequest, EmbedRequest, ImagePart, Model
from legato.resilience import (
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    Clock,
    DeploymentEjected,
    DeploymentRestored,
    EventHub,
    RateLimiter,
    RateLimitPolicy,
    estimate_tokens,
    is_client_error,
    is_local_rejection,
)

__all__ = [
    "CAPABILITIES",
    "Deployment",
    "DeploymentHealth",
    "DeploymentState",
    "OutlierPolicy",
    "input_tokens",
    "required_capabilities",
]

Capability = Literal["vision", "tools", "json_schema", "embeddings"]
CAPABILITIES: frozenset[str] = frozenset({"vision", "tools", "json_schema", "embeddings"})


def required_capabilities(request: ChatRequest | EmbedRequest) -> frozenset[str]:
    """What a request needs from a model: vision, tools, json_schema or embeddings."""
    if isinstance(request, EmbedRequest):
        return frozenset({"embeddings"})
    needs: set[str] = set()
    if request.tools:
        needs.add("tools")
    if request.response_format is not None and request.response_format.type == "json_schema":
        needs.add("json_schema")
    for message in request.messages:
        if isinstance(message.content, list) and any(isinstance(p, ImagePart) for p in message.content):
            needs.add("vision")
            break
    return frozenset(needs)


def input_tokens(request: ChatRequest | EmbedRequest) -> int:
    """Estimated prompt tokens (about four characters per token)."""
    return estimate_tokens(request, default_output=0)


@dataclass(frozen=True)
class Deployment:
    """One model of a group, with what the router needs to know about it.

    ``capabilities=None`` means unknown (assumed capable); ``context_window=None``
    means unknown (assumed large enough). Prices are USD per million tokens.
    """

    model: Model
    name: str | None = None
    weight: float = 1.0
    rpm: int | None = None
    tpm: int | None = None
    context_window: int | None = None
    capabilities: Set[str] | None = None
    input_cost_per_mtok: float | None = None
    output_cost_per_mtok: float | None = None

    def __post_init__(self) -> None:
        if self.weight <= 0:
            raise ValueError(f"deployment {self.label!r}: weight must be > 0")
        unknown = set(self.capabilities or ()) - CAPABILITIES
        if unknown:
            raise ValueError(
                f"deployment {self.label!r}: unknown capabilities {sorted(unknown)}; known: {sorted(CAPABILITIES)}"
            )

    @property
    def label(self) -> str:
        return self.name or self.model.name

    def estimated_cost(self, request: ChatRequest | EmbedRequest) -> float | None:
        if self.input_cost_per_mtok is None:
            return None
        out = (request.max_tokens or 256) if isinstance(request, ChatRequest) else 0
        return (input_tokens(request) * self.input_cost_per_mtok + out * (self.output_cost_per_mtok or 0.0)) / 1e6


class OutlierPolicy(BaseModel):
    """Passive outlier ejection."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    consecutive_failures: int = Field(default=5, ge=1)
    base_ejection: float = Field(default=30.0, gt=0, description="seconds; doubles with each ejection")
    max_ejection: float = Field(default=300.0, gt=0, description="seconds")
    unhealthy_ejection: float = Field(
        default=3600.0, gt=0, description="seconds a deployment with rejected credentials stays out"
    )


@dataclass(frozen=True)
class DeploymentHealth:
    """A snapshot of one deployment, for ``legato models health`` and dashboards."""

    group: str
    deployment: str
    model: str
    state: str  # healthy | ejected | unhealthy | unavailable | open | half_open
    in_flight: int
    latency_ewma: float | None
    consecutive_failures: int
    ejected_for: float
    successes: int
    failures: int
    last_error: str | None


class DeploymentState:
    """The router's live view of one deployment (see the module docstring)."""

    EWMA_ALPHA = 0.2

    def __init__(
        self,
        deployment: Deployment,
        *,
        group: str,
        breaker: BreakerPolicy | None,
        outlier: OutlierPolicy | None,
        clock: Clock,
        events: EventHub,
    ) -> None:
        self.deployment = deployment
        self.name = deployment.label
        self.group = group
        self.clock = clock
        self.events = events
        self.outlier = outlier
        model: Model = deployment.model
        self.limiter: RateLimiter | None = None
        if deployment.rpm or deployment.tpm:
            self.limiter = RateLimiter(
                model,
                RateLimitPolicy(rpm=deployment.rpm, tpm=deployment.tpm, wait=False),
                clock=clock,
                events=events,
                name=self.name,
            )
            model = self.limiter
        self.model: Model = model
        self.breaker = (
            CircuitBreaker(model, breaker, clock=clock, events=events, name=f"{group}/{self.name}") if breaker else None
        )
        self.in_flight = 0
        self.latency_ewma: float | None = None
        self.consecutive_failures = 0
        self.ejections = 0
        self.ejected_until = 0.0
        self.unhealthy = False
        self.unavailable: str | None = None
        self.successes = 0
        self.failures = 0
        self.last_error: str | None = None

    # -- eligibility ---------------------------------------------------------

    def ejected(self, now: float) -> bool:
        if self.ejected_until and now >= self.ejected_until:
            self.ejected_until = 0.0
            self.unhealthy = False
            if self.events.active:
                self.events.emit(DeploymentRestored(self.group, now, self.name))
        return now < self.ejected_until

    def available(self, now: float) -> bool:
        if self.ejected(now):
            return False
        return self.breaker is None or self.breaker.available()

    def wait_hint(self, now: float) -> float:
        """Seconds until this deployment may be eligible again."""
        wait = max(0.0, self.ejected_until - now)
        if self.breaker is not None:
            wait = max(wait, self.breaker.retry_after())
        return wait

    def fits(self, needs: frozenset[str], tokens: int) -> bool:
        d = self.deployment
        if d.capabilities is not None and not needs <= set(d.capabilities):
            return False
        return d.context_window is None or tokens <= d.context_window

    # -- one call ------------------------------------------------------------

    def begin(self) -> bool:
        """Take the breaker's permission and count the call in flight."""
        if self.breaker is not None and not self.breaker.try_acquire():
            return False
        self.in_flight += 1
        return True

    def succeeded(self, started: float) -> None:
        now = self.clock.now()
        self.in_flight -= 1
        self.successes += 1
        self.consecutive_failures = 0
        self.ejections = 0
        latency = now - started
        ewma = self.latency_ewma
        self.latency_ewma = latency if ewma is None else ewma + self.EWMA_ALPHA * (latency - ewma)
        if self.breaker is not None:
            self.breaker.on_success(latency)

    def failed(self, started: float, error: BaseException) -> None:
        now = self.clock.now()
        self.in_flight -= 1
        if self.breaker is not None:
            self.breaker.on_error(now - started, error)
        if is_local_rejection(error):
            return
        if isinstance(error, AuthenticationFailed):
            self.last_error = f"{type(error).__name__}: {error}"
            self.failures += 1
            self.mark_unhealthy("authentication")
            return
        if is_client_error(error) or not isinstance(error, ModelError):
            return  # the request's fault (or not a model failure): nothing learned about the deployment
        self.last_error = f"{type(error).__name__}: {error}"
        self.failures += 1
        self.consecutive_failures += 1
        if self.outlier is not None and self.consecutive_failures >= self.outlier.consecutive_failures:
            self.ejections += 1
            cooldown = min(self.outlier.max_ejection, self.outlier.base_ejection * 2 ** (self.ejections - 1))
            self.eject(now + cooldown, "consecutive_failures")
            self.consecutive_failures = 0

    def abandoned(self) -> None:
        """The caller cancelled or stopped reading: nothing learned about health."""
        self.in_flight -= 1
        if self.breaker is not None:
            self.breaker.release()

    def mark_unhealthy(self, reason: str) -> None:
        cooldown = self.outlier.unhealthy_ejection if self.outlier is not None else OutlierPolicy().unhealthy_ejection
        self.unhealthy = True
        self.eject(self.clock.now() + cooldown, reason)

    def mark_unavailable(self, reason: str) -> None:
        """Out of rotation for good: the model cannot be built here (e.g. its API key is unset)."""
        self.unavailable = reason
        self.last_error = reason
        self.ejected_until = math.inf

    def mark_healthy(self) -> None:
        """A passing active health check: back in rotation at once."""
        if self.unavailable is not None:
            return
        was_out = self.ejected_until > self.clock.now()
        self.ejected_until = 0.0
        self.unhealthy = False
        self.consecutive_failures = 0
        if was_out and self.events.active:
            self.events.emit(DeploymentRestored(self.group, self.clock.now(), self.name))

    def eject(self, until: float, reason: str) -> None:
        """Take the deployment out of rotation until ``until`` (clock time)."""
        self.ejected_until = max(self.ejected_until, until)
        if self.events.active:
            self.events.emit(DeploymentEjected(self.group, self.clock.now(), self.name, self.ejected_until, reason))

    # -- reporting -----------------------------------------------------------

    def health(self) -> DeploymentHealth:
        now = self.clock.now()
        if self.unavailable is not None:
            state = "unavailable"
        elif self.unhealthy and now < self.ejected_until:
            state = "unhealthy"
        elif now < self.ejected_until:
            state = "ejected"
        elif self.breaker is not None and self.breaker.state is not BreakerState.CLOSED:
            state = self.breaker.state.value
        else:
            state = "healthy"
        return DeploymentHealth(
            group=self.group,
            deployment=self.name,
            model=self.deployment.model.name,
            state=state,
            in_flight=self.in_flight,
            latency_ewma=self.latency_ewma,
            consecutive_failures=self.consecutive_failures,
            ejected_for=max(0.0, self.ejected_until - now) if self.unavailable is None else 0.0,
            successes=self.successes,
            failures=self.failures,
            last_error=self.last_error,
        )
