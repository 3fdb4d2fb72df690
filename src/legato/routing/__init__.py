"""Model groups: load balancing, health, fallbacks, degradation, selection rules, cascades.

A :class:`Router` is a ``Model`` over a group of deployments; :class:`Selector`
and :class:`Cascade` are Models over other Models. Groups are declared in the
``groups:`` section of ``legato.yaml`` (see :func:`build_groups`) or built in
Python with the same typed objects.
"""

from legato.routing._cascade import Cascade, Scorer, Tier, confidence_at_least, json_valid
from legato.routing._deployment import Deployment, DeploymentHealth, DeploymentState, OutlierPolicy
from legato.routing._groups import Groups, ModelUnavailable, build_groups
from legato.routing._health import HealthChecker, ProbeResult, ping
from legato.routing._router import Fallbacks, Router
from legato.routing._schema import GroupConfig, GroupsSection, RoutingSection
from legato.routing._select import Rule, Selector
from legato.routing._shared import aclose_shared_groups, groups_for
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
    "Cascade",
    "Deployment",
    "DeploymentHealth",
    "DeploymentState",
    "Fallbacks",
    "GroupConfig",
    "Groups",
    "GroupsSection",
    "HealthChecker",
    "LatencyBased",
    "LeastInFlight",
    "LowestCost",
    "ModelUnavailable",
    "OutlierPolicy",
    "ProbeResult",
    "RoundRobin",
    "Router",
    "RoutingSection",
    "Rule",
    "Scorer",
    "Selector",
    "Strategy",
    "Tier",
    "UsageBased",
    "Weighted",
    "aclose_shared_groups",
    "build_groups",
    "confidence_at_least",
    "groups_for",
    "json_valid",
    "ping",
    "strategy_named",
]
