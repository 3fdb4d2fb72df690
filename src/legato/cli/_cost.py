"""``legato plan FILE --cost``: the cost estimate of a pipeline, priced from the
pricing table and the ``models:`` section of ``legato.yaml`` (no API key needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from legato.cost import PlanCost

__all__ = ["plan_cost"]


def plan_cost(file: Path, config: Path | None, *, fan_out: int, ref_tokens: int) -> PlanCost:
    """Estimate one run of the pipeline in ``file``. Raises ``ConfigError``/``SpecError``/``ValueError``."""
    from legato.config import LegatoConfig
    from legato.cost import CostEstimator, estimate_spec_cost
    from legato.models import configured
    from legato.providers import default_pricing
    from legato.spec import load_spec

    models = configured(LegatoConfig.load(config))
    prices = {f"{m.provider}/{m.model or name}": m.price for name, m in models.items() if m.price is not None}
    estimator = CostEstimator(default_pricing().with_prices(prices) if prices else None)

    def resolve(name: str) -> str:
        model = models.get(name)
        return f"{model.provider}/{model.model or name}" if model is not None else name

    spec, _ = load_spec(file)
    return estimate_spec_cost(spec, estimator=estimator, fan_out=fan_out, ref_tokens=ref_tokens, resolve=resolve)
