"""Step definitions: what a step is before it runs, and how its arguments bind.

A Python step's parameter names *are* its edges: a parameter named after another
step receives that step's output; any other parameter is a pipeline input (with
its default when it has one). YAML steps (and factories such as ``llm``) give
explicit argument values with ``${...}`` references instead; parameters they leave
unmapped bind by name the same way.
"""

from __future__ import annotations

import hashlib
import inspect
import keyword
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from legato.expressions import Expression, Value, closest, compile_expression, compile_value
from legato.retry import RetryPolicy

__all__ = ["NO_DEFAULT", "InputDecl", "LoopOptions", "MapErrors", "StepDef", "retry_policy"]

MapErrors = Literal["fail", "collect"]


class _NoDefault:
    """The ``default`` of a step that declared none (``None`` is a valid default)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_NAMES = frozenset({"inputs", "steps", "loop", "item", "output", "iteration", "previous"})


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name)) and not keyword.iskeyword(name)


def _retry_any(error: BaseException) -> bool:
    return isinstance(error, Exception)


def retry_policy(retries: int | RetryPolicy | None) -> RetryPolicy | None:
    """``retries=N`` means N more attempts on any exception, with the default backoff."""
    if retries is None or isinstance(retries, RetryPolicy):
        return retries
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a non-negative int or a RetryPolicy, got {retries!r}")
    return RetryPolicy(max_attempts=retries + 1, retry_on=_retry_any) if retries else RetryPolicy.none()


@dataclass(frozen=True, slots=True)
class InputDecl:
    """A declared pipeline input. ``type`` is a Python class (or None for any)."""

    name: str
    type: type | tuple[type, ...] | None = None
    required: bool = True
    default: Any = None
    description: str = ""
    type_name: str = "any"


@dataclass(frozen=True, slots=True)
class LoopOptions:
    """A bounded loop: the step runs until ``until`` is true, at most ``max_iterations``
    times. The parameter named ``carry`` receives the previous iteration's output
    (None on the first)."""

    until: Expression | Callable[..., Any]
    max_iterations: int
    carry: str = "previous"
    on_max_iterations: Literal["return", "fail"] = "return"


@dataclass(slots=True)
class StepDef:
    """A step as declared. Built by :meth:`Pipeline.step` / :meth:`Pipeline.add_step`."""

    name: str
    fn: Callable[..., Any]
    is_async: bool
    params: tuple[str, ...]
    defaults: dict[str, Any]
    var_kwargs: bool
    args: dict[str, Value] = field(default_factory=dict)  # explicit argument values (YAML `with:`)
    depends_on: tuple[str, ...] = ()
    timeout: float | None = None
    retry: RetryPolicy | None = None
    when: Expression | Callable[..., Any] | None = None
    map: str | None = None
    max_concurrency: int | None = None
    optional: frozenset[str] = frozenset()
    cache: bool = False
    version: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    estimate_ms: float | None = None
    loop: LoopOptions | None = None
    description: str = ""
    continue_on_error: bool = False  # a failure is recorded and tolerated: the run can succeed
    default: Any = NO_DEFAULT  # what dependents receive when the tolerated step failed
    map_errors: MapErrors = "fail"  # "collect": a failed item becomes a MapItemError in the list
    _code_version: str | None = None

    @property
    def code_version(self) -> str:
        """``version=`` when given, else a hash of the function's source (or its
        qualified name when the source is unavailable)."""
        if self.version is not None:
            return self.version
        if self._code_version is None:
            try:
                text = inspect.getsource(self.fn)
            except (OSError, TypeError):
                text = f"{getattr(self.fn, '__module__', '')}.{getattr(self.fn, '__qualname__', repr(self.fn))}"
            self._code_version = hashlib.sha256(text.encode()).hexdigest()[:16]
        return self._code_version


def is_async_callable(fn: Callable[..., Any]) -> bool:
    while hasattr(fn, "func") and not inspect.isfunction(fn):  # functools.partial
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004


def make_step(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    args: Mapping[str, Any] | None = None,
    depends_on: tuple[str, ...] | list[str] = (),
    timeout: float | None = None,
    retries: int | RetryPolicy | None = None,
    when: str | Callable[..., Any] | None = None,
    map: str | None = None,
    max_concurrency: int | None = None,
    optional: tuple[str, ...] | list[str] | frozenset[str] = (),
    cache: bool = False,
    version: str | None = None,
    resources: Mapping[str, Any] | None = None,
    estimate_ms: float | None = None,
    loop: LoopOptions | None = None,
    description: str | None = None,
    continue_on_error: bool = False,
    default: Any = NO_DEFAULT,
    map_errors: MapErrors = "fail",
) -> StepDef:
    """Build a :class:`StepDef`, raising ``ValueError`` on an option that is wrong
    regardless of the rest of the pipeline (the pipeline checks references later)."""
    step_name = _step_name(fn, name)
    params, defaults, var_kwargs = _parameters(fn, step_name)
    _check_limits(step_name, timeout, max_concurrency)
    compiled_args = {k: compile_value(v) for k, v in (args or {}).items()}
    unknown_args = [k for k in compiled_args if k not in params and not var_kwargs]
    if unknown_args:
        listed = ", ".join(repr(a) for a in unknown_args)
        known = ", ".join(params) or "none"
        raise ValueError(f"step {step_name!r}: {fn_label(fn)}() has no parameter {listed} (its parameters: {known})")
    _check_map(step_name, set(params) | set(compiled_args), map, optional, loop)
    _check_failure_options(step_name, continue_on_error, default)
    if map_errors not in ("fail", "collect"):
        raise ValueError(f"step {step_name!r}: map_errors must be 'fail' or 'collect', got {map_errors!r}")
    if map_errors == "collect" and map is None:
        raise ValueError(f"step {step_name!r}: map_errors 'collect' needs a map step")
    return StepDef(
        name=step_name,
        fn=fn,
        is_async=is_async_callable(fn),
        params=tuple(params),
        defaults=defaults,
        var_kwargs=var_kwargs,
        args=compiled_args,
        depends_on=tuple(dict.fromkeys(depends_on)),
        timeout=timeout,
        retry=retry_policy(retries),
        when=compile_expression(when) if isinstance(when, str) else when,
        map=map,
        max_concurrency=max_concurrency,
        optional=frozenset(optional),
        cache=cache,
        version=version,
        resources=dict(resources or {}),
        estimate_ms=estimate_ms,
        loop=loop,
        continue_on_error=continue_on_error,
        default=default,
        map_errors=map_errors,
        description=description if description is not None else (inspect.getdoc(fn) or "").split("\n")[0],
    )


def _step_name(fn: Callable[..., Any], name: str | None) -> str:
    if not callable(fn):
        raise TypeError(f"a step must be callable, got {type(fn).__name__}")
    step_name = name or getattr(fn, "__name__", None)
    if not step_name or not valid_name(step_name):
        raise ValueError(f"invalid step name {step_name!r}: use letters, digits and '_' (not starting with a digit)")
    if step_name in RESERVED_NAMES:
        raise ValueError(f"step name {step_name!r} is reserved")
    return step_name


def _parameters(fn: Callable[..., Any], step_name: str) -> tuple[list[str], dict[str, Any], bool]:
    """The step function's keyword parameters, their defaults, and whether it takes ``**kwargs``."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"step {step_name!r}: cannot read the signature of {fn!r}: {exc}") from exc
    params: list[str] = []
    defaults: dict[str, Any] = {}
    var_kwargs = False
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_kwargs = True
            continue
        if p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY):
            raise TypeError(f"step {step_name!r}: parameter {p.name!r} must be passable by keyword")
        params.append(p.name)
        if p.default is not p.empty:
            defaults[p.name] = p.default
    return params, defaults, var_kwargs


