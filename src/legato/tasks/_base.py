"""The contract every built-in local task follows, and the registry that shares them
(a :class:`legato._shared.Shared` table: its release joins each task's warm-up thread).

A task is cheap to construct: the constructor only stores options. The model is
loaded by :meth:`Task.warm_up` (explicitly, or on first use), exactly once, under a
lock, so that a task shared by many concurrent pipeline runs loads once and then
serves them all. Inference is synchronous and blocking (torch, spaCy, a tesseract
subprocess); :meth:`Task.run_batch` runs it in a worker thread so the event loop
never blocks. Calls into one task are serialised by the same lock: on a small CPU,
one model running one batch at a time is faster than several batches fighting for
the cores, and several *different* tasks still run side by side.

Every task works on batches (``list[input] -> list[output]``). For tasks that gain
from it (embeddings, entities, classification, sentiment) a single-item call goes
through a :class:`legato.batching.Batcher`, so the concurrent calls of a ``map`` or
of several pipeline runs coalesce into one model call. A batcher holds event-loop
primitives, so there is one per task and event loop.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from typing import Any, ClassVar, Generic, TypeVar

import anyio.lowlevel
import anyio.to_thread

from legato._shared import Shared
from legato.batching import Batcher
from legato.errors import ConfigError

__all__ = ["Task", "get", "names", "option_names", "register"]

InT = TypeVar("InT")
OutT = TypeVar("OutT")


class Task(ABC, Generic[InT, OutT]):
    """A local model behind a batch function.

    Subclasses implement :meth:`_load` (import the library, load the weights) and
    :meth:`_run` (one batch, the model loaded, the lock held). ``name`` is the
    registry name; ``model_name`` names the weights for reports. With ``batched``
    set, concurrent single-item calls are micro-batched (up to ``max_batch`` items,
    waiting at most ``max_wait_ms`` for the batch to fill).
    """

    name: ClassVar[str]
    batched: ClassVar[bool] = False
    max_batch: ClassVar[int] = 64
    max_wait_ms: ClassVar[float] = 5.0
    model_name: str = ""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = False
        self._batchers: weakref.WeakKeyDictionary[Any, Batcher[InT, OutT]] = weakref.WeakKeyDictionary()
        self._batchers_lock = threading.Lock()
        self._prefetching: threading.Thread | None = None
        self.prefetch_error: Exception | None = None

    @property
    def loaded(self) -> bool:
        return self._loaded

    def warm_up(self) -> None:
        """Load the model once (blocking; idempotent; safe from several threads)."""
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    def prefetch(self) -> None:
        """Start loading in a background thread, unless loaded or loading already.

        Returns at once. A caller that needs the model meanwhile waits for the
        load on the task's lock; a failed load is retried (and its error raised)
        by the next :meth:`warm_up`. Pipelines use it so that models load while
        earlier steps (OCR, say) still run.
        """
        if self._loaded or self._lock.locked():
            return
        with self._batchers_lock:
            if self._prefetching is not None and self._prefetching.is_alive():
                return
            self._prefetching = threading.Thread(target=self._prefetch, name=f"legato-warm-up:{self.name}", daemon=True)
            self._prefetching.start()

    def join_prefetch(self, timeout: float | None = None) -> None:
        """Wait for a warm-up started by :meth:`prefetch` to end (at most ``timeout`` seconds)."""
        thread = self._prefetching
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _prefetch(self) -> None:
        # A thread has no caller to raise to: keep the error for inspection; the next
        # warm_up() loads again and raises it to a caller who can act on it.
        try:
            self.warm_up()
        except Exception as exc:
            self.prefetch_error = exc

    async def awarm_up(self) -> None:
        """:meth:`warm_up` in a worker thread."""
        await anyio.to_thread.run_sync(self.warm_up)

    def run_sync(self, items: Sequence[InT]) -> list[OutT]:
        """Run one batch in the calling thread (blocking). Loads the model if needed."""
        batch = list(items)
        if not batch:
            return []
        self.warm_up()
        with self._lock:
            out = self._run(batch)
        if len(out) != len(batch):  # a broken subclass must not silently misalign results
            raise RuntimeError(f"task {self.name!r} returned {len(out)} results for {len(batch)} inputs")
        return out

    async def run_batch(self, items: Sequence[InT]) -> list[OutT]:
        """Run one batch in a worker thread."""
        return await anyio.to_thread.run_sync(self.run_sync, list(items))

    async def __call__(self, item: InT) -> OutT:
        """Run one item: micro-batched with concurrent calls when ``batched``."""
        if not self.batched:
            return (await self.run_batch([item]))[0]
        return await self._batcher()(item)

    def _batcher(self) -> Batcher[InT, OutT]:
        loop = anyio.lowlevel.current_token().native_token
        with self._batchers_lock:
            batcher = self._batchers.get(loop)
            if batcher is None:
                batcher = Batcher(
                    self.run_batch, max_batch=self.max_batch, max_wait_ms=self.max_wait_ms, name=f"task:{self.name}"
                )
                self._batchers[loop] = batcher
            return batcher

    @property
    def batches(self) -> int:
        """How many micro-batches this task's batchers have sent (all event loops)."""
        with self._batchers_lock:
            return sum(b.batches for b in self._batchers.values())

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _run(self, items: list[InT]) -> list[OutT]: ...

    def __repr__(self) -> str:
        state = "loaded" if self._loaded else "not loaded"
        return f"<{type(self).__name__} {self.name!r} {state}>"


_factories: dict[str, Callable[..., Task[Any, Any]]] = {}
_instances: Shared[tuple[str, Hashable], Task[Any, Any]] = Shared("built-in tasks", release=Task.join_prefetch)
_registry_lock = threading.Lock()


def register(name: str, factory: Callable[..., Task[Any, Any]]) -> None:
    """Make ``factory(**options)`` available as ``get(name, **options)``."""
    with _registry_lock:
        _factories[name] = factory


def names() -> list[str]:
    """The registered task names."""
    return sorted(_factories)


def option_names(name: str) -> list[str] | None:
    """The options task ``name`` takes (``None`` when it takes any keyword or is unknown)."""
    factory = _factories.get(name)
    if factory is None:
        return None
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sorted(p.name for p in params if p.kind in kinds)


def _freeze(value: Any) -> Hashable:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, set | frozenset):
        return tuple(sorted(_freeze(v) for v in value))  # type: ignore[type-var]
    return value  # type: ignore[no-any-return]


def get(name: str, **options: Any) -> Task[Any, Any]:
    """The shared task ``name`` configured with ``options``, created on first use.

    The same name and options always return the same object, so a model is loaded
    once per process however many pipelines and runs use it. Raises
    :class:`~legato.errors.ConfigError` for an unknown name or invalid options.
    """
    factory = _factories.get(name)
    if factory is None:
        known = ", ".join(sorted(_factories))
        raise ConfigError(f"unknown task {name!r}; known tasks: {known}")

    def build() -> Task[Any, Any]:
        try:
            return factory(**options)
        except TypeError as exc:
            raise ConfigError(f"task {name!r}: invalid options {sorted(options)}: {exc}") from exc

    return _instances.get((name, _freeze(options)), build)
