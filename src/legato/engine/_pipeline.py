"""The :class:`Pipeline`: declare steps in Python (or load them from YAML), run them."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import anyio

from legato._runid import new_run_id
from legato.engine._bus import EventBus, Subscriber
from legato.engine._context import RunControl
from legato.engine._events import Event
from legato.engine._executor import Executor, StepCache, resolve_executor
from legato.engine._plan import Plan, compile_plan
from legato.engine._recording import RunRecorder, pending_options, recorder_for, recording
from legato.engine._result import RunResult
from legato.engine._run import Run
from legato.engine._step import InputDecl, LoopOptions, StepDef, make_step
from legato.errors import InputError, SpecError, SpecIssue
from legato.expressions import Value, closest, compile_expression, compile_value
from legato.ledger import Ledger
from legato.retry import RetryPolicy

__all__ = ["FailurePolicy", "Pipeline"]

FailurePolicy = Literal["fail_fast", "continue"]
StepFn = Callable[..., Any]


class Pipeline:
    """A graph of steps. Steps whose inputs are ready run at once.

    Args:
        name: the pipeline's name (events, cache keys and the store use it).
        max_concurrency: at most this many step calls (map items count one each) run
            at the same time in one run; None = no limit.
        failure_policy: ``"fail_fast"`` cancels the run at the first failed step;
            ``"continue"`` skips the failed step's dependents and lets independent
            branches finish.
        retry: default :class:`~legato.retry.RetryPolicy` for steps without their own.
        deadline: seconds a run may take in total (a run may override it).
        inputs: declared inputs (name -> :class:`InputDecl` or a Python type); when
            omitted, inputs are inferred from step parameters that name no step.
        outputs: declared outputs, name -> value with ``${...}`` references,
            rendered into :attr:`RunResult.result`.
        executor: default executor for runs (see :class:`~legato.engine.Executor`).
        store: where :meth:`run` records runs (a :class:`legato.store.RunStore`, open):
            each run is stored, checkpointed and resumable as with ``legato run``.
            Without one, runs are recorded in the store ``legato.yaml`` names
            (``store: {url: ...}``), opened for the run and closed after it.
        clock, sleep: injected monotonic clock and sleep (virtual time in tests).
    """

    def __init__(
        self,
        name: str,
        *,
        max_concurrency: int | None = None,
        failure_policy: FailurePolicy = "fail_fast",
        retry: RetryPolicy | None = None,
        deadline: float | None = None,
        inputs: Mapping[str, InputDecl | type | None] | None = None,
        outputs: Mapping[str, Any] | None = None,
        executor: Executor | None = None,
        store: RunRecorder | None = None,
        description: str = "",
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], Awaitable[Any]] = anyio.sleep,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("a pipeline needs a non-empty name")
        if failure_policy not in ("fail_fast", "continue"):
            raise ValueError(f"failure_policy must be 'fail_fast' or 'continue', got {failure_policy!r}")
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
        if deadline is not None and deadline <= 0:
            raise ValueError(f"deadline must be > 0 seconds, got {deadline!r}")
        self.name = name
        self.max_concurrency = max_concurrency
        self.failure_policy: FailurePolicy = failure_policy
        self.retry = retry
        self.deadline = deadline
        self.executor = executor
        self.description = description
        self.store = store
        self.clock = clock
        self.sleep = sleep
        self.spec: Any = None  # the PipelineSpec when loaded from YAML
        self.source: str | None = None  # the file it was loaded from
        self.config_file: str | None = None  # the legato.yaml it was loaded with (where its store is named)
        self.config_lookup: tuple[Any, Path | None] | None = None  # where legato.yaml was found, and when
        self.executor_name: str | None = None  # resolved on first run (YAML `executor:`)
        self.executor_options: dict[str, Any] = {}
        self._inputs: dict[str, InputDecl] | None = None if inputs is None else _declare_inputs(inputs)
        self._outputs: dict[str, Value] = {k: compile_value(v) for k, v in (outputs or {}).items()}
        self._steps: dict[str, StepDef] = {}
        self._plan: Plan | None = None

    # -- declaring steps -----------------------------------------------------------
    @overload
    def step(self, fn: StepFn, /) -> StepFn: ...

    @overload
    def step(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        timeout: float | None = None,
        retries: int | RetryPolicy | None = None,
        when: str | Callable[..., Any] | None = None,
        map: str | None = None,
        max_concurrency: int | None = None,
        optional: Iterable[str] = (),
        cache: bool = False,
        version: str | None = None,
        resources: Mapping[str, Any] | None = None,
        estimate_ms: float | None = None,
        continue_on_error: bool = False,
        default: Any = ...,
        map_errors: Literal["fail", "collect"] = "fail",
    ) -> Callable[[StepFn], StepFn]: ...

    def step(self, fn: StepFn | None = None, /, **options: Any) -> Any:
        """Register a function as a step (``@p.step`` or ``@p.step(...)``); returns it unchanged.

        Options: ``name``, ``timeout`` (seconds per attempt), ``retries`` (int = extra
        attempts on any exception, or a RetryPolicy), ``when`` (expression string or
        callable; false = skipped), ``map`` (parameter to fan out over: the step runs
        once per item and returns the list of results), ``max_concurrency`` (of map
        items), ``optional`` (parameters that receive None when their step was
        skipped), ``cache``, ``version``, ``resources``, ``estimate_ms``,
        ``continue_on_error`` (a failure is recorded in :attr:`RunResult.errors` and
        the run goes on: dependents receive ``default`` when one is given and are
        skipped otherwise), ``map_errors`` (``"collect"``: a failed item becomes a
        :class:`~legato.engine.MapItemError` in the step's list instead of failing it).
        """
        if fn is not None:
            self.add_step(fn)
            return fn

        def decorate(f: StepFn) -> StepFn:
            self.add_step(f, **options)
            return f

        return decorate

    def loop(
        self,
        fn: StepFn | None = None,
        /,
        *,
        until: str | Callable[..., Any],
        max_iterations: int,
        carry: str = "previous",
        on_max_iterations: Literal["return", "fail"] = "return",
        **options: Any,
    ) -> Any:
        """Register a bounded loop step: the function runs again until ``until`` is
        true or ``max_iterations`` is reached.

        The parameter named ``carry`` (default ``previous``) receives the previous
        iteration's output (None the first time); ``current_step().iteration`` is the
        1-based iteration. ``until`` is an expression over ``output`` (this
        iteration's result), ``previous``, ``iteration``, inputs and steps, or a
        callable taking any of those names. The step's output is the last output
        (``on_max_iterations="fail"`` fails the step instead when the bound is hit).
        """
        if isinstance(max_iterations, bool) or not isinstance(max_iterations, int) or max_iterations < 1:
            raise ValueError(f"max_iterations must be an int >= 1, got {max_iterations!r}")
        if on_max_iterations not in ("return", "fail"):
            raise ValueError(f"on_max_iterations must be 'return' or 'fail', got {on_max_iterations!r}")
        loop = LoopOptions(
            until=compile_expression(until) if isinstance(until, str) else until,
            max_iterations=max_iterations,
            carry=carry,
            on_max_iterations=on_max_iterations,
        )

        def decorate(f: StepFn) -> StepFn:
            self.add_step(f, loop=loop, **options)
            return f

        return decorate(fn) if fn is not None else decorate

    def cycle(
        self,
        name: str,
        body: Pipeline,
        *,
        max_iterations: int,
        until: str | Callable[..., Any] | None = None,
        on_max_iterations: Literal["return", "fail"] = "return",
        **options: Any,
    ) -> StepDef:
        """Add a step that runs the steps of ``body`` again and again: until ``until``
        holds or ``max_iterations`` is reached (a cycle always has a bound).

        Each iteration runs ``body`` with the inputs ``previous`` (the previous
        iteration's step outputs, None the first time) and ``iteration`` (from 1);
        its other inputs are the cycle step's parameters, bound like any step's
        (``args=`` maps them). ``until`` is an expression (or callable) over
        ``steps`` (this iteration's outputs, also by bare name), ``previous``,
        ``iteration`` and ``inputs``. The step's output is the last iteration's step
        outputs (or ``body``'s declared outputs); ``on_max_iterations="fail"`` fails
        the step instead when the bound is hit before ``until`` held. In a run with
        the run store, every inner step is checkpointed: a resume continues at the
        iteration (and the step) it was in.
        """
        from legato.engine._flow import Cycle

        flow = Cycle(body, until=until, max_iterations=max_iterations, on_max_iterations=on_max_iterations)
        options.setdefault("description", body.description or f"cycle over {', '.join(body.steps)}")
        return self.add_step(flow, name=name, **options)

    def switch(
        self,
        name: str,
        on: str,
        cases: Mapping[Any, str | Sequence[str]],
        *,
        default: str | Sequence[str] | None = None,
        **options: Any,
    ) -> StepDef:
        """Add a step that evaluates ``on`` (``${...}`` or a bare expression) and runs
        the steps of exactly one case: ``cases`` maps a value to a step name or a list
        of them, ``default`` runs when no case matches (without one the switch step
        fails). The steps of the other cases are skipped with the reason; the switch
        step's output is the case it chose (``"default"`` for the default)."""
        from legato.engine._flow import Switch

        flow = Switch(name, cases, default, on=on)
        value = on if "${" in on else "${" + on + "}"
        options.setdefault("description", f"switch on {on}")
        return self.add_step(flow, name=name, args={"value": value}, **options)

    def add_step(self, fn: StepFn, **options: Any) -> StepDef:
        """Add a step programmatically (what the decorators and the YAML loader use).

        Besides the decorator options it accepts ``args`` (parameter -> value with
        ``${...}`` references), ``depends_on`` (extra step names to wait for),
        ``loop`` (:class:`LoopOptions`) and ``description``.
        """
        options = dict(options)
        if "optional" in options:
            options["optional"] = tuple(options["optional"])
        step = make_step(fn, **options)
        if step.name in self._steps:
            raise SpecError([SpecIssue(f"duplicate step name {step.name!r}", path=f"steps.{step.name}")])
        self._steps[step.name] = step
        self._plan = None
        return step

    def add_output(self, name: str, value: Any) -> None:
        """Declare an output: ``value`` may hold ``${...}`` references (see :attr:`RunResult.result`)."""
        self._outputs[name] = compile_value(value)
        self._plan = None

    # -- introspection -------------------------------------------------------------
    @property
    def steps(self) -> Mapping[str, StepDef]:
        return dict(self._steps)

    @property
    def inputs(self) -> dict[str, InputDecl]:
        """The pipeline's inputs (declared, or inferred from step parameters)."""
        return dict(self.compile().inputs)

    def validate(self) -> list[SpecIssue]:
        """Every problem in the graph (cycles, unknown references, ...); empty when valid."""
        if self._plan is not None:
            return []
        plan, issues = compile_plan(self._steps, self._inputs, self._outputs)
        if plan is not None:
            self._plan = plan
        return issues

    def compile(self) -> Plan:
        """The execution plan; raises :class:`~legato.errors.SpecError` listing every problem."""
        if self._plan is None:
            issues = self.validate()
            if issues:
                raise SpecError(issues)
        assert self._plan is not None
        return self._plan

    # -- running -------------------------------------------------------------------
    async def run(
        self,
        inputs: Mapping[str, Any] | None = None,
        /,
        *,
        run_id: str | None = None,
        completed: Mapping[str, Any] | None = None,
        map_items: Mapping[str, Mapping[int, Any]] | None = None,
        journals: Mapping[str, Sequence[Any]] | None = None,
        subscribers: Iterable[Subscriber] = (),
        executor: Executor | None = None,
        step_cache: StepCache | None = None,
        deadline: float | None = None,
        control: RunControl | None = None,
        ledger: Ledger | None = None,
        **input_kwargs: Any,
    ) -> RunResult:
        """Run the pipeline once and return its :class:`RunResult` (never raises for a
        failed step: check ``result.status`` or call ``raise_for_status()``).

        Raises :class:`~legato.errors.SpecError` for an invalid graph and
        :class:`~legato.errors.InputError` for missing, unknown or mistyped inputs,
        before any step runs.

        ``completed`` maps steps finished by an earlier attempt of the same run to
        their outputs (``SKIPPED`` for a skipped step); they are not run again.
        ``map_items`` maps a map step to the items (index -> output) an earlier
        attempt finished: only the other items run.
        ``journals`` maps :func:`~legato.engine.journal_key` to the entries steps
        recorded with :func:`~legato.engine.step_journal` in an earlier attempt.
        ``ledger`` is a parent for the run's usage ledger (e.g. a budget's).
        """
        recorder = recorder_for(self, completed is not None or map_items is not None or journals is not None)
        if recorder is not None:
            options = {"executor": executor, "step_cache": step_cache, "deadline": deadline, "ledger": ledger}
            given = {**inputs, **input_kwargs} if inputs else input_kwargs
            async with recorder as store:
                with recording(self, {k: v for k, v in options.items() if v is not None}):
                    return await store.record_run(self, given, run_id=run_id, subscribers=subscribers, control=control)
        pending = pending_options(self)
        if pending:
            executor = executor if executor is not None else pending.get("executor")
            step_cache = step_cache if step_cache is not None else pending.get("step_cache")
            deadline = deadline if deadline is not None else pending.get("deadline")
            ledger = ledger if ledger is not None else pending.get("ledger")
        plan = self._plan if self._plan is not None else self.compile()
        values = self._check_inputs(plan, {**inputs, **input_kwargs} if inputs else input_kwargs)
        done = dict(completed) if completed else {}
        unknown = [s for s in done if s not in plan.steps]
        if unknown:
            raise InputError(f"completed= names unknown step(s): {', '.join(map(repr, unknown))}")
        unmapped = [s for s in map_items or () if s not in plan.steps or plan.steps[s].d.map is None]
        if unmapped:
            raise InputError(f"map_items= names step(s) that are not map steps: {', '.join(map(repr, unmapped))}")
        run_id = run_id or new_run_id()
        return await Run(
            plan,
            values,
            run_id,
            pipeline=self.name,
            bus=subscribers if isinstance(subscribers, EventBus) else EventBus(subscribers) if subscribers else _NO_BUS,
            executor=executor if executor is not None else self._default_executor(),
            step_cache=step_cache,
            deadline=deadline if deadline is not None else self.deadline,
            control=control,
            failure_policy=self.failure_policy,
            max_concurrency=self.max_concurrency,
            retry=self.retry,
            ledger=ledger.child(run_id) if ledger is not None else Ledger(name=run_id),
            clock=self.clock,
            sleep=self.sleep,
        ).run(done, map_items, journals)

    async def stream(
        self, inputs: Mapping[str, Any] | None = None, /, *, subscribers: Iterable[Subscriber] = (), **options: Any
    ) -> AsyncIterator[Event]:
        """Run the pipeline and yield its events as they happen: :class:`RunStarted`,
        ``StepStarted``, :class:`StepToken` (text from a model step, as it arrives),
        ``StepFinished`` ... and last :class:`RunFinished`. Takes :meth:`run`'s
        arguments. Leaving the loop early cancels the run; do that inside
        ``contextlib.aclosing(pipeline.stream(...))`` so it happens at once."""
        from legato.engine._tokens import stream_events

        given = list(subscribers)

        def run(forward: list[Callable[[Event], None]]) -> Awaitable[RunResult]:
            return self.run(inputs, subscribers=[*given, *forward], **options)

        async for event in stream_events(run):
            yield event

    def _default_executor(self) -> Executor | None:
        if self.executor is None and self.executor_name is not None:
            self.executor = resolve_executor(self.executor_name, **self.executor_options)
        return self.executor

    def run_sync(self, inputs: Mapping[str, Any] | None = None, /, **kwargs: Any) -> RunResult:
        """:meth:`run` from synchronous code (starts an event loop; not from inside one)."""
        return anyio.run(functools.partial(self.run, inputs, **kwargs))

    def check_inputs(self, inputs: Mapping[str, Any] | None = None, /, **input_kwargs: Any) -> dict[str, Any]:
        """Validate inputs as :meth:`run` would, without running: returns them with
        defaults filled in, or raises :class:`~legato.errors.InputError` (or
        :class:`~legato.errors.SpecError` for an invalid graph)."""
        return self._check_inputs(self.compile(), {**(inputs or {}), **input_kwargs})

    def _check_inputs(self, plan: Plan, given: dict[str, Any]) -> dict[str, Any]:
        problems: list[str] = []
        values: dict[str, Any] = {}
        for name, decl in plan.inputs.items():
            if name in given:
                value = given[name]
                if decl.type is not None and not _is_instance(value, decl.type):
                    problems.append(
                        f"input {name!r} must be {decl.type_name or _type_name(decl.type)}, got {type(value).__name__}"
                    )
                values[name] = value
            elif decl.required:
                problems.append(f"missing input {name!r}")
            elif self._inputs is not None:
                values[name] = decl.default
        for name in given:
            if name not in plan.inputs:
                best = closest(name, plan.inputs)
                hint = f" (did you mean {best!r}?)" if best else ""
                known = ", ".join(sorted(plan.inputs)) or "none"
                problems.append(f"unknown input {name!r}{hint}; the pipeline's inputs: {known}")
        if problems:
            raise InputError(f"pipeline {self.name!r}: " + "; ".join(problems))
        return values

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, steps={list(self._steps)})"


_NO_BUS = EventBus()  # what runs without subscribers publish to (nothing: they skip events)


def _declare_inputs(inputs: Mapping[str, InputDecl | type | None]) -> dict[str, InputDecl]:
    out: dict[str, InputDecl] = {}
    for name, decl in inputs.items():
        if isinstance(decl, InputDecl):
            out[name] = decl
        else:
            out[name] = InputDecl(name=name, type=decl, type_name=_type_name(decl) if decl else "any")
    return out


def _type_name(tp: Any) -> str:
    if isinstance(tp, tuple):
        return " or ".join(_type_name(t) for t in tp)
    return getattr(tp, "__name__", str(tp))


def _is_instance(value: Any, tp: type | tuple[type, ...]) -> bool:
    if isinstance(value, bool) and tp in (int, float):
        return False
    if tp is float and isinstance(value, int):
        return True
    return isinstance(value, tp)
