"""Cost before and after: estimates, budgets that hold, and the guard that enforces them.

* :class:`CostEstimator` — what a call can cost, from the pricing table and offline
  token estimates; :func:`estimate_spec_cost` does it for a whole pipeline
  (``legato plan FILE --cost``);
* :class:`Budget` — a USD limit for a scope (``run``, ``pipeline:NAME``, ``key:ID``,
  ``day``), optionally per UTC day;
* :class:`MemoryBudgetStore` / :class:`RedisBudgetStore` — atomic reserve-then-settle
  counts, in process or shared across replicas;
* :class:`BudgetGuard` — a ``Model`` wrapper that reserves each call's estimate,
  raises :class:`~legato.errors.BudgetExceeded` (or downgrades to a cheaper model)
  and charges the real cost afterwards;
* :class:`BudgetsConfig` — the ``budgets:`` section of ``legato.yaml``.
"""

from legato.cost._budget import Budget, BudgetState, BudgetStore, MemoryBudgetStore, Reservation
from legato.cost._config import BudgetsConfig, PipelineBudget
from legato.cost._estimate import CostEstimate, CostEstimator
from legato.cost._guard import BudgetGuard
from legato.cost._plan import PlanCost, StepCost, estimate_spec_cost
from legato.cost._redis import RedisBudgetStore

__all__ = [
    "Budget",
    "BudgetGuard",
    "BudgetState",
    "BudgetStore",
    "BudgetsConfig",
    "CostEstimate",
    "CostEstimator",
    "MemoryBudgetStore",
    "PipelineBudget",
    "PlanCost",
    "RedisBudgetStore",
    "Reservation",
    "StepCost",
    "estimate_spec_cost",
]
