"""The ``ray`` executor: pipeline steps as Ray tasks, stateful steps as Ray actors.

Select it with ``executor: ray`` in YAML (options under ``executor_options:``) or
``Pipeline.run(..., executor=RayExecutor(address=...))``. The engine still owns the
graph, retries, timeouts, events and checkpoints; this executor only decides where
a step's function runs:

- **Plain steps** run as Ray tasks. Functions travel with cloudpickle; functions
  from modules that are not installed packages (a pipeline's ``./steps.py``, a
  test module) are pickled by value, so workers need not import them.
- **Stateful steps** — a step function that carries ``legato_actor = (factory,
  args)``, as the built-in ``task:`` steps do — run in a Ray actor built once per
  ``(factory, args)`` from ``factory(*args)``: a local model loads once per actor
  and the actor's concurrent calls are micro-batched by the task's own batcher.
- **Large values** stay in Ray's object store: a value a step returned is passed to
  dependent steps as the object reference it already has, not uploaded again.
- **Errors**: an exception raised by the step is re-raised as itself (the engine
  reports it as usual); a dead worker or node becomes :class:`legato.errors.WorkerLost`
  (retryable) after Ray's own task retries (``max_retries``) are used up, so
  ``retries:`` on the step still applies.
- **Cancellation and deadlines**: when the engine cancels a step (run cancelled,
  step timeout, run deadline) the Ray task is cancelled with ``ray.cancel``.
- **Resources**: a step's ``resources`` (``num_cpus``, ``num_gpus``, ``memory`` in
  bytes or with a unit such as ``"2GiB"``, custom resources) become Ray's options.
- **Accounting**: model calls made inside a worker are recorded on a ledger there
  and replayed on the step's ledger here, so costs and tokens reach the run; the
  calls' records (model, deployment, timings, prompt and answer) are kept there too
  and reported to the run here, so the run store's model-call view shows them. Both
  come back with the step's result: the calls of an attempt that failed in a worker
  are not recorded.

``import legato`` never imports Ray; this module imports it when an executor is
first used.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import sys
import sysconfig
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import anyio
import anyio.to_thread

from legato.engine import StepCall, StepContext, captured_model_calls, model_call_sink
from legato.engine._context import _reset_step, _set_step
from legato.errors import ConfigError, ExecutorError, WorkerLost
from legato.ledger import CallRecord, Ledger, current_ledger, use_ledger

__all__ = ["RayExecutor", "parse_memory"]

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3}
_UNITS |= {"kib": 1024, "mib": 1024**2, "gib": 1024**3, "ki": 1024, "mi": 1024**2, "gi": 1024**3}
_RESERVED = frozenset({"num_cpus", "num_gpus", "memory"})


def parse_memory(value: int | float | str) -> int:
    """Bytes from ``2147483648``, ``"2GiB"``, ``"512MB"`` or ``"1.5Gi"``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0:
            raise ConfigError(f"memory must be positive, got {value!r}")
        return int(value)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ConfigError(f"memory must be bytes or a size like '2GiB' or '512MB', got {value!r}")
    return int(float(match.group(1)) * _UNITS[unit])


class _CapturingLedger(Ledger):
    """A ledger in the worker that also keeps each call, to replay in the driver."""

    def __init__(self) -> None:
        super().__init__(name="ray-worker")
        self.records: list[CallRecord] = []

    def record(self, call: CallRecord) -> None:
        self.records.append(call)
        super().record(call)


Accounts = tuple[list[CallRecord], list[dict[str, Any]]]
"""What a worker hands back with a step's result: its ledger records and its model calls."""


def _execute(
    fn: Callable[..., Any], is_async: bool, kwargs: dict[str, Any], ctx: StepContext | None
) -> tuple[Any, Accounts]:
    ledger = _CapturingLedger()
    token = _set_step(ctx) if ctx is not None else None
    try:
        with use_ledger(ledger), captured_model_calls() as calls:
            result = asyncio.run(fn(**kwargs)) if is_async else fn(**kwargs)
    finally:
        if token is not None:
            _reset_step(token)
    return result, (ledger.records, calls)


def _run_task(
    fn: Callable[..., Any], is_async: bool, names: list[str], ctx: StepContext | None, *values: Any
) -> tuple[Any, Accounts]:
    """The body of every Ray task: arguments arrive resolved (object refs fetched)."""
    return _execute(fn, is_async, dict(zip(names, values, strict=True)), ctx)


class _StepActor:
    """Hosts one stateful step function (e.g. a local model) for many calls."""

    def __init__(self, factory: str, args: tuple[Any, ...]) -> None:
        module, _, attr = factory.partition(":")
        self.fn = getattr(importlib.import_module(module), attr)(*args)
        warm_up = getattr(self.fn, "warm_up", None)
        if callable(warm_up):
            warm_up()

    async def call(self, names: list[str], ctx: StepContext | None, *values: Any) -> tuple[Any, Accounts]:
        ledger = _CapturingLedger()
        token = _set_step(ctx) if ctx is not None else None
        try:
            with use_ledger(ledger), captured_model_calls() as calls:
                kwargs = dict(zip(names, values, strict=True))
                result = self.fn(**kwargs)
                if asyncio.iscoroutine(result):
                    result = await result
        finally:
            if token is not None:
                _reset_step(token)
        return result, (ledger.records, calls)


