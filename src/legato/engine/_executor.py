"""Where a step's function runs: the one-method :class:`Executor` extension point,
the :class:`StepCache` protocol, and the lazy registry of executors by name.

The engine's default (no executor given) runs steps in the current process: async
functions are awaited, sync functions run in a worker thread through
``anyio.to_thread.run_sync`` so they never block the event loop. The local
executor in :mod:`legato.executors` does the same with its own thread limit; the
``ray`` executor ships steps to a Ray cluster. Executors are looked up by name
through import strings, so the engine never imports them.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import anyio.to_thread

from legato.errors import ConfigError

__all__ = [
    "Executor",
    "StepCache",
    "StepCall",
    "current_executor",
    "executor_names",
    "register_executor",
    "resolve_executor",
    "run_in_process",
]


@dataclass(frozen=True, slots=True)
class StepCall:
    """One invocation of a step function (one attempt; one item of a map step)."""

    fn: Callable[..., Any]
    kwargs: Mapping[str, Any]
    step: str
    run_id: str
    is_async: bool
    resources: Mapping[str, Any] = field(default_factory=dict)
    pipeline: str = ""
    attempt: int = 1
    index: int | None = None


@runtime_checkable
class Executor(Protocol):
    """Runs step calls. One method; the engine handles retries, timeouts and events."""

    async def run_step(self, call: StepCall) -> Any: ...


@runtime_checkable
class StepCache(Protocol):
    """Memoises step outputs by key (``cache=True`` steps)."""

    async def get(self, key: str) -> tuple[bool, Any]: ...

    async def put(self, key: str, value: Any) -> None: ...


async def run_in_process(call: StepCall) -> Any:
    """The default execution: await async functions, run sync ones in a worker thread.

    A cancelled or timed-out sync step stops waiting for its thread at once; the
    thread itself runs to the end of the function (Python cannot stop a thread).
    """
    if call.is_async:
        return await call.fn(**call.kwargs)
    return await anyio.to_thread.run_sync(functools.partial(call.fn, **call.kwargs), abandon_on_cancel=True)


_current: contextvars.ContextVar[Executor | None] = contextvars.ContextVar("legato_executor", default=None)


def current_executor() -> Executor | None:
    """The executor of the run whose control-flow step (a cycle) is running: the
    steps it runs itself go there too. None outside such a step, or without one."""
    return _current.get()


async def run_in_engine(fn: Callable[..., Any], kwargs: Mapping[str, Any], executor: Executor) -> Any:
    """Run a control-flow step (``fn.runs_in_engine``) here, with ``executor`` as the
    :func:`current_executor` of the steps it runs: a cycle evaluates ``until`` and
    keeps its journal in the engine, and its body's steps go to the executor."""
    token = _current.set(executor)
    try:
        return await fn(**kwargs)
    finally:
        _current.reset(token)


_EXECUTORS: dict[str, str] = {
    "local": "legato.executors.local:LocalExecutor",
    "ray": "legato.executors.ray:RayExecutor",
}


def register_executor(name: str, target: str) -> None:
    """Register an executor class by ``"package.module:ClassName"`` (imported on first use)."""
    if ":" not in target:
        raise ValueError(f"executor target must look like 'package.module:Class', got {target!r}")
    _EXECUTORS[name] = target


def executor_names() -> list[str]:
    return sorted(_EXECUTORS)


def resolve_executor(name: str, **options: Any) -> Executor:
    """Instantiate the executor registered as ``name`` with ``options``."""
    target = _EXECUTORS.get(name)
    if target is None:
        raise ConfigError(f"unknown executor {name!r}; known executors: {', '.join(executor_names())}")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"executor {name!r} is not available: {exc}") from exc
    factory = getattr(module, attr)
    executor = factory(**options)
    if not isinstance(executor, Executor):
        raise ConfigError(f"executor {name!r} ({target}) does not implement run_step()")
    return executor
