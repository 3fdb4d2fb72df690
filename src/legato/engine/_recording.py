"""Runs of a pipeline with a store: ``Pipeline(..., store=store).run(...)``, or any
run of a pipeline whose ``legato.yaml`` names a store (``store: {url: ...}``), is
recorded as ``legato run`` records it, so history, resume, the dashboard and the
journal see runs started from Python.

The engine does not import the store: ``store`` is any :class:`RunRecorder` (the
run store is one), whose ``record_run`` starts a durable run that calls
``pipeline.run`` again to execute it. While that happens the options the store
does not take (executor, step cache, deadline, ledger) wait in a context variable
and are applied to that inner call; runs started inside it (a cycle's body, a
pipeline a step runs) are not recorded again.

The configured store is found by :func:`configured_recorder`: the ``legato.yaml``
of the pipeline (the one it was loaded with, ``$LEGATO_CONFIG``, beside its file,
then in the current directory: :func:`legato.config.find_config`) is read here (a
leaf module) and, only when it has a ``store:`` section with a ``url``, the opener
registered with :func:`set_store_opener` (by import string, like executors; by
default the run store's) opens that store for the run and closes it after.
A pipeline without a ``legato.yaml`` looks once; nothing else is imported.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from legato.config import LegatoConfig, find_config
from legato.errors import ConfigError

if TYPE_CHECKING:
    from legato.engine._bus import Subscriber
    from legato.engine._context import RunControl
    from legato.engine._result import RunResult

__all__ = ["RunRecorder", "configured_recorder", "set_store_opener"]

StoreOpener = Callable[[LegatoConfig], contextlib.AbstractAsyncContextManager["RunRecorder"]]


@runtime_checkable
class RunRecorder(Protocol):
    """Where runs of a pipeline are recorded (:class:`legato.store.RunStore`)."""

    async def record_run(
        self,
        pipeline: Any,
        inputs: Mapping[str, Any],
        /,
        *,
        run_id: str | None = None,
        subscribers: Iterable[Subscriber] = (),
        control: RunControl | None = None,
    ) -> RunResult: ...


_pending: contextvars.ContextVar[tuple[Any, dict[str, Any]] | None] = contextvars.ContextVar(
    "legato_recording", default=None
)


def recorder_for(pipeline: Any, resuming: bool) -> contextlib.AbstractAsyncContextManager[RunRecorder] | None:
    """Where to record this run of ``pipeline``: its own store, else the store its
    ``legato.yaml`` names; None for a resume, a run inside a recorded run, or no store."""
    if resuming or _pending.get() is not None:
        return None
    if pipeline.store is not None:
        return contextlib.nullcontext(pipeline.store)
    return configured_recorder(pipeline)


_OPENER = "legato.store._configured:open_configured_store"
_configs: dict[Path, tuple[int, int, LegatoConfig | None]] = {}  # path -> (mtime, size, config with a store)


def set_store_opener(target: str | None) -> None:
    """Replace what opens the store a ``legato.yaml`` names for runs started from
    Python: ``"package.module:fn"`` (``fn(config)`` returns an async context manager
    yielding a :class:`RunRecorder`), or None to record such runs nowhere."""
    global _OPENER
    if target is not None and ":" not in target:
        raise ValueError(f"store opener must look like 'package.module:function', got {target!r}")
    _OPENER = target or ""


def configured_recorder(pipeline: Any) -> contextlib.AbstractAsyncContextManager[RunRecorder] | None:
    """The store ``pipeline``'s ``legato.yaml`` names (see the module docstring), not yet open.

    Where the file is (or that there is none) is looked up on the pipeline's first
    run and again when the working directory or ``$LEGATO_CONFIG`` changes; the file
    itself is read again when it changes."""
    if not _OPENER:
        return None
    key = (os.environ.get("LEGATO_CONFIG"), os.getcwd())
    looked_up = pipeline.config_lookup
    if looked_up is None or looked_up[0] != key:
        looked_up = pipeline.config_lookup = (key, find_config(pipeline.config_file, spec=_spec_file(pipeline.source)))
    config = _store_config(looked_up[1]) if looked_up[1] is not None else None
    if config is None:
        return None
    module, _, attr = _OPENER.partition(":")
    opener: StoreOpener = getattr(importlib.import_module(module), attr)
    return opener(config)


def _spec_file(source: str | None) -> str | None:
    """The file a pipeline came from: a YAML path, or the ``.py`` file of a reference."""
    if source is None:
        return None
    target, sep, _ = source.rpartition(":")
    if not sep:
        return source  # a YAML file
    return target if target.endswith(".py") else None  # a module reference has no file to look beside


def _store_config(path: Path) -> LegatoConfig | None:
    try:
        stat = os.stat(path)
    except OSError:
        raise ConfigError(f"config file not found: {path}") from None
    cached = _configs.get(path)
    if cached is not None and cached[:2] == (stat.st_mtime_ns, stat.st_size):
        return cached[2]
    config = LegatoConfig.load(path)
    raw = config.raw("store")
    with_store = config if isinstance(raw, Mapping) and raw.get("url") is not None else None
    _configs[path] = (stat.st_mtime_ns, stat.st_size, with_store)
    return with_store


@contextlib.contextmanager
def recording(pipeline: Any, options: dict[str, Any]) -> Iterator[None]:
    token = _pending.set((pipeline, options))
    try:
        yield
    finally:
        _pending.reset(token)


def pending_options(pipeline: Any) -> dict[str, Any]:
    """The options the recorded run of ``pipeline`` was started with, once."""
    pending = _pending.get()
    if pending is None or pending[0] is not pipeline or not pending[1]:
        return {}
    options = dict(pending[1])
    pending[1].clear()
    return options