def _check_limits(step_name: str, timeout: float | None, max_concurrency: int | None) -> None:
    if timeout is not None and (isinstance(timeout, bool) or timeout <= 0):
        raise ValueError(f"step {step_name!r}: timeout must be > 0 seconds, got {timeout!r}")
    if max_concurrency is not None and (isinstance(max_concurrency, bool) or max_concurrency < 1):
        raise ValueError(f"step {step_name!r}: max_concurrency must be >= 1, got {max_concurrency!r}")


def _check_map(
    step_name: str,
    bound: set[str],
    map: str | None,
    optional: Iterable[str],
    loop: LoopOptions | None,
) -> None:
    """``map`` and ``optional`` name parameters the step has; a step maps or loops, not both."""
    if map is not None and map not in bound:
        hint = closest(map, sorted(bound))
        suggestion = f" (did you mean {hint!r}?)" if hint else f"; its parameters: {', '.join(sorted(bound)) or 'none'}"
        raise ValueError(f"step {step_name!r}: map={map!r} is not a parameter of the step{suggestion}")
    for opt in optional:
        if opt not in bound:
            raise ValueError(f"step {step_name!r}: optional={opt!r} is not a parameter of the step")
    if loop is not None and map is not None:
        raise ValueError(f"step {step_name!r}: a step cannot both map and loop")
    if loop is not None and loop.max_iterations < 1:
        raise ValueError(f"step {step_name!r}: max_iterations must be >= 1")


def _check_failure_options(step_name: str, continue_on_error: Any, default: Any) -> None:
    if not isinstance(continue_on_error, bool):
        raise ValueError(f"step {step_name!r}: continue_on_error must be true or false, got {continue_on_error!r}")
    if default is not NO_DEFAULT and not continue_on_error:
        raise ValueError(
            f"step {step_name!r}: default (what dependents receive when the step fails) needs continue_on_error"
        )


def fn_label(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__qualname__", getattr(fn, "__name__", type(fn).__name__)))
