"""``legato plan FILE --cost``: what a pipeline is expected to cost, before it runs.

The estimate reads each step of the pipeline spec:

* ``llm:`` steps: input tokens from the prompt text (each ``${...}`` reference counts
  as ``ref_tokens``, since its value is not known before the run), output tokens
  from ``max_tokens`` (else the estimator's default), priced for the step's model;
* ``task:`` steps run local models: free;
* ``uses`` steps are Python functions: model calls made inside them are not seen
  and count as 0;
* a ``map`` step runs once per item: ``fan_out`` items are assumed; a ``loop`` runs
  ``max_iterations`` times at most (the upper bound is used); a ``when`` step is
  counted as if it runs.

Every assumption is listed in the result so the number can be judged. This module
reads the spec duck-typed (steps with ``kind``, ``uses``, ``map``, ``loop``, ``when``
and their own keys in ``model_extra``) so that it does not depend on the spec package.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from legato.cost._estimate import CostEstimator
from legato.providers import Model, estimate_text_tokens

__all__ = ["PlanCost", "StepCost", "estimate_spec_cost"]

_REF = re.compile(r"\$\{[^}]*\}")
_CHAT_FRAMING = 10  # reply primer and message framing tokens of a short chat


@dataclass(frozen=True, slots=True)
class StepCost:
    """The estimate of one step: per call, and for all its expected calls."""

    step: str
    kind: str
    model: str | None
    calls: int
    input_tokens: int  # per call
    output_tokens: int  # per call
    usd_per_call: float | None
    usd: float | None  # all calls
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "kind": self.kind,
            "model": self.model,
            "calls": self.calls,
            "input_tokens_per_call": self.input_tokens,
            "output_tokens_per_call": self.output_tokens,
            "usd_per_call": self.usd_per_call,
            "usd": self.usd,
            "note": self.note,
        }


@dataclass
class PlanCost:
    """Per-step and total estimates, with the assumptions they rest on."""

    pipeline: str
    steps: list[StepCost]
    assumptions: list[str] = field(default_factory=list)

    @property
    def total_usd(self) -> float:
        """Sum of the priced steps (see :attr:`unpriced` for those left out)."""
        return sum(s.usd for s in self.steps if s.usd is not None)

    @property
    def unpriced(self) -> list[str]:
        return [s.step for s in self.steps if s.usd is None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "total_usd": self.total_usd,
            "steps": [s.as_dict() for s in self.steps],
            "unpriced_steps": self.unpriced,
            "assumptions": list(self.assumptions),
        }

    def render(self) -> str:
        """A plain-text table for the terminal."""
        rows = [("step", "kind", "model", "calls", "in/call", "out/call", "USD")]
        for s in self.steps:
            usd = "unknown" if s.usd is None else f"{s.usd:.6f}"
            rows.append((s.step, s.kind, s.model or "-", str(s.calls), str(s.input_tokens), str(s.output_tokens), usd))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
        lines.append(f"estimated total: ${self.total_usd:.6f}")
        if self.unpriced:
            lines.append(f"not priced (left out of the total): {', '.join(self.unpriced)}")
        lines.append("assumptions:")
        lines.extend(f"  - {a}" for a in self.assumptions)
        return "\n".join(lines) + "\n"


def estimate_spec_cost(
    spec: Any,
    *,
    estimator: CostEstimator | None = None,
    fan_out: int = 10,
    ref_tokens: int = 200,
    resolve: Callable[[str], Model | str] | None = None,
) -> PlanCost:
    """Estimate the cost of one run of ``spec`` (a ``PipelineSpec``).

    ``resolve`` maps a step's ``model`` value (a name from ``legato.yaml``, a group,
    or ``provider/model``) to a Model or a ``provider/model`` string; by default the
    value is taken as ``provider/model``.
    """
    if fan_out < 1:
        raise ValueError(f"fan_out must be >= 1, got {fan_out}")
    estimator = estimator or CostEstimator()
    steps = [
        _step_cost(name, step, estimator, fan_out, ref_tokens, resolve)
        for name, step in dict(spec.steps).items()
        if not getattr(step, "tool", False)  # an agent's tool: its calls are the agent's turns
    ]
    assumptions = [
        f"each ${{...}} reference in a prompt expands to ~{ref_tokens} tokens (--ref-tokens)",
        f"a step without max_tokens writes {estimator.default_output_tokens} tokens per call",
        "token counts are offline estimates (~4 characters per token), slightly pessimistic",
        "prices per 1M tokens from the pricing table"
        + (f" dated {estimator.pricing.as_of}" if estimator.pricing.as_of else "")
        + " unless legato.yaml sets a model's price",
    ]
    if any(getattr(s, "map", None) for s in dict(spec.steps).values()):
        assumptions.append(f"a map step runs over {fan_out} items (--fan-out)")
    if any(getattr(s, "loop", None) for s in dict(spec.steps).values()):
        assumptions.append("a loop runs its max_iterations (upper bound)")
    if any(getattr(s, "when", None) for s in dict(spec.steps).values()):
        assumptions.append("conditional (when:) steps are counted as if they run")
    if any(s.kind == "python" for s in steps):
        assumptions.append("model calls made inside Python (uses:) steps are not estimated")
    assumptions.append("no cache hits are assumed (repeated inputs would cost less)")
    return PlanCost(str(getattr(spec, "name", "pipeline")), steps, assumptions)


def _step_cost(
    name: str,
    step: Any,
    estimator: CostEstimator,
    fan_out: int,
    ref_tokens: int,
    resolve: Callable[[str], Model | str] | None,
) -> StepCost:
    extra: Mapping[str, Any] = getattr(step, "model_extra", None) or {}
    kind = getattr(step, "kind", None) or next((k for k in ("llm", "task", "agent") if k in extra), None)
    kind = kind or ("python" if getattr(step, "uses", None) else "unknown")
    calls = fan_out if getattr(step, "map", None) else 1
    loop = getattr(step, "loop", None)
    if loop is not None:
        calls *= int(getattr(loop, "max_iterations", 1))
    turns = 1
    if kind == "agent":  # at most max_turns model calls per run of the step
        turns = int(extra.get("max_turns") or _AGENT_TURNS)
        calls *= turns
    if kind not in ("llm", "agent"):
        free = kind == "task"
        note = "local model: free" if free else "not a model step"
        local = str(extra.get("task") or "") or None
        return StepCost(name, kind, local if free else None, calls, 0, 0, 0.0, 0.0, note)
    model_ref = str(extra.get(kind) or extra.get("model") or "")
    model: Model | str = resolve(model_ref) if resolve and model_ref else model_ref
    text = " ".join(_texts(extra.get("system")) + _texts(extra.get("prompt")) + _texts(extra.get("messages")))
    refs = len(_REF.findall(text))
    input_tokens = _CHAT_FRAMING + estimate_text_tokens(_REF.sub("", text)) + refs * ref_tokens
    max_tokens = extra.get("max_tokens")
    output_tokens = int(max_tokens) if isinstance(max_tokens, int) else estimator.default_output_tokens
    per_call = estimator.tokens(model, input_tokens, output_tokens)
    usd = None if per_call.usd is None else per_call.usd * calls
    note = "" if per_call.usd is not None else f"no price known for {model_ref or 'its model'!r}"
    if kind == "agent":
        usd, note = _agent_bound(extra, usd, note, calls // turns, turns)
    return StepCost(name, kind, model_ref or None, calls, input_tokens, output_tokens, per_call.usd, usd, note)


_AGENT_TURNS = 10  # the agent step's default max_turns


def _agent_bound(
    extra: Mapping[str, Any], usd: float | None, note: str, runs: int, turns: int
) -> tuple[float | None, str]:
    """An agent step's upper bound: every turn used, capped by its max_cost."""
    cap = extra.get("max_cost")
    bound = f"upper bound: {turns} turns per run; tool results not counted"
    if isinstance(cap, int | float) and cap > 0 and (usd is None or usd > cap * runs):
        return float(cap) * runs, f"{bound}; capped by max_cost"
    return usd, f"{bound}; {note}" if note else bound


def _texts(value: Any) -> list[str]:
    """Every string inside a prompt value (a string, a list of messages, nested mappings)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _texts(v)]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _texts(v)]
    return [str(value)]
