"""``legato plan FILE --cost``: the cost estimate of a pipeline, priced from the
pricing table and the ``models:`` and ``groups:`` sections of ``legato.yaml`` (no API
key needed, nothing is called)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from legato.config import LegatoConfig
    from legato.cost import CostEstimator, PlanCost

__all__ = ["plan_cost", "spec_cost"]


def plan_cost(file: Path, config: Path | None, *, fan_out: int, ref_tokens: int) -> PlanCost:
    """Estimate one run of the pipeline in ``file``. Raises ``ConfigError``/``SpecError``/``ValueError``."""
    from legato.config import LegatoConfig
    from legato.spec import load_spec

    spec, _ = load_spec(file)
    return spec_cost(spec, LegatoConfig.load(config, spec=file), fan_out=fan_out, ref_tokens=ref_tokens)


def spec_cost(spec: Any, config: LegatoConfig, *, fan_out: int = 10, ref_tokens: int = 200) -> PlanCost:
    """Estimate one run of a loaded ``PipelineSpec`` with the models and groups of ``config``."""
    from legato.cost import CostEstimator, estimate_spec_cost
    from legato.models import configured
    from legato.providers import default_pricing

    models = configured(config)
    prices = {f"{m.provider}/{m.model or name}": m.price for name, m in models.items() if m.price is not None}
    estimator = CostEstimator(default_pricing().with_prices(prices) if prices else None)
    groups = config.raw("groups") or {}
    used_groups: set[str] = set()

    def model_id(name: str) -> str:
        model = models.get(name)
        return f"{model.provider}/{model.model or name}" if model is not None else name

    def resolve(name: str) -> str:
        if isinstance(groups, Mapping) and name in groups:
            used_groups.add(name)
            return _priciest(estimator, [model_id(m) for m in _member_models(groups[name])]) or name
        return model_id(name)

    plan = estimate_spec_cost(spec, estimator=estimator, fan_out=fan_out, ref_tokens=ref_tokens, resolve=resolve)
    if used_groups:
        plan.assumptions.append(
            f"a model group ({', '.join(sorted(used_groups))}) is priced at its most expensive member"
        )
    return plan


def _member_models(group: Any) -> list[str]:
    """Every ``model:`` named anywhere in a group's settings (deployments, tiers, rules)."""
    if isinstance(group, Mapping):
        found = [str(v) for k, v in group.items() if k == "model" and isinstance(v, str)]
        return found + [m for k, v in group.items() if k != "model" for m in _member_models(v)]
    if isinstance(group, list):
        return [m for item in group for m in _member_models(item)]
    return []


def _priciest(estimator: CostEstimator, candidates: list[str]) -> str | None:
    priced = [(estimator.tokens(c, 1000, 1000).usd, c) for c in candidates]
    known = [(usd, c) for usd, c in priced if usd is not None]
    return max(known)[1] if known else None
