"""The ``groups:`` and ``routing:`` sections of ``legato.yaml``: their pydantic schema.

``routing:`` holds the defaults every group inherits; a group may override any of
them. A group is one of three kinds: ``deployments`` (a :class:`Router`),
``cascade`` (a :class:`Cascade`) or ``select`` (a :class:`Selector`). Prices are
:class:`legato.providers.Price`, the type of ``models:`` prices too. Building the
groups is :mod:`legato.routing._groups`.
"""

from __future__ import annotations

import importlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator, model_validator

from legato.providers import (
    Price,
)
from legato.resilience import (
    BreakerPolicy,
    HedgePolicy,
)
from legato.retry import RetryPolicy
from legato.routing._cascade import Scorer, confidence_at_least, json_valid
from legato.routing._deployment import CAPABILITIES, OutlierPolicy

__all__ = [
    "BudgetSettings",
    "CascadeConfig",
    "DeploymentConfig",
    "GroupConfig",
    "GroupsSection",
    "Policies",
    "RetrySettings",
    "RoutingSection",
    "TimeoutSettings",
]

StrategyName = Literal["round_robin", "weighted", "least_in_flight", "latency", "lowest_cost", "usage_based"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrySettings(_Strict):
    max_attempts: int = Field(default=3, ge=1)
    base_delay: float = Field(default=0.5, ge=0)
    multiplier: float = Field(default=2.0, ge=1)
    max_delay: float = Field(default=30.0, ge=0)
    max_retry_after: float = Field(default=60.0, ge=0)
    deadline: float | None = Field(default=None, gt=0)

    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            base_delay=self.base_delay,
            multiplier=self.multiplier,
            max_delay=self.max_delay,
            max_retry_after=self.max_retry_after,
            deadline=self.deadline,
        )


class BudgetSettings(_Strict):
    ratio: float = Field(default=0.1, ge=0, le=1)
    min_retries: int = Field(default=10, ge=0)
    window: float = Field(default=10.0, gt=0)


class TimeoutSettings(_Strict):
    per_attempt: float | None = Field(default=None, gt=0, description="seconds per deployment attempt")
    total: float | None = Field(default=None, gt=0, description="seconds for the whole call")


class DeploymentConfig(_Strict):
    model: str
    name: str | None = None
    weight: float = Field(default=1.0, gt=0)
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    context_window: int | None = Field(default=None, ge=1)
    capabilities: list[str] | None = None
    price: Price | None = None

    @field_validator("capabilities")
    @classmethod
    def _known(cls, v: list[str] | None) -> list[str] | None:
        unknown = sorted(set(v or ()) - CAPABILITIES)
        if unknown:
            raise ValueError(f"unknown capabilities {unknown}; known: {sorted(CAPABILITIES)}")
        return v


class FallbackConfig(_Strict):
    on_failure: list[str] = Field(default_factory=list)
    context_window: list[str] = Field(default_factory=list)
    content_filtered: list[str] = Field(default_factory=list)


class DegradeConfig(_Strict):
    model: str | None = None
    answer: str | None = None

    @model_validator(mode="after")
    def _one(self) -> DegradeConfig:
        if (self.model is None) == (self.answer is None):
            raise ValueError("degrade needs exactly one of 'model' or 'answer'")
        return self


class Policies(_Strict):
    """What ``routing.defaults`` sets and a group may override (``false`` turns one off)."""

    strategy: StrategyName | None = None
    breaker: BreakerPolicy | Literal[False] | None = None
    outlier: OutlierPolicy | Literal[False] | None = None
    retry: RetrySettings | Literal[False] | None = None
    budget: BudgetSettings | Literal[False] | None = None
    timeout: TimeoutSettings | None = None
    hedge: HedgePolicy | Literal[False] | None = None


class TierConfig(_Strict):
    model: str
    name: str | None = None
    price: Price | None = None


class CascadeConfig(_Strict):
    tiers: list[TierConfig] = Field(min_length=2)
    scorer: str | dict[str, float | str] = "json_valid"

    def build_scorer(self) -> Scorer:
        if self.scorer == "json_valid":
            return json_valid
        if isinstance(self.scorer, dict):
            threshold = self.scorer.get("confidence")
            if not isinstance(threshold, int | float):
                raise ValueError("scorer mapping needs 'confidence: <number>' (and optionally 'field')")
            return confidence_at_least(float(threshold), str(self.scorer.get("field", "confidence")))
        module, _, attr = self.scorer.partition(":")
        if not module or not attr:
            raise ValueError(
                f"scorer {self.scorer!r}: use 'json_valid', {{confidence: 0.7}} or 'package.module:function'"
            )
        try:
            fn: Scorer = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"scorer {self.scorer!r} cannot be imported: {exc}") from exc
        return fn


class RuleConfig(_Strict):
    target: str
    max_input_tokens: int | None = Field(default=None, ge=0)
    min_input_tokens: int | None = Field(default=None, ge=0)
    needs: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    max_budget_remaining: float | None = Field(default=None, ge=0)
    max_latency_sla: float | None = Field(default=None, gt=0)
    capabilities: list[str] | None = None
    context_window: int | None = Field(default=None, ge=1)


class SelectConfig(_Strict):
    rules: list[RuleConfig] = Field(min_length=1)
    default: str


class GroupConfig(Policies):
    """One entry of ``groups:``: exactly one of ``deployments``, ``cascade``, ``select``."""

    deployments: list[DeploymentConfig] | None = None
    fallbacks: FallbackConfig = Field(default_factory=FallbackConfig)
    degrade: DegradeConfig | None = None
    cascade: CascadeConfig | None = None
    select: SelectConfig | None = None
    description: str | None = None
    guardrail: str | None = Field(
        default=None, description="a registered guardrail around the whole group (pii-mask, pii-block-patterns...)"
    )

    def references(self) -> list[str]:
        """The models and groups this group can send a call to."""
        refs = [*self.fallbacks.on_failure, *self.fallbacks.context_window, *self.fallbacks.content_filtered]
        refs += [d.model for d in self.deployments or ()]
        if self.degrade is not None and self.degrade.model:
            refs.append(self.degrade.model)
        if self.cascade is not None:
            refs += [t.model for t in self.cascade.tiers]
        if self.select is not None:
            refs += [r.target for r in self.select.rules] + [self.select.default]
        return refs

    @model_validator(mode="after")
    def _one_kind(self) -> GroupConfig:
        kinds = [k for k in ("deployments", "cascade", "select") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a group needs exactly one of 'deployments', 'cascade' or 'select'")
        if self.deployments is not None and not self.deployments:
            raise ValueError("'deployments' must list at least one model")
        return self


class GroupsSection(RootModel[dict[str, GroupConfig]]):
    """The ``groups:`` section: group name -> group."""


class HealthCheckSettings(_Strict):
    interval: float = Field(default=30.0, gt=0)
    timeout: float = Field(default=10.0, gt=0)


class RoutingSection(_Strict):
    """The ``routing:`` section: defaults for every group, and health checks."""

    defaults: Policies = Field(default_factory=Policies)
    health_check: HealthCheckSettings = Field(default_factory=HealthCheckSettings)
