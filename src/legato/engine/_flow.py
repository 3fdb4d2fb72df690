"""Control flow across steps: a cycle over a group of steps, and a switch.

A :class:`Cycle` is the function of one step of the outer pipeline. Its body is a
pipeline of its own, run once per iteration with the inputs ``previous`` (the
previous iteration's step outputs, None on the first) and ``iteration`` (from 1),
until ``until`` holds or ``max_iterations`` is reached. The cycle's output is the
last iteration's step outputs (or the body's declared ``outputs``).

Durability uses the step journal of the cycle step: every inner step that
finishes (or is skipped) is appended as ``{"i": iteration, "s": step, "o":
output}`` before the next one starts, and the step journal entries of inner
steps (an ``agent:`` step's turns) are forwarded the same way. A later attempt of
the cycle (a retry, or a resume after a crash) hands those back to the body's
runs: finished iterations replay from the journal without calling anything, and
the iteration in progress continues at its first unfinished step.

Both run in the engine whatever the run's executor (``runs_in_engine``): a cycle's
``until``, journal and body runs stay here, and the body's steps are dispatched
through the run's executor (a Ray cluster, say) like any other step.

A :class:`Switch` is the function of a step that evaluates one value and returns
the name of the case it selects. The plan makes each step named by a case depend
on the switch; the steps of the cases not selected are skipped with the reason.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from legato.engine._context import SKIPPED
from legato.engine._context import _current as _step_var
from legato.engine._events import Event, StepFinished, StepProgress, StepSkipped
from legato.engine._executor import current_executor
from legato.engine._journal import StepJournal, journal_key, step_journal
from legato.errors import RunError
from legato.expressions import Expression, compile_expression
from legato.ledger import Ledger, _LazyChild
from legato.ledger import _current as _ledger_var

if TYPE_CHECKING:
    from legato.engine._pipeline import Pipeline

__all__ = ["CYCLE_INPUTS", "Cycle", "CycleLimitReached", "Switch", "SwitchNoMatch"]

CYCLE_INPUTS = ("previous", "iteration")
"""Inputs every iteration of a cycle's body receives."""


class CycleLimitReached(RunError):
    """A cycle with ``on_max_iterations="fail"`` reached its bound before ``until`` held."""


class SwitchNoMatch(RunError):
    """A switch's value matched no case and the switch has no default."""


class Cycle:
    """The step function of a cycle over the steps of ``body`` (see the module docstring)."""

    kind = "cycle"
    runs_in_engine = True

    def __init__(
        self,
        body: Pipeline,
        *,
        until: str | Expression | Callable[..., Any] | None,
        max_iterations: int,
        on_max_iterations: Literal["return", "fail"] = "return",
    ) -> None:
        if isinstance(max_iterations, bool) or not isinstance(max_iterations, int) or max_iterations < 1:
            raise ValueError(
                f"max_iterations must be an int >= 1 (a cycle without a bound never ends), got {max_iterations!r}"
            )
        if on_max_iterations not in ("return", "fail"):
            raise ValueError(f"on_max_iterations must be 'return' or 'fail', got {on_max_iterations!r}")
        self.body = body
        self.until = compile_expression(until) if isinstance(until, str) else until
        self.max_iterations = max_iterations
        self.on_max_iterations = on_max_iterations
        plan = body.compile()
        self.body_inputs = frozenset(plan.inputs)
        params = []
        for name, decl in plan.inputs.items():
            if name in CYCLE_INPUTS:
                continue
            default = inspect.Parameter.empty if decl.required else decl.default
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default))
        self.__signature__ = inspect.Signature(params)
        self.__name__ = body.name
        self.__qualname__ = f"cycle:{body.name}"

    @property
    def source(self) -> str:
        """The ``until`` condition as text (for plans)."""
        until = self.until
        if until is None:
            return ""
        if isinstance(until, Expression):
            return until.source
        return str(getattr(until, "__name__", "callable"))

    async def __call__(self, **kwargs: Any) -> dict[str, Any]:
        journal = step_journal()
        done, inner = _replay(await journal.load()) if journal is not None else ({}, {})
        ctx = _step_var.get()
        prefix = (ctx[0] if isinstance(ctx, tuple) else ctx.run_id) if ctx is not None else "cycle"
        parent = _ledger_var.get()
        ledger: Ledger | None = parent.get() if isinstance(parent, _LazyChild) else parent
        previous: dict[str, Any] | None = None
        for iteration in range(1, self.max_iterations + 1):
            given = {**kwargs, "previous": previous, "iteration": iteration}
            values = {k: v for k, v in given.items() if k in self.body_inputs}
            result = await self.body.run(
                values,
                run_id=f"{prefix}.{self.body.name}.{iteration}",
                completed=done.get(iteration, {}),  # given: the body's run is part of this one, never recorded alone
                journals=inner.get(iteration),
                subscribers=() if journal is None else (_Recorder(journal, iteration),),
                executor=current_executor(),
                ledger=ledger,
            )
            if result.exception is not None:
                raise result.exception
            result.raise_for_status()
            outputs = result.result if self.body.compile().outputs else dict(result.outputs)
            if self._until(outputs, previous, iteration, kwargs):
                return outputs
            previous = outputs
        if self.on_max_iterations == "fail":
            raise CycleLimitReached(f"until did not hold within {self.max_iterations} iterations")
        assert previous is not None
        return previous

    def _until(self, outputs: dict[str, Any], previous: Any, iteration: int, inputs: dict[str, Any]) -> bool:
        until = self.until
        if until is None:
            return False
        scope = {
            **inputs,
            **outputs,
            "steps": outputs,
            "inputs": inputs,
            "previous": previous,
            "iteration": iteration,
            "output": outputs,
        }
        if isinstance(until, Expression):
            return bool(until.evaluate(scope))
        params = inspect.signature(until).parameters
        return bool(until(**{p: scope.get(p) for p in params}))


