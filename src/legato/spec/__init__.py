"""Pipeline specs: the YAML format and its loader. The safe expression language and
``${...}`` references live in :mod:`legato.expressions` (which the engine uses too)
and are re-exported here.

Names are imported lazily so that importing one does not pay for the pydantic
models of the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "BuildContext",
    "Expression",
    "ExpressionError",
    "PipelineSpec",
    "StepBuild",
    "StepFactory",
    "StepSpec",
    "compile_expression",
    "load_pipeline",
    "load_spec",
    "loads_pipeline",
    "register_step_kind",
]

_LAZY = {
    "BuildContext": "legato.spec._kinds",
    "StepBuild": "legato.spec._kinds",
    "StepFactory": "legato.spec._kinds",
    "register_step_kind": "legato.spec._kinds",
    "Expression": "legato.expressions",
    "ExpressionError": "legato.expressions",
    "compile_expression": "legato.expressions",
    "PipelineSpec": "legato.spec._models",
    "StepSpec": "legato.spec._models",
    "load_pipeline": "legato.spec._loader",
    "load_spec": "legato.spec._loader",
    "loads_pipeline": "legato.spec._loader",
}

if TYPE_CHECKING:
    from legato.expressions import Expression as Expression
    from legato.expressions import ExpressionError as ExpressionError
    from legato.expressions import compile_expression as compile_expression
    from legato.spec._kinds import BuildContext as BuildContext
    from legato.spec._kinds import StepBuild as StepBuild
    from legato.spec._kinds import StepFactory as StepFactory
    from legato.spec._kinds import register_step_kind as register_step_kind
    from legato.spec._loader import load_pipeline as load_pipeline
    from legato.spec._loader import load_spec as load_spec
    from legato.spec._loader import loads_pipeline as loads_pipeline
    from legato.spec._models import PipelineSpec as PipelineSpec
    from legato.spec._models import StepSpec as StepSpec


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'legato.spec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
