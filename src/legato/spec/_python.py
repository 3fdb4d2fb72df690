"""Pipelines written in Python, named by import path: ``package.module:pipeline`` or
``./file.py:pipeline`` (relative to the current directory).

The attribute is a :class:`~legato.engine.Pipeline`, or a function without required
parameters that returns one (a factory). ``legato run``, ``plan``, ``validate`` and
``analyze`` accept such a reference wherever they accept a YAML file; a module
path is imported with the current directory on ``sys.path``, as ``python -m`` does.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from legato.errors import SpecError, SpecIssue
from legato.spec._kinds import load_object

if TYPE_CHECKING:
    from legato.engine import Pipeline

__all__ = ["is_pipeline_ref", "load_pipeline_ref", "python_reference", "stored_ref"]

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def is_pipeline_ref(value: str | os.PathLike[str]) -> bool:
    """True for ``module:attr`` or ``file.py:attr`` that is not an existing file."""
    text = os.fspath(value)
    target, sep, attr = text.rpartition(":")
    if not sep or not target or not _DOTTED.fullmatch(attr) or "\n" in text:
        return False
    if not (target.endswith(".py") or _DOTTED.fullmatch(target)):
        return False
    return not Path(text).exists()


def stored_ref(ref: str) -> str:
    """The reference to record for a later resume: a file's path made absolute."""
    target, _, attr = ref.rpartition(":")
    if target.endswith(".py"):
        return f"{Path(target).resolve()}:{attr}"
    return ref


def python_reference(pipeline: Any) -> str | None:
    """``module:name`` under which ``pipeline`` can be imported again (what a resume
    reloads), found as a global of a module that defines one of its steps; None for
    a pipeline built in a script run as ``__main__`` or inside a function."""
    modules = {getattr(step.fn, "__module__", None) for step in pipeline.steps.values()}
    for name in sorted(m for m in modules if m and m != "__main__"):
        module = sys.modules.get(name)
        for attr, value in vars(module).items() if module is not None else ():
            if value is pipeline and _DOTTED.fullmatch(attr):
                return f"{name}:{attr}"
    return None


def load_pipeline_ref(ref: str) -> Pipeline:
    """Import the pipeline ``ref`` names and check its graph; raises
    :class:`~legato.errors.SpecError` naming what is wrong."""
    from legato.engine import Pipeline

    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        obj: Any = load_object(ref, Path.cwd())
    except (ImportError, AttributeError, ValueError, SyntaxError, OSError) as exc:
        raise SpecError([SpecIssue(f"{ref}: {exc}", file=ref)]) from None
    if not isinstance(obj, Pipeline) and callable(obj) and _no_required_params(obj):
        try:
            obj = obj()
        except Exception as exc:
            raise SpecError([SpecIssue(f"{ref}: calling it failed: {type(exc).__name__}: {exc}", file=ref)]) from exc
    if not isinstance(obj, Pipeline):
        message = f"{ref} is {type(obj).__name__}, not a legato Pipeline (or a function that returns one)"
        raise SpecError([SpecIssue(message, file=ref)])
    issues = obj.validate()
    if issues:
        raise SpecError([SpecIssue(i.message, file=ref, path=i.path) for i in issues])
    if obj.source is None:
        obj.source = stored_ref(ref)
    return obj


def _no_required_params(fn: Any) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)
