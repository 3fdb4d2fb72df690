"""Executors: where step functions run (this process, or a Ray cluster).

An executor implements one method, ``async run_step(call: StepCall) -> Any`` (see
:class:`legato.engine.Executor`). Pipelines select one by name (``executor: local``
or ``executor: ray`` in YAML) through :func:`legato.engine.resolve_executor`, which
imports the implementation on first use; this package imports nothing heavy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["LocalExecutor"]

if TYPE_CHECKING:
    from legato.executors.local import LocalExecutor as LocalExecutor


def __getattr__(name: str) -> Any:
    if name == "LocalExecutor":
        return importlib.import_module("legato.executors.local").LocalExecutor
    raise AttributeError(f"module 'legato.executors' has no attribute {name!r}")
