"""How one step is called: binding arguments, map fan-out, loops, retries, timeouts,
the step cache and the executor. :class:`StepCalls` deals with a single step for the
run that owns it; ``_run.Run`` schedules steps and reports.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import pickle
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import anyio
import anyio.abc

from legato.engine._context import StepScope
from legato.engine._context import _current as _step_var
from legato.engine._events import MapItemFinished, StepRetried
from legato.engine._executor import Executor, StepCache, StepCall, run_in_engine
from legato.engine._plan import CARRY, INPUT, INPUT_OR_DEFAULT, STEP, VALUE, Bind, CompiledStep
from legato.engine._result import MapItemError, StepTiming
from legato.engine._step import StepDef
from legato.engine._wait import WaitForInput
from legato.errors import DeadlineExceeded
from legato.expressions import Expression
from legato.ledger import _LazyChild
from legato.retry import RetryPolicy

__all__ = ["StepCalls", "bind_arguments", "cache_key"]


class StepCalls:
    """How the steps of one run are called. The run owns one and hands it its own
    ``inputs``, ``view``, ``timings`` and ``step_ledgers`` (shared, not copied) and
    ``emit`` (publishes an event to the run's subscribers)."""

    __slots__ = (
        "bus_on",
        "clock",
        "condition_inputs",
        "emit",
        "executor",
        "fast",
        "inputs",
        "limiter",
        "partial",
        "pipeline",
        "retry",
        "run_id",
        "sleep",
        "step_cache",
        "step_ledgers",
        "timings",
        "view",
    )

    def __init__(
        self,
        *,
        run_id: str,
        pipeline: str,
        executor: Executor | None,
        step_cache: StepCache | None,
        retry: RetryPolicy | None,
        sleep: Callable[[float], Awaitable[Any]],
        inputs: dict[str, Any],
        condition_inputs: dict[str, Any],
        view: dict[str, Any],
        timings: dict[str, StepTiming],
        step_ledgers: dict[str, _LazyChild],
        limiter: anyio.CapacityLimiter | None,
        fast: bool,
        bus_on: bool,
        clock: Callable[[], float],
        emit: Callable[[Any], Awaitable[None]],
        partial: Mapping[str, Mapping[int, Any]],
    ) -> None:
        self.run_id = run_id
        self.pipeline = pipeline
        self.executor = executor
        self.step_cache = step_cache
        self.retry = retry
        self.sleep = sleep
        self.inputs = inputs
        self.condition_inputs = condition_inputs  # inputs with the defaults conditions see
        self.view = view
        self.timings = timings
        self.step_ledgers = step_ledgers
        self.limiter = limiter
        self.fast = fast
        self.bus_on = bus_on
        self.clock = clock
        self.emit = emit
        self.partial = partial  # map items finished by an earlier attempt, by step

    def names(self, **extra: Any) -> dict[str, Any]:
        inputs = self.condition_inputs
        return {**inputs, **self.view, "inputs": inputs, "steps": self.view, **extra}

    def bind(self, binds: tuple[Bind, ...], carry: Any) -> dict[str, Any]:
        return bind_arguments(binds, self.inputs, self.view, carry)

    async def run_map(self, cs: CompiledStep, kwargs: dict[str, Any]) -> list[Any]:
        d = cs.d
        assert d.map is not None
        items = kwargs[d.map]
        if not isinstance(items, list | tuple):
            raise TypeError(f"map parameter {d.map!r} must be a list, got {type(items).__name__}")
        results, todo = self._map_todo(d.name, items)
        if not todo:
            return results
        it = iter(todo)
        collect = d.map_errors == "collect"
        fast = self.fast and d.is_async and d.retry is None and d.timeout is None and not d.cache and not collect
        errors: list[Exception] = []

        async def worker(tg: anyio.abc.TaskGroup) -> None:
            # The first failing item fails the step with its own exception (not an
            # ExceptionGroup); the other items are cancelled.
            try:
                if fast:
                    await self._fast_items(cs, it, dict(kwargs), results)
                else:
                    await self._items(cs, it, dict(kwargs), results, collect)
            except Exception as exc:
                errors.append(exc)
                tg.cancel_scope.cancel()

        workers = min(len(todo), d.max_concurrency or len(todo))
        with StepScope(None, self.step_ledgers[d.name]):  # the workers inherit the ledger
            async with anyio.create_task_group() as tg:
                for _ in range(workers):
                    tg.start_soon(worker, tg, name=d.name)
        if errors:
            raise errors[0]
        return results

    def _map_todo(self, step: str, items: Sequence[Any]) -> tuple[list[Any], list[tuple[int, Any]]]:
        """The results list of a map step, holding the items an earlier attempt of the
        run committed (they are not called again), and the ``(index, item)`` pairs left."""
        results: list[Any] = [None] * len(items)
        done = self.partial.get(step) if self.partial else None
        if not done:
            return results, list(enumerate(items))
        for index, value in done.items():
            if 0 <= index < len(results):
                results[index] = value
        return results, [(i, item) for i, item in enumerate(items) if i not in done]

    async def _items(
        self, cs: CompiledStep, it: Iterator[tuple[int, Any]], kwargs: dict[str, Any], results: list[Any], collect: bool
    ) -> None:
        """One worker of a map step: the items it takes from ``it``, each through the
        step's retry, timeout and cache layers (``collect``: a failed item's error is
        its result). Each finished item is published (and checkpointed) before the next."""
        d = cs.d
        param, timing, report = d.map, self.timings[d.name], self.bus_on
        assert param is not None
        tries = [1]  # the attempt that returned this item's result
        for index, item in it:
            started = self.clock()
            try:
                out = await self.attempts(cs, {**kwargs, param: item}, index, None, tries)
            except Exception as exc:
                if not collect:
                    if timing.failed_item is None:
                        timing.failed_item = index
                    raise
                out = MapItemError(index, type(exc).__name__, str(exc))
            results[index] = out
            if report:
                await self.item_done(d.name, index, out, tries[0], started)

    async def _fast_items(
        self, cs: CompiledStep, it: Iterator[tuple[int, Any]], kwargs: dict[str, Any], results: list[Any]
    ) -> None:
        """One worker of a map step on the fast path: the item call without the retry,
        timeout and cache layers. Each worker is a task with its own copy of the
        context, dropped when the worker ends, so the step context is set per item and
        never reset; ``kwargs`` is the worker's own copy of the arguments."""
        d = cs.d
        param, timing, report = d.map, self.timings[d.name], self.bus_on
        assert param is not None
        timing.attempts = 1
        fn, run_id, pipeline, name = d.fn, self.run_id, self.pipeline, d.name
        set_step = _step_var.set
        for index, item in it:
            kwargs[param] = item
            set_step((run_id, pipeline, name, 1, index, None))
            try:
                if not report:
                    results[index] = await fn(**kwargs)
                    continue
                started = self.clock()
                results[index] = out = await fn(**kwargs)
            except Exception:
                if timing.failed_item is None:
                    timing.failed_item = index  # the item named in the step's error
                raise
            await self.item_done(name, index, out, 1, started)

    async def item_done(self, step: str, index: int, output: Any, attempt: int, started: float) -> None:
        await self.emit(MapItemFinished(self.run_id, time.time(), step, index, output, attempt, self.clock() - started))

    async def run_loop(self, cs: CompiledStep) -> Any:
        loop = cs.d.loop
        assert loop is not None
        previous: Any = None
        for iteration in range(1, loop.max_iterations + 1):
            carry = {"previous": previous, "iteration": iteration}
            output = await self.attempts(cs, self.bind(cs.binds, carry), None, iteration)
            if self.until(cs, output, previous, iteration):
                return output
            previous = output
        if loop.on_max_iterations == "fail":
            raise RuntimeError(f"loop did not meet its until condition within {loop.max_iterations} iterations")
        return previous

    def until(self, cs: CompiledStep, output: Any, previous: Any, iteration: int) -> bool:
        loop = cs.d.loop
        assert loop is not None
        extra = {"output": output, "previous": previous, "iteration": iteration, cs.d.name: output}
        if isinstance(loop.until, Expression):
            return bool(loop.until.evaluate(self.names(**extra)))
        scope = self.names(**extra)
        params = _signature_params(loop.until)
        return bool(loop.until(**{p: scope.get(p) for p in params}))

    async def attempts(
        self,
        cs: CompiledStep,
        kwargs: dict[str, Any],
        index: int | None,
        iteration: int | None,
        tries: list[int] | None = None,
    ) -> Any:
        """The step's call under its retry policy; ``tries[0]`` is set to the attempt that returned."""
        d = cs.d
        policy = d.retry if d.retry is not None else self.retry
        timing = self.timings[d.name]
        first = self.clock()
        attempt = 0
        while True:
            attempt += 1
            if attempt > timing.attempts:
                timing.attempts = attempt
            try:
                result = await self.attempt(cs, kwargs, attempt, index, iteration)
            except WaitForInput:
                raise  # not a failure: nothing to retry
            except Exception as exc:
                delay = None if policy is None else policy.next_delay(attempt, exc, self.clock() - first)
                if delay is None:
                    raise
                if self.bus_on:
                    await self.emit(
                        StepRetried(
                            self.run_id, time.time(), d.name, attempt, delay, type(exc).__name__, str(exc), index
                        )
                    )
                await self.sleep(delay)
            else:
                if tries is not None:
                    tries[0] = attempt
                return result

    async def attempt(
        self, cs: CompiledStep, kwargs: dict[str, Any], attempt: int, index: int | None, iteration: int | None
    ) -> Any:
        d = cs.d
        with StepScope((self.run_id, self.pipeline, d.name, attempt, index, iteration), self.step_ledgers[d.name]):
            key = None
            cache = self.step_cache
            if d.cache and cache is not None:
                key = cache_key(self.pipeline, d.name, d.code_version, kwargs)
                hit, value = await cache.get(key)
                if hit:
                    return value
            if self.limiter is not None:
                async with self.limiter:
                    result = await self.call(d, kwargs, attempt, index)
            else:
                result = await self.call(d, kwargs, attempt, index)
            if key is not None and cache is not None:
                await cache.put(key, result)
            return result

    async def call(self, d: StepDef, kwargs: dict[str, Any], attempt: int, index: int | None) -> Any:
        if d.timeout is None:
            return await self.invoke(d, kwargs, attempt, index)
        try:
            with anyio.fail_after(d.timeout):
                return await self.invoke(d, kwargs, attempt, index)
        except TimeoutError as exc:
            if isinstance(exc, DeadlineExceeded):
                raise
            raise DeadlineExceeded(f"step {d.name!r} timed out after {d.timeout:g}s") from None

    async def invoke(self, d: StepDef, kwargs: dict[str, Any], attempt: int, index: int | None) -> Any:
        executor = self.executor
        if executor is None:
            if d.is_async:
                return await d.fn(**kwargs)
            return await anyio.to_thread.run_sync(lambda: d.fn(**kwargs), abandon_on_cancel=True)
        if getattr(d.fn, "runs_in_engine", False):
            return await run_in_engine(d.fn, kwargs, executor)
        call = StepCall(
            fn=d.fn,
            kwargs=kwargs,
            step=d.name,
            run_id=self.run_id,
            is_async=d.is_async,
            resources=d.resources,
            pipeline=self.pipeline,
            attempt=attempt,
            index=index,
        )
        return await executor.run_step(call)


def bind_arguments(
    binds: tuple[Bind, ...], inputs: Mapping[str, Any], view: Mapping[str, Any], carry: Any
) -> dict[str, Any]:
    """A step's keyword arguments: each parameter bound to an input, a step's output
    (``view``), a ``${...}`` value or a loop's previous output (``carry``)."""
    kwargs: dict[str, Any] = {}
    scope: dict[str, Any] | None = None
    for param, kind, payload in binds:
        if kind == STEP:
            kwargs[param] = view.get(payload)
        elif kind == INPUT:
            kwargs[param] = inputs[param]
        elif kind == INPUT_OR_DEFAULT:
            kwargs[param] = inputs.get(param, payload)
        elif kind == VALUE:
            if scope is None:
                scope = {"inputs": inputs, "steps": view, "loop": carry}
            kwargs[param] = payload.render(scope)
        elif kind == CARRY:
            kwargs[param] = carry["previous"] if carry else None
    return kwargs


def _signature_params(fn: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(fn).parameters)


def cache_key(pipeline: str, step: str, version: str, kwargs: Mapping[str, Any]) -> str:
    """sha256 of (pipeline, step, code version, canonical inputs): JSON with sorted
    keys, falling back to pickle for values JSON cannot encode."""
    head = json.dumps([pipeline, step, version]).encode()
    try:
        body = json.dumps(kwargs, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()
    except (TypeError, ValueError):
        body = b"pickle:" + pickle.dumps(dict(sorted(kwargs.items())), protocol=5)
    return hashlib.sha256(head + b"\0" + body).hexdigest()