def _on_loopback(address: str | None) -> bool:
    if address is None:
        return True
    host = address.removeprefix("ray://").rsplit(":", 1)[0]
    return host == "localhost" or host.startswith("127.")


def _is_installed(module_name: str) -> bool:
    """True when workers can import the module by name (stdlib or site-packages)."""
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if module is None or file is None:
        return module is not None
    path = Path(file).resolve()
    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib", "platstdlib")}
    return any(path.is_relative_to(Path(root).resolve()) for root in roots)


class RayExecutor:
    """Run steps on a Ray cluster.

    Args:
        address: ``ray://host:port`` or ``host:port`` of an existing cluster, ``"auto"``
            for the one this machine belongs to, or None to start a local Ray on
            first use.
        num_cpus: CPUs of the local Ray started when ``address`` is None.
        max_retries: Ray's own retries of a task whose worker or node died.
        actor_max_concurrency: concurrent calls one stateful-step actor accepts
            (they are micro-batched inside the actor).
        actor_replicas: actors per stateful step (calls are spread round-robin), to
            use more than one core or node for one model.
        namespace, runtime_env: passed to ``ray.init``.
        ref_cache_size: how many step outputs to remember as object references.
        init_options: any other ``ray.init`` keyword arguments.

    Construction stores configuration only; Ray is initialised on the first step.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        max_retries: int = 3,
        actor_max_concurrency: int = 256,
        actor_replicas: int = 1,
        namespace: str | None = "legato",
        runtime_env: Mapping[str, Any] | None = None,
        ref_cache_size: int = 256,
        **init_options: Any,
    ) -> None:
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries!r}")
        if actor_replicas < 1:
            raise ConfigError(f"actor_replicas must be >= 1, got {actor_replicas!r}")
        self.address = address
        self.num_cpus = num_cpus
        self.max_retries = max_retries
        self.actor_max_concurrency = actor_max_concurrency
        self.actor_replicas = actor_replicas
        self.namespace = namespace
        self.runtime_env = dict(runtime_env or {})
        self.init_options = init_options
        self.ref_cache_size = ref_cache_size
        self._init_lock = threading.Lock()
        self._started_ray = False
        self._remote_task: Any = None
        self._actor_class: Any = None
        self._actors: dict[tuple[str, tuple[Any, ...]], list[Any]] = {}
        self._next_actor: dict[tuple[str, tuple[Any, ...]], int] = {}
        self._actor_lock = threading.Lock()
        # id(value) -> (value, ObjectRef): outputs already in the object store.
        self._refs: OrderedDict[int, tuple[Any, Any]] = OrderedDict()
        self._by_value: set[str] = set()

    # -- set-up ---------------------------------------------------------------------

    def _ensure_ray(self) -> Any:
        if _on_loopback(self.address) and "ray" not in sys.modules:
            # A Ray started here, or a cluster on 127.0.0.1, serves this machine only:
            # keep the driver on loopback (Ray otherwise resolves 127.0.0.1 to the
            # host's first network address).
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        import ray

        with self._init_lock:
            if not ray.is_initialized():
                options: dict[str, Any] = {
                    "namespace": self.namespace,
                    "ignore_reinit_error": True,
                    "log_to_driver": False,
                    "configure_logging": False,
                    **self.init_options,
                }
                if self.runtime_env:
                    options["runtime_env"] = self.runtime_env
                if self.address is None:
                    options.setdefault("include_dashboard", False)
                    if self.num_cpus is not None:
                        options["num_cpus"] = self.num_cpus
                else:
                    options["address"] = self.address
                try:
                    ray.init(**options)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    where = self.address or "a new local cluster"
                    raise ExecutorError(f"cannot connect to Ray at {where}: {exc}") from exc
                self._started_ray = True
            if self._remote_task is None:
                self._remote_task = ray.remote(_run_task)
                self._actor_class = ray.remote(_StepActor)
        return ray

    def _pickle_by_value(self, fn: Callable[..., Any]) -> None:
        module_name = getattr(fn, "__module__", None)
        if not module_name or module_name in self._by_value or module_name.startswith("legato."):
            return
        if not _is_installed(module_name):
            from ray import cloudpickle  # Ray's own copy is the one that pickles tasks

            module = sys.modules.get(module_name)
            if module is not None:
                cloudpickle.register_pickle_by_value(module)  # type: ignore[no-untyped-call]
        self._by_value.add(module_name)

    def _options(self, resources: Mapping[str, Any]) -> dict[str, Any]:
        options: dict[str, Any] = {"max_retries": self.max_retries, "retry_exceptions": False, "num_returns": 2}
        if "num_cpus" in resources:
            options["num_cpus"] = float(resources["num_cpus"])
        if "num_gpus" in resources:
            options["num_gpus"] = float(resources["num_gpus"])
        if "memory" in resources:
            options["memory"] = parse_memory(resources["memory"])
        custom = {k: float(v) for k, v in resources.items() if k not in _RESERVED}
        if custom:
            options["resources"] = custom
        return options

    def _actor(self, ray: Any, spec: tuple[str, tuple[Any, ...]], resources: Mapping[str, Any]) -> Any:
        with self._actor_lock:
            actors = self._actors.get(spec)
            if actors is None:
                options = self._options(resources)
                options.pop("retry_exceptions", None)
                options.pop("num_returns", None)
                options["max_restarts"] = options.pop("max_retries")
                options["max_task_retries"] = self.max_retries
                options["max_concurrency"] = self.actor_max_concurrency
                cls = self._actor_class.options(**options)
                actors = self._actors[spec] = [cls.remote(*spec) for _ in range(self.actor_replicas)]
            turn = self._next_actor.get(spec, 0)
            self._next_actor[spec] = turn + 1
            return actors[turn % len(actors)]

    # -- running a step -------------------------------------------------------------

    def _arguments(self, ray: Any, kwargs: Mapping[str, Any]) -> tuple[list[str], list[Any]]:
        names, values = [], []
        for name, value in kwargs.items():
            known = self._refs.get(id(value))
            names.append(name)
            values.append(known[1] if known is not None and known[0] is value else value)
        return names, values

    def _remember(self, value: Any, ref: Any) -> None:
        if value is None or isinstance(value, bool | int | float | str):
            return  # small and often interned: nothing to gain, and ids repeat
        self._refs[id(value)] = (value, ref)
        while len(self._refs) > self.ref_cache_size:
            self._refs.popitem(last=False)

    def _submit(self, call: StepCall) -> tuple[Any, Any]:
        """Submit the step; returns the object refs of (result, its :data:`Accounts`)."""
        ray = self._ensure_ray()
        names, values = self._arguments(ray, call.kwargs)
        ctx = StepContext(call.run_id, call.pipeline, call.step, call.attempt, call.index)
        actor_spec = getattr(call.fn, "legato_actor", None)
        if actor_spec is not None:
            factory, args = actor_spec
            actor = self._actor(ray, (str(factory), tuple(args)), call.resources)
            return cast("tuple[Any, Any]", actor.call.options(num_returns=2).remote(names, ctx, *values))
        self._pickle_by_value(call.fn)
        task = self._remote_task.options(**self._options(call.resources))
        return cast("tuple[Any, Any]", task.remote(call.fn, call.is_async, names, ctx, *values))

    async def run_step(self, call: StepCall) -> Any:
        if self._remote_task is None:  # first use: ray.init blocks for seconds
            ref, accounts_ref = await anyio.to_thread.run_sync(self._submit, call)
        else:
            ref, accounts_ref = self._submit(call)
        try:
            result = await ref
            records, calls = await accounts_ref
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._cancel, ref)
            raise
        except Exception as exc:
            raise _translate(exc, call) from None
        ledger = current_ledger()
        if ledger is not None:
            for record in records:
                ledger.record(record)
        sink = model_call_sink()
        if sink is not None:
            for made in calls:
                await sink(made)
        self._remember(result, ref)
        return result

    @staticmethod
    def _cancel(ref: Any) -> None:
        import ray

        try:
            ray.cancel(ref, force=False, recursive=True)
        except Exception:  # the task may be finished or its actor gone: nothing to cancel
            return

    def shutdown(self) -> None:
        """Release actors and, if this executor started a local Ray, stop it."""
        import ray

        with self._actor_lock:
            for actors in self._actors.values():
                for actor in actors:
                    ray.kill(actor)
            self._actors.clear()
            self._next_actor.clear()
        self._refs.clear()
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
            self._started_ray = False
            self._remote_task = self._actor_class = None

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r})"


def _translate(exc: BaseException, call: StepCall) -> BaseException:
    """A step's own exception comes back as itself; Ray's failures become ours."""
    import ray.exceptions as rex

    if isinstance(exc, rex.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            return cause
        return ExecutorError(f"step {call.step!r} failed on Ray: {exc}")
    lost = (rex.WorkerCrashedError, rex.NodeDiedError, rex.ObjectLostError, rex.RayActorError)
    if isinstance(exc, lost):
        return WorkerLost(f"step {call.step!r}: the Ray worker running it died ({type(exc).__name__})")
    if isinstance(exc, rex.TaskCancelledError):
        return ExecutorError(f"step {call.step!r} was cancelled by Ray")
    if isinstance(exc, rex.RayError):
        return ExecutorError(f"step {call.step!r} could not run on Ray: {type(exc).__name__}: {exc}")
    return exc
