"""What the analysis needs to know of a pipeline's configuration: each step's
dependencies, the ones it reads, retries, map, concurrency, cache and condition.

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


def step_shapes(pipeline: Any) -> dict[str, StepShape]:
    """``{step: StepShape}`` of a :class:`legato.Pipeline` (its compiled plan)."""
    from legato.engine._plan import STEP, VALUE

    plan = pipeline.compile()
    shapes: dict[str, StepShape] = {}
    for name in plan.order:
        cs = plan.steps[name]
        d = cs.d
        read: set[str] = set()
        for _, kind, payload in cs.binds:
            if kind == STEP:
                read.add(str(payload))
            elif kind == VALUE:
                read.update(getattr(payload, "steps", ()))
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
        )
    return shapes
