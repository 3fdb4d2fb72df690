"""Model groups: load balancing, health, fallbacks, degradation, selection rules, cascades.

A :class:`Router` is a ``Model`` over a group of deployments; :class:`Selector`
and :class:`Cascade` are Models over other Models. Groups are declared in the
``groups:`` section of ``legato.yaml`` (see :func:`build_groups`) or built in
Python with the same typed objects.
"""

from legato.routing._deployment import Deployment, DeploymentHealth, DeploymentState, OutlierPolicy
from legato.routing._router import Fallbacks, Router
from legato.routing._strategies import (
    STRATEGIES,
    LatencyBased,
    LeastInFlight,
    LowestCost,
    RoundRobin,
    Strategy,
    UsageBased,
    Weighted,
    strategy_named,
)

__all__ = [
    "STRATEGIES",
    "Deployment",
    "DeploymentHealth",
    "DeploymentState",
    "Fallbacks",
    "LatencyBased",
    "LeastInFlight",
    "LowestCost",
    "OutlierPolicy",
    "RoundRobin",
    "Router",
    "Strategy",
    "UsageBased",
    "Weighted",
    "strategy_named",
]
