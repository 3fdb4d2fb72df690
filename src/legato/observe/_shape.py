"""What the analysis needs to know of a pipeline's configuration: each step's
dependencies, the ones it reads (and which parameter takes a whole step's
output), retries, map, concurrency, cache, condition and whether it is a local
model task that micro-batches concurrent calls.

Read from a compiled :class:`legato.Pipeline` (duck-typed, so the analysis works on
plain dictionaries in tests too), so advice is never given for what is already set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["StepShape", "step_shapes"]


@dataclass(frozen=True)
class StepShape:
    deps: tuple[str, ...] = ()
    declared_deps: tuple[str, ...] = ()  # depends_on as written
    unread_deps: tuple[str, ...] = ()  # declared in depends_on, never read by the step's arguments
    max_attempts: int = 1
    mapped: bool = False
    max_concurrency: int | None = None
    cache: bool = False
    conditional: bool = False
    whole_outputs: tuple[tuple[str, str], ...] = ()  # (parameter, step) where the parameter is that step's output
    batched: bool = False  # a `task:` step whose local model micro-batches concurrent calls


def step_shapes(pipeline: Any) -> dict[str, StepShape]:
    """``{step: StepShape}`` of a :class:`legato.Pipeline` (its compiled plan)."""
    from legato.engine._plan import STEP, VALUE

    plan = pipeline.compile()
    shapes: dict[str, StepShape] = {}
    for name in plan.order:
        cs = plan.steps[name]
        d = cs.d
        read: set[str] = set()
        whole: list[tuple[str, str]] = []
        for param, kind, payload in cs.binds:
            if kind == STEP:
                read.add(str(payload))
                whole.append((param, str(payload)))
            elif kind == VALUE:
                read.update(getattr(payload, "steps", ()))
                whole += [(param, s) for s in getattr(payload, "steps", ()) if _is_whole(payload, s)]
        unread = () if d.when is not None else tuple(x for x in d.depends_on if x not in read)
        shapes[name] = StepShape(
            deps=tuple(sorted(cs.deps)),
            declared_deps=tuple(d.depends_on),
            unread_deps=unread,
            max_attempts=d.retry.max_attempts if d.retry is not None else 1,
            mapped=d.map is not None,
            max_concurrency=d.max_concurrency,
            cache=bool(d.cache),
            conditional=d.when is not None,
            whole_outputs=tuple(whole),
            batched=_batched_task(d.fn),
        )
    return shapes


def _is_whole(value: Any, step: str) -> bool:
    """``${steps.NAME}``: the value is the step's whole output."""
    expr = getattr(value, "expr", None)  # only a value that is one ${...} reference has one
    return expr is not None and str(getattr(expr, "source", "")).strip() == f"steps.{step}"


def _batched_task(fn: Any) -> bool:
    recipe = getattr(fn, "legato_actor", None)  # set on `task:` steps: (builder, (task name, options, base))
    if not isinstance(recipe, tuple) or recipe[0] != "legato.steps.task:actor_step":
        return False
    import json

    from legato.tasks import get

    name, options, _ = recipe[1]
    return bool(get(name, **json.loads(options)).batched)
