"""Load-balancing strategies: one method, ``choose``, over the eligible deployments.

The router has already removed deployments that are ejected, open, already tried
for this request, or unable to serve it (capabilities, context window); a
strategy only orders what is left. Randomness comes from an injectable
``random.Random`` so tests are reproducible.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from legato.providers import ChatRequest, EmbedRequest
from legato.routing._deployment import DeploymentState

__all__ = [
    "STRATEGIES",
    "LatencyBased",
    "LeastInFlight",
    "LowestCost",
    "RoundRobin",
    "Strategy",
    "UsageBased",
    "Weighted",
    "strategy_named",
]


@runtime_checkable
class Strategy(Protocol):
    def choose(self, candidates: Sequence[DeploymentState], request: ChatRequest | EmbedRequest) -> DeploymentState:
        """Pick one of ``candidates`` (never empty)."""
        ...


class RoundRobin:
    """Each deployment in turn."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def choose(self, candidates: Sequence[DeploymentState], request: ChatRequest | EmbedRequest) -> DeploymentState:
        return candidates[next(self._counter) % len(candidates)]


class Weighted:
    """Smooth weighted round-robin (nginx): deterministic, proportional to ``weight``,
    and interleaved rather than bursty."""

    def __init__(self) -> None:
        self._current: dict[str, float] = {}

    def choose(self, candidates: Sequence[DeploymentState], request: ChatRequest | EmbedRequest) -> DeploymentState:
        total = 0.0
        best: DeploymentState | None = None
        for c in candidates:
            weight = c.deployment.weight
            total += weight
            current = self._current.get(c.name, 0.0) + weight
            self._current[c.name] = current
            if best is None or current > self._current[best.name]:
                best = c
        assert best is not None
        self._current[best.name] -= total
        return best


class LeastInFlight:
    """Fewest calls in flight; ties go round-robin."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def choose(self, candidates: Sequence[DeploymentState], request: ChatRequest | EmbedRequest) -> DeploymentState:
        low = min(c.in_flight for c in candidates)
        tied = [c for c in candidates if c.in_flight == low]
        return tied[next(self._counter) % len(tied)]


class LatencyBased:
    """Lowest latency EWMA, with a little exploration.

    A deployment never measured is tried first; otherwise, with probability
    ``explore`` a random one is chosen so a recovered deployment can show it is
    fast again. In-flight calls count as a penalty so a burst spreads out.
    """

    def __init__(self, explore: float = 0.05, rng: random.Random | None = None) -> None:
        if not 0 <= explore <= 1:
            raise ValueError("explore must be between 0 and 1")
        self.explore = explore
        self.rng = rng or random.Random()

    def choose(self, candidates: Sequence[DeploymentState], request: ChatRequest | EmbedRequest) -> DeploymentState:
        unmeasured = [c for c in candidates if c.latency_ewma is None]
        if unmeasured:
            return min(unmeasured, key=lambda c: c.in_flight)
        if len(candidates) > 1 and self.rng.random() < self.explore:
            return self.rng.choice(list(candidates))
        return min(candidates, key=lambda c: (c.latency_ewma or 0.0) * (1 + c.in_flight))


class LowestCost:
    """Cheapest estimated cost for this request; unknown prices last; ties by in-flight."""

    def choose(self, candidates: Sequence[DeploymentState], request: ChatRequest | EmbedRequest) -> DeploymentState:
        def key(c: DeploymentState) -> tuple[int, float, int]:
            cost = c.deployment.estimated_cost(request)
            return (cost is None, cost or 0.0, c.in_flight)

        return min(candidates, key=key)


class UsageBased:
    """Most tokens-per-minute headroom left (deployments without a TPM limit count as full)."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def choose(self, candidates: Sequence[DeploymentState], request: ChatRequest | EmbedRequest) -> DeploymentState:
        def headroom(c: DeploymentState) -> float:
            value = c.limiter.headroom() if c.limiter is not None else None
            return 1.0 if value is None else value

        best = max(headroom(c) for c in candidates)
        tied = [c for c in candidates if headroom(c) >= best - 1e-9]
        return tied[next(self._counter) % len(tied)]


STRATEGIES: dict[str, type[Strategy]] = {
    "round_robin": RoundRobin,
    "weighted": Weighted,
    "least_in_flight": LeastInFlight,
    "latency": LatencyBased,
    "lowest_cost": LowestCost,
    "usage_based": UsageBased,
}


def strategy_named(name: str) -> Strategy:
    try:
        return STRATEGIES[name]()
    except KeyError:
        raise ValueError(f"unknown routing strategy {name!r}; choose one of {', '.join(STRATEGIES)}") from None
