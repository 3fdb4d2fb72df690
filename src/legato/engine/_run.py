"""The scheduler: one run of a compiled plan inside an anyio task group.

Every step is a task of the run's task group, started the moment its last
dependency finished. A finished step first publishes ``StepFinished`` (awaiting
async subscribers), then starts its ready dependents, so a durable subscriber has
committed a step before anything that needs it starts. Failures, cancellation and
the run deadline all act through the task group's cancel scope; nothing outlives
the run. How a single step is called (retries, timeouts, map, loops, cache,
executor) lives in :mod:`legato.engine._calls`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio
import anyio.abc

from legato.engine._bus import EventBus
from legato.engine._calls import StepCalls, bind_arguments
from legato.engine._context import SKIPPED, RunControl, StepScope
from legato.engine._events import (
    RunFinished,
    RunStarted,
    RunStatus,
    StepFailed,
    StepFinished,
    StepSkipped,
    StepStarted,
    StepStatus,
    StepWaiting,
)
from legato.engine._executor import Executor, StepCache
from legato.engine._journal import RunJournals, _journals
from legato.engine._plan import CompiledStep, Plan
from legato.engine._resources import RunResources
from legato.engine._resources import _current as _resources
from legato.engine._result import RunResult, StepTiming
from legato.engine._step import NO_DEFAULT
from legato.engine._wait import WaitForInput
from legato.errors import DeadlineExceeded, OutputNotStorable, RunCancelled, RunError, StepError
from legato.expressions import Expression
from legato.ledger import Ledger, _LazyChild
from legato.retry import RetryPolicy

__all__ = ["Run"]

try:
    from sniffio import current_async_library as _current_library
    from sniffio import current_async_library_cvar as _library_var
except ImportError:  # pragma: no cover - anyio then finds the running loop without sniffio
    _library_var = None  # type: ignore[assignment]

_LEDGER_KEYS = ("cost", "input_tokens", "output_tokens", "calls", "by_model")


class _Stop(Exception):
    """Internal: an event subscriber failed; the run stops."""


class Run:
    """One run of a plan: ``await Run(plan, inputs, run_id, **options).run(completed)``."""

    __slots__ = (
        "_calls",
        "bad",
        "bus",
        "bus_on",
        "clock",
        "condition_inputs",
        "control",
        "deadline",
        "executor",
        "failure_policy",
        "failures",
        "fast",
        "inputs",
        "ledger",
        "limiter",
        "outputs",
        "partial",
        "pipeline",
        "plan",
        "remaining",
        "retry",
        "run_error",
        "run_id",
        "scope",
        "skipped",
        "sleep",
        "step_cache",
        "step_ledgers",
        "stopping",
        "t0",
        "tg",
        "timings",
        "tolerated",
        "view",
        "waits",
    )

    def __init__(
        self,
        plan: Plan,
        inputs: dict[str, Any],
        run_id: str,
        *,
        pipeline: str,
        bus: EventBus,
        executor: Executor | None,
        step_cache: StepCache | None,
        deadline: float | None,
        control: RunControl | None,
        failure_policy: str,
        max_concurrency: int | None,
        retry: RetryPolicy | None,
        ledger: Ledger,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[Any]],
    ) -> None:
        self.plan = plan
        self.inputs = inputs
        self.condition_inputs = _with_defaults(plan, inputs)
        self.run_id = run_id
        self.pipeline = pipeline
        self.bus = bus
        self.bus_on = bool(bus)
        self.deadline = deadline
        self.control = control
        self.failure_policy = failure_policy
        self.ledger = ledger
        self.clock = clock
        self.outputs: dict[str, Any] = {}
        self.view: dict[str, Any] = {}  # outputs plus None for skipped steps (what references see)
        self.timings: dict[str, StepTiming] = {name: StepTiming() for name in plan.order}
        self.skipped: dict[str, str] = {}
        self.remaining: dict[str, int] = {}
        self.failures: list[StepError] = []
        self.tolerated: dict[str, StepError] = {}  # failures of continue_on_error steps
        self.waits: dict[str, dict[str, Any]] = {}  # wait steps asking for an answer
        self.run_error: RunError | None = None
        self.stopping = False
        self.bad = 0  # steps failed or skipped so far (while 0, no dependent needs a skip check)
        self.t0 = 0.0
        self.tg: anyio.abc.TaskGroup | None = None
        self.scope: anyio.CancelScope | None = None
        self.limiter = anyio.CapacityLimiter(max_concurrency) if max_concurrency else None
        self.executor = executor
        self.step_cache = step_cache
        self.retry = retry
        self.sleep = sleep
        self.step_ledgers: dict[str, _LazyChild] = {}
        self.partial: Mapping[str, Mapping[int, Any]] = {}
        # run-level conditions of the fast path (see CompiledStep.fast for the step-level ones)
        self.fast = executor is None and self.limiter is None and retry is None
        self._calls: StepCalls | None = None

    @property
    def calls(self) -> StepCalls:
        """How this run calls a step, built when a step first needs more than the plain
        path of :meth:`step` (most runs of plain async steps never do)."""
        calls = self._calls
        if calls is None:
            calls = self._calls = StepCalls(
                run_id=self.run_id,
                pipeline=self.pipeline,
                executor=self.executor,
                step_cache=self.step_cache,
                retry=self.retry,
                sleep=self.sleep,
                inputs=self.inputs,
                condition_inputs=self.condition_inputs,
                view=self.view,
                timings=self.timings,
                step_ledgers=self.step_ledgers,
                limiter=self.limiter,
                fast=self.fast,
                bus_on=self.bus_on,
                clock=self.clock,
                emit=self.emit if self.bus_on else _no_emit,  # dropped when the run ends
                partial=self.partial,
            )
        return calls

    # -- events -------------------------------------------------------------------
    async def emit(self, event: Any) -> None:
        try:
            await self.bus.publish(event)
        except OutputNotStorable:
            raise  # the step's output, not the subscriber, is at fault: the step fails
        except Exception as exc:
            if self.run_error is None:
                self.run_error = RunError(
                    f"event subscriber failed on {type(event).__name__}: {type(exc).__name__}: {exc}"
                )
                self.run_error.__cause__ = exc
            self.stop()
            raise _Stop from exc

    def stop(self) -> None:
        self.stopping = True
        if self.scope is not None:
            self.scope.cancel()

    # -- the run --------------------------------------------------------------------
    async def run(
        self,
        completed: Mapping[str, Any],
        map_items: Mapping[str, Mapping[int, Any]] | None = None,
        journals: Mapping[str, Sequence[Any]] | None = None,
    ) -> RunResult:
        """Run the plan; ``completed`` steps, ``map_items`` (finished items of map
        steps, by step and index) and ``journals`` (step journal entries, see
        :mod:`legato.engine._journal`) come from earlier attempts of the run."""
        self.t0 = self.clock()
        if map_items:
            self.partial = map_items
        ready = self._restore(completed) if completed else self._fresh()
        control = self.control
        # anyio asks sniffio which async library runs for every task, cancel scope and
        # event it creates. Under anyio.run the answer sits in sniffio's contextvar;
        # under a bare asyncio.run (uvicorn, say) each lookup inspects the running
        # task. Name the library once for the run, as anyio.run does for its loop.
        library_token = None
        if _library_var is not None and _library_var.get() is None:
            library_token = _library_var.set(_current_library())
        journals_token = _journals.set(RunJournals(self.run_id, self.emit if self.bus_on else None, journals or {}))
        resources = None if _resources.get() is not None else RunResources()  # a cycle's body shares its run's
        resources_token = _resources.set(resources) if resources is not None else None
        try:
            if self.bus_on:
                await self.emit(
                    RunStarted(
                        self.run_id, time.time(), self.pipeline, dict(self.inputs), resumed_steps=tuple(completed)
                    )
                )
            await self._steps(ready, control)
        except _Stop:
            pass
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self.finish(RunStatus.CANCELLED, RunCancelled("the run was cancelled by its caller"))
            raise
        finally:
            if self._calls is not None:  # the run is over: leave no run -> calls -> run cycle to the collector
                self._calls.emit = _no_emit
            _journals.reset(journals_token)
            if resources_token is not None:
                _resources.reset(resources_token)
            if resources:
                await resources.aclose()
            if control is not None:
                control._detach()
            if library_token is not None:
                _library_var.reset(library_token)
        return await self.finish(*self.outcome(control))

    def _fresh(self) -> tuple[str, ...]:
        """A run with nothing done yet: every step waits for all its dependencies."""
        self.remaining = dict(self.plan.dep_counts)
        return self.plan.roots

    def _restore(self, completed: Mapping[str, Any]) -> list[str]:
        """Take the ``completed`` steps of earlier attempts as done (or skipped); the
        steps whose dependencies are all among them are ready."""
        for name in completed:
            value = completed[name]
            t = self.timings[name]
            if value is SKIPPED:
                t.status = StepStatus.SKIPPED
                self.skipped[name] = "skipped in an earlier attempt of this run"
                self.view[name] = None
            else:
                t.status = StepStatus.SUCCEEDED
                self.outputs[name] = value
                self.view[name] = value
        self.bad = len(self.skipped)
        ready = []
        for name in self.plan.order:
            if name in completed:
                continue
            n = sum(1 for d in self.plan.steps[name].deps if d not in completed)
            self.remaining[name] = n
            if n == 0:
                ready.append(name)
        return ready

    async def _steps(self, ready: Sequence[str], control: RunControl | None) -> None:
        """Run the ``ready`` steps, and each step they make ready, in the run's task
        group (its cancel scope carries the deadline and the caller's control)."""
        async with anyio.create_task_group() as tg:
            self.tg = tg
            self.scope = scope = tg.cancel_scope
            if self.deadline is not None:
                scope.deadline = anyio.current_time() + self.deadline
            if control is not None:
                control._attach(scope)
            # The first ready step runs in this task; the others get their own.
            for name in ready[1:]:
                tg.start_soon(self.step, name, name=name)
            if ready:
                await self.step(ready[0])

    def outcome(self, control: RunControl | None) -> tuple[RunStatus, RunError | None, dict[str, Any]]:
        """How the run ended: its status, the error that decided it, and (when it
        succeeded) its result: the rendered pipeline outputs, or every step's output."""
        if self.run_error is not None:
            return RunStatus.FAILED, self.run_error, {}
        if self.failures and self.failure_policy == "fail_fast":
            return RunStatus.FAILED, self.failures[0], {}
        if control is not None and control.cancelled:
            return RunStatus.CANCELLED, RunCancelled(f"run {self.run_id} cancelled: {control.reason}"), {}
        if self.scope is not None and self.scope.cancelled_caught:
            deadline = DeadlineExceeded(f"run {self.run_id} exceeded its deadline of {self.deadline}s")
            return RunStatus.FAILED, deadline, {}
        if self.failures:
            return RunStatus.FAILED, self.failures[0], {}
        if self.waits:
            return RunStatus.WAITING, None, {}
        if not self.plan.outputs:
            return RunStatus.SUCCEEDED, None, self.outputs
        try:
            scope = {"inputs": self.inputs, "steps": self.view}
            return RunStatus.SUCCEEDED, None, {k: v.render(scope) for k, v in self.plan.outputs.items()}
        except Exception as exc:
            err = RunError(f"pipeline outputs could not be rendered: {exc}")
            err.__cause__ = exc
            return RunStatus.FAILED, err, {}

    def described(self, error: StepError) -> str:
        """``"ExceptionType: message"``, after ``"item N: "`` when a map item failed the step."""
        timing = self.timings.get(error.step)
        item = f"item {timing.failed_item}: " if timing is not None and timing.failed_item is not None else ""
        return f"{item}{error.error_type}: {error.message}"

    async def finish(
        self, status: RunStatus, error: RunError | None, result: dict[str, Any] | None = None
    ) -> RunResult:
        duration = self.clock() - self.t0
        failed_step = self.failures[0].step if self.failures else None
        if status is not RunStatus.SUCCEEDED:
            for t in self.timings.values():
                if t.status is StepStatus.RUNNING:
                    t.status = StepStatus.CANCELLED
        usage = self.ledger.summary()
        res = RunResult(
            status=status,
            run_id=self.run_id,
            pipeline=self.pipeline,
            outputs=self.outputs,
            result=result if result is not None and status is RunStatus.SUCCEEDED else {},
            timings=self.timings,
            duration_s=duration,
            error=None if error is None else f"{type(error).__name__}: {error}",
            exception=error,
            failed_step=failed_step if status is RunStatus.FAILED else None,
            skipped=self.skipped,
            errors={name: f"{e.error_type}: {e.message}" for name, e in self.tolerated.items()},
            failures={e.step: self.described(e) for e in self.failures},
            waiting=dict(self.waits),
            cost=usage["cost"],
            usage=usage,
        )
        if self.bus_on:
            event = RunFinished(
                self.run_id,
                time.time(),
                status,
                dict(res.outputs),
                duration,
                error=res.error,
                failed_step=res.failed_step,
            )
            try:
                await self.bus.publish(event)
            except Exception as exc:
                # The run's record may be incomplete: report the run as failed.
                error = RunError(f"event subscriber failed on RunFinished: {type(exc).__name__}: {exc}")
                error.__cause__ = exc
                if res.ok:
                    res.status, res.result = RunStatus.FAILED, {}
                    res.error, res.exception = f"RunError: {error}", error
        return res

    # -- one step -------------------------------------------------------------------
    async def step(self, name: str) -> None:
        """Run a step, then (in the same task) one dependent it made ready, and so on:
        a chain of steps costs one task, not one per step."""
        next_name: str | None = name
        steps = self.plan.steps
        scope = self.scope
        assert scope is not None
        # The common case, a plain async step (see CompiledStep.fast) in a run without
        # executor, limiter, default retry policy or subscribers, runs inline below:
        # the bookkeeping of execute() without events and without a coroutine of its own.
        plain = self.fast and not self.bus_on
        timings, clock, t0, ledger = self.timings, self.clock, self.t0, self.ledger
        inputs, view = self.inputs, self.view
        run_id, pipeline = self.run_id, self.pipeline
        try:
            while next_name is not None:
                if scope.cancel_called:
                    return  # cancelled, failed fast or past the deadline: start nothing new
                cs = steps[next_name]
                reason = self.skip_reason(cs) if self.bad and cs.deps else None
                if reason is None and cs.branch is not None:
                    reason = self.branch_reason(cs.branch)
                if reason is None and cs.d.when is not None:
                    try:
                        if not self.check_when(cs):
                            reason = f"condition {_when_text(cs)} is false"
                    except Exception as exc:
                        next_name = await self.failed(cs, exc, clock(), 1)
                        continue
                if reason is not None:
                    next_name = await self.skip(next_name, reason)
                    continue
                if not (plain and cs.fast):
                    next_name = await self.execute(cs)
                    continue
                timing = timings[next_name]
                timing.status = StepStatus.RUNNING
                timing.attempts = 1
                start = clock()
                timing.started = start - t0
                try:
                    with StepScope((run_id, pipeline, next_name, 1, None, None), _LazyChild(ledger, next_name)):
                        output = await cs.d.fn(**bind_arguments(cs.binds, inputs, view, None))
                except anyio.get_cancelled_exc_class():
                    timing.status = StepStatus.CANCELLED
                    timing.finished = clock() - t0
                    raise
                except Exception as exc:
                    next_name = await self.failed(cs, exc, start, 1)
                    continue
                timing.finished = clock() - t0
                timing.status = StepStatus.SUCCEEDED
                self.outputs[next_name] = output
                self.view[next_name] = output
                next_name = self.done(next_name)
        except _Stop:
            return

    def skip_reason(self, cs: CompiledStep) -> str | None:
        for dep in cs.deps:
            status = self.timings[dep].status
            if status is StepStatus.FAILED:
                if dep not in self.tolerated:
                    return f"upstream step {dep!r} failed"
                if self.plan.steps[dep].d.default is NO_DEFAULT and dep in cs.hard_deps:
                    return f"upstream step {dep!r} failed and declares no default"
            if status is StepStatus.SKIPPED and dep in cs.hard_deps:
                return f"upstream step {dep!r} was skipped"
        return None

    def branch_reason(self, branch: tuple[str, frozenset[str]]) -> str | None:
        """Why a step of a switch's case does not run (None when its case was chosen)."""
        switch, cases = branch
        chosen = self.view.get(switch)
        if chosen in cases:
            return None
        return f"switch {switch!r} chose case {chosen!r}"

    def check_when(self, cs: CompiledStep) -> bool:
        when = cs.d.when
        if isinstance(when, Expression):
            return bool(when.evaluate(self.calls.names()))
        assert when is not None
        return bool(when(**bind_arguments(cs.when_binds, self.inputs, self.view, None)))

    async def skip(self, name: str, reason: str) -> str | None:
        self.bad += 1
        self.timings[name].status = StepStatus.SKIPPED
        self.skipped[name] = reason
        self.view[name] = None
        if self.bus_on:
            await self.emit(StepSkipped(self.run_id, time.time(), name, reason))
        return self.done(name)

    def done(self, name: str) -> str | None:
        """Count ``name`` as finished for its dependents; start those now ready, except
        one which is returned for the caller to run in its own task."""
        if self.stopping:
            return None
        assert self.tg is not None
        remaining = self.remaining
        inline: str | None = None
        for dependent in self.plan.steps[name].dependents:
            n = remaining[dependent] - 1
            remaining[dependent] = n
            if n == 0:
                if inline is None:
                    inline = dependent
                else:
                    self.tg.start_soon(self.step, dependent, name=dependent)
        return inline

    async def execute(self, cs: CompiledStep) -> str | None:
        d = cs.d
        name = d.name
        timing = self.timings[name]
        timing.status = StepStatus.RUNNING
        bus_on = self.bus_on
        started_wall = time.time() if bus_on else 0.0
        start = self.clock()
        timing.started = start - self.t0
        self.step_ledgers[name] = step_ledger = _LazyChild(self.ledger, name)
        if bus_on:
            await self.emit(StepStarted(self.run_id, started_wall, name))
        try:
            if self.fast and cs.fast:
                # An async function with no options that need the general path,
                # without four layers of coroutine frames.
                timing.attempts = 1
                with StepScope((self.run_id, self.pipeline, name, 1, None, None), step_ledger):
                    output = await d.fn(**bind_arguments(cs.binds, self.inputs, self.view, None))
            else:
                output = await self.call(cs)
        except anyio.get_cancelled_exc_class():
            await self.cancelled(name, start, started_wall)
            raise
        except _Stop:
            raise
        except Exception as exc:
            return await self.failed(cs, exc, start, max(timing.attempts, 1), started_wall)
        end = self.clock()
        if bus_on:
            finished = StepFinished(
                self.run_id,
                time.time(),
                name,
                output,
                end - start,
                attempt=max(timing.attempts, 1),
                started_at=started_wall,
                meta=_ledger_meta(step_ledger),
            )
            try:
                await self.emit(finished)
            except OutputNotStorable as exc:
                return await self.failed(cs, exc, start, max(timing.attempts, 1), started_wall)
        timing.finished = end - self.t0
        timing.status = StepStatus.SUCCEEDED
        self.outputs[name] = output
        self.view[name] = output
        return self.done(name)

    async def cancelled(self, name: str, start: float, started_wall: float) -> None:
        """Record a step cancelled while it ran (and publish it, shielded from the cancel)."""
        timing = self.timings[name]
        timing.status = StepStatus.CANCELLED
        timing.finished = self.clock() - self.t0
        if self.bus_on:
            with anyio.CancelScope(shield=True):
                await self.emit(
                    StepFailed(
                        self.run_id,
                        time.time(),
                        name,
                        "Cancelled",
                        "the step was cancelled",
                        self.clock() - start,
                        attempt=max(timing.attempts, 1),
                        started_at=started_wall,
                        cancelled=True,
                    )
                )

    async def call(self, cs: CompiledStep) -> Any:
        """The output of a step that needs more than the plain path: a loop, a map, or
        attempts under a retry policy, timeout, cache, limiter or executor."""
        d = cs.d
        if d.loop is not None:
            return await self.calls.run_loop(cs)
        if d.map is not None:
            return await self.calls.run_map(cs, self.calls.bind(cs.binds, None))
        return await self.calls.attempts(cs, self.calls.bind(cs.binds, None), None, None)

    async def failed(
        self, cs: CompiledStep, exc: Exception, start: float, attempt: int, started_wall: float | None = None
    ) -> str | None:
        name = cs.d.name
        if isinstance(exc, WaitForInput):
            await self.wait(name, exc)
            return None
        self.bad += 1
        timing = self.timings[name]
        timing.status = StepStatus.FAILED
        timing.finished = self.clock() - self.t0
        error = StepError(name, exc)
        error.__cause__ = exc
        tolerated = cs.d.continue_on_error
        if tolerated:
            self.tolerated[name] = error
            default = cs.d.default
            self.view[name] = None if default is NO_DEFAULT else default
        else:
            self.failures.append(error)
        if self.bus_on:
            await self.emit(
                StepFailed(
                    self.run_id,
                    time.time(),
                    name,
                    type(exc).__name__,
                    str(exc),
                    self.clock() - start,
                    attempt=attempt,
                    started_at=started_wall if started_wall is not None else time.time(),
                    error=exc,
                    index=self.timings[name].failed_item,
                )
            )
        if self.failure_policy == "fail_fast" and not tolerated:
            self.stop()
            return None
        return self.done(name)

    async def wait(self, name: str, signal: WaitForInput) -> None:
        """A wait step asked for an answer: its dependents wait for it (they do not
        start in this run), everything else goes on; the run ends ``waiting``."""
        timing = self.timings[name]
        timing.status = StepStatus.WAITING
        timing.finished = self.clock() - self.t0
        request = signal.request.as_dict()
        self.waits[name] = request
        if self.bus_on:
            await self.emit(StepWaiting(self.run_id, time.time(), name, request))


def _ledger_meta(step_ledger: _LazyChild) -> dict[str, Any]:
    """What ``StepFinished.meta`` says of the step's model calls (nothing when it made none)."""
    used = step_ledger.ledger
    if used is None or not used.calls:
        return {}
    summary = used.summary()
    return {k: summary[k] for k in _LEDGER_KEYS}


def _when_text(cs: CompiledStep) -> str:
    when = cs.d.when
    if isinstance(when, Expression):
        return repr(when.source)
    return getattr(when, "__name__", repr(when))


def _with_defaults(plan: Plan, inputs: dict[str, Any]) -> dict[str, Any]:
    """What conditions see as ``inputs``: the given values, and for inputs inferred from
    parameters with defaults (the Python API) the default of the first such parameter."""
    missing = {n: d.default for n, d in plan.inputs.items() if not d.required and n not in inputs}
    return {**missing, **inputs} if missing else inputs


async def _no_emit(event: Any) -> None:
    """What a run without subscribers hands its step calls to publish with (they never do)."""