class _Recorder:
    """Appends what the body's steps finish to the cycle step's journal."""

    __slots__ = ("iteration", "journal")

    def __init__(self, journal: StepJournal, iteration: int) -> None:
        self.journal = journal
        self.iteration = iteration

    async def __call__(self, event: Event) -> None:
        if isinstance(event, StepFinished):
            await self.journal.append({"i": self.iteration, "s": event.step, "o": event.output})
        elif isinstance(event, StepSkipped):
            await self.journal.append({"i": self.iteration, "s": event.step, "skipped": event.reason})
        elif isinstance(event, StepProgress):
            entry = {"i": self.iteration, "s": event.step, "x": event.index, "j": event.entry}
            await self.journal.append(entry)


def _replay(
    entries: Sequence[Any],
) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, list[Any]]]]:
    """Finished inner steps and inner step journals, by iteration."""
    done: dict[int, dict[str, Any]] = {}
    inner: dict[int, dict[str, list[Any]]] = {}
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("i"), int) or "s" not in entry:
            continue
        i, step = entry["i"], entry["s"]
        if "j" in entry:
            inner.setdefault(i, {}).setdefault(journal_key(step, entry.get("x")), []).append(entry["j"])
        elif "skipped" in entry:
            done.setdefault(i, {})[step] = SKIPPED
        elif "o" in entry:
            done.setdefault(i, {})[step] = entry["o"]
    return done, inner


class Switch:
    """The step function of a switch: returns the case that ``value`` selects.

    ``cases`` maps a case (compared with the value, then with its text) to the step
    or steps it runs; ``default`` runs when no case matches (without one, the
    switch step fails with :class:`SwitchNoMatch`).
    """

    kind = "switch"
    runs_in_engine = True
    DEFAULT = "default"

    def __init__(
        self,
        name: str,
        cases: Mapping[Any, str | Sequence[str]],
        default: str | Sequence[str] | None = None,
        on: str = "",
    ) -> None:
        if not cases:
            raise ValueError("a switch needs at least one case")
        self.name = name
        self.on = on
        self.cases: dict[Any, tuple[str, ...]] = {k: _names(v) for k, v in cases.items()}
        self.default = None if default is None else _names(default)
        if self.default is not None and self.DEFAULT in self.cases:
            raise ValueError("a case named 'default' and a default: choose one")
        self.__name__ = name
        self.__qualname__ = f"switch:{name}"

    def branches(self) -> dict[str, tuple[str, ...]]:
        """Case label -> the steps it runs (the default under ``"default"``)."""
        out = {str(k): v for k, v in self.cases.items()}
        if self.default is not None:
            out[self.DEFAULT] = self.default
        return out

    async def __call__(self, value: Any) -> str:
        if _hashable(value) and value in self.cases:
            return str(value)
        text = str(value)
        for case in self.cases:
            if str(case) == text:
                return str(case)
        if self.default is not None:
            return self.DEFAULT
        known = ", ".join(repr(str(c)) for c in self.cases)
        raise SwitchNoMatch(f"value {value!r} matches no case ({known}) and there is no default")


def _names(value: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    names = tuple(value)
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"a case names a step or a list of steps, got {value!r}")
    return names


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True
