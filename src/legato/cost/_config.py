"""The ``budgets:`` section of ``legato.yaml``.

::

    budgets:
      store: redis                   # memory (default) or redis
      url: env:LEGATO_REDIS_URL      # redis
      prefix: "legato:budget:"
      on_unavailable: fail_closed    # or fail_open: calls go uncounted while Redis is down
      per_run_usd: 2.00              # every run
      per_day_usd: 50.00             # everything, per UTC day
      pipelines:                     # per pipeline, cumulative (or per period)
        nightly-digest: {limit_usd: 10.0, period: day}
      margin: 2.0
      wait_s: 30
      downgrade_to: cheap            # a model or group name: used instead of raising
      unpriced: reject               # or allow

:meth:`BudgetsConfig.budgets` lists the :class:`Budget` objects that apply to a
pipeline; :meth:`BudgetsConfig.store_for` builds the store and
:meth:`BudgetsConfig.guard` a :class:`BudgetGuard` with all of it. The ``downgrade_to``
name is resolved by the caller (``legato.models.get``), which knows about groups.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from legato.config import LegatoConfig
from legato.cost._budget import Budget, BudgetStore, FailureMode, MemoryBudgetStore
from legato.cost._guard import BudgetGuard
from legato.cost._redis import RedisBudgetStore
from legato.providers import Model

__all__ = ["BudgetsConfig", "PipelineBudget"]


class PipelineBudget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    limit_usd: float = Field(ge=0)
    period: Literal["day", "month"] | None = None


class BudgetsConfig(BaseModel):
    """Typed ``budgets:`` settings (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: Literal["memory", "redis"] = "memory"
    url: str | None = None
    prefix: str = "legato:budget:"
    on_unavailable: FailureMode = "fail_closed"
    timeout_s: float = Field(default=1.0, gt=0)
    per_run_usd: float | None = Field(default=None, ge=0)
    per_day_usd: float | None = Field(default=None, ge=0)
    pipelines: dict[str, PipelineBudget] = Field(default_factory=dict)
    margin: float = Field(default=2.0, ge=1)
    wait_s: float = Field(default=30.0, ge=0)
    lease_s: float = Field(default=600.0, gt=0)
    downgrade_to: str | None = None
    unpriced: Literal["reject", "allow"] = "reject"

    @model_validator(mode="after")
    def _check(self) -> BudgetsConfig:
        if self.store == "redis" and not self.url:
            raise ValueError("store 'redis' needs url (e.g. url: env:LEGATO_REDIS_URL)")
        return self

    @classmethod
    def load(cls, config: LegatoConfig | None = None) -> BudgetsConfig:
        """The ``budgets:`` section (defaults when absent); errors name the field and file:line."""
        return (config if config is not None else LegatoConfig.load()).section("budgets", cls)

    def budgets(self, pipeline: str | None = None) -> list[Budget]:
        """The budgets a call made by ``pipeline`` (or outside any pipeline) must fit in."""
        found: list[Budget] = []
        if self.per_run_usd is not None:
            found.append(Budget(self.per_run_usd, "run"))
        if self.per_day_usd is not None:
            found.append(Budget(self.per_day_usd, "day"))
        if pipeline is not None and pipeline in self.pipelines:
            entry = self.pipelines[pipeline]
            found.append(Budget(entry.limit_usd, f"pipeline:{pipeline}", entry.period))
        return found

    def guard(
        self,
        model: Model,
        *,
        pipeline: str | None = None,
        store: BudgetStore | None = None,
        downgrade: Model | None = None,
    ) -> BudgetGuard:
        """``model`` behind a :class:`BudgetGuard` with these budgets and settings.

        ``downgrade`` is the model that ``downgrade_to`` names, resolved by the caller.
        """
        return BudgetGuard(
            model,
            self.budgets(pipeline),
            store=store if store is not None else self.store_for(),
            downgrade=downgrade,
            unpriced=self.unpriced,
            margin=self.margin,
            wait_s=self.wait_s,
        )

    def store_for(self) -> BudgetStore:
        """A new store as configured."""
        if self.store == "redis":
            assert self.url is not None
            return RedisBudgetStore(
                self.url,
                prefix=self.prefix,
                lease_s=self.lease_s,
                timeout_s=self.timeout_s,
                on_unavailable=self.on_unavailable,
            )
        return MemoryBudgetStore(lease_s=self.lease_s)
