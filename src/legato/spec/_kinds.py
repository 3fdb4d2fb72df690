"""Step kinds: how a YAML step becomes a callable.

A kind is a *factory* registered by name with an import string, imported the first
time a pipeline uses it (so ``legato.spec`` imports nothing of the model layer):

* ``uses`` (built in): ``uses: package.module:function`` or ``uses: ./file.py:function``
  (relative to the YAML file); ``with:`` maps the function's parameters.
* ``llm`` -> ``legato.steps.llm:build``, ``task`` -> ``legato.steps.task:build`` and
  ``agent`` -> ``legato.steps.agent:build``.

Other kinds come from, first match wins: the ``step_kinds:`` section of ``legato.yaml``
(``name: "package.module:build"`` or ``"./file.py:build"``, resolved beside that file,
so the CLI and :func:`~legato.spec.load_pipeline` see the same kinds),
:func:`register_step_kind` in the running process, then the ``legato.step_kinds``
entry-point group of installed packages (read once, on the first lookup).

Factory contract::

    def build(spec: Mapping[str, Any], ctx: BuildContext) -> StepBuild

``spec`` is the step's raw mapping from the file (common options such as ``when``,
``map``, ``timeout`` included; the loader applies those, the factory reads its own
keys). ``ctx`` gives the file, its directory, the :class:`~legato.config.LegatoConfig`,
the step name and a location lookup. The factory returns a :class:`StepBuild`: the
callable and its arguments, whose ``${...}`` references make the step's
dependencies (plus any ``depends_on``). It reports problems by raising
:class:`~legato.errors.SpecError` built with :meth:`BuildContext.issue`, so they
carry file:line:column.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle

from legato._yaml import Position, locate
from legato.config import LegatoConfig
from legato.errors import SpecError, SpecIssue
from legato.expressions import closest, compile_value
from legato.spec._models import COMMON_STEP_KEYS

__all__ = ["BuildContext", "StepBuild", "StepFactory", "load_callable", "register_step_kind", "resolve_kind"]


@dataclass(frozen=True)
class StepBuild:
    """What a step factory returns.

    Attributes:
        fn: the step function (async preferred; sync ones run in a worker thread).
        args: parameter -> value; strings may hold ``${...}`` references, rendered
            at run time and passed as keyword arguments.
        depends_on: extra steps to wait for (beyond those ``args`` reference).
        description: one line for ``legato plan`` and the dashboard.
    """

    fn: Callable[..., Any]
    args: Mapping[str, Any] = field(default_factory=dict)
    depends_on: Sequence[str] = ()
    description: str = ""


@dataclass(frozen=True)
class BuildContext:
    """What a step factory may know about where its step comes from."""

    step: str
    file: str | None
    base_dir: Path
    config: LegatoConfig
    data: Any = None  # the whole file as loaded (LocatedDict), for locations
    check_secrets: bool = False  # whether a model's unset env: secret is an error (run/serve) or not (static checks)

    def locate(self, *path: str | int) -> Position | None:
        """(line, column) of ``steps.<step>.<path...>`` in the file, or of its nearest parent."""
        return locate(self.data, ("steps", self.step, *path)) if self.data is not None else None

    def issue(self, message: str, *path: str | int) -> SpecIssue:
        """A :class:`SpecIssue` located at ``steps.<step>.<path...>``."""
        pos = self.locate(*path)
        dotted = ".".join(str(p) for p in ("steps", self.step, *path))
        return SpecIssue(
            f"{dotted}: {message}",
            file=self.file,
            line=pos[0] if pos else None,
            column=pos[1] if pos else None,
            path=dotted,
        )

    def references(self, value: Any) -> frozenset[str]:
        """Step names that a value's ``${...}`` references read."""
        return compile_value(value).steps

    def build_step(self, name: str, *path: str | int) -> StepBuild:
        """Build another step of the same file (for kinds that use steps, like ``agent:``)."""
        from legato.spec._loader import build_named_step

        return build_named_step(self, name, path)

    def load_callable(self, ref: str, *path: str | int) -> Callable[..., Any]:
        """Import ``package.module:attr`` or ``./file.py:attr`` (relative to the file)."""
        try:
            return load_callable(ref, self.base_dir)
        except (ImportError, AttributeError, ValueError, SyntaxError, OSError) as exc:
            raise SpecError([self.issue(str(exc), *path)]) from exc


StepFactory = Callable[[Mapping[str, Any], BuildContext], StepBuild]

_KINDS: dict[str, str | StepFactory] = {
    "uses": "legato.spec._kinds:build_uses",
    "llm": "legato.steps.llm:build",
    "task": "legato.steps.task:build",
    "agent": "legato.steps.agent:build",
    "cycle": "legato.spec._flow:build_cycle",
    "switch": "legato.spec._flow:build_switch",
    "wait": "legato.steps.wait:build",
}


BUILTIN_KINDS = frozenset(_KINDS)
ENTRY_POINT_GROUP = "legato.step_kinds"
_SOURCES = (
    "kinds come from legato itself, the step_kinds section of legato.yaml, "
    f"register_step_kind() and the {ENTRY_POINT_GROUP!r} entry-point group"
)
_entry_points_read = False


def register_step_kind(kind: str, factory: str | StepFactory) -> None:
    """Register a step kind: ``factory`` is a callable or ``"package.module:build"``."""
    if isinstance(factory, str) and ":" not in factory:
        raise ValueError(f"factory must look like 'package.module:function', got {factory!r}")
    _KINDS[kind] = factory


def _read_entry_points() -> None:
    """Add the kinds installed packages declare (``register_step_kind`` ones win)."""
    global _entry_points_read
    if _entry_points_read:
        return
    _entry_points_read = True
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        _KINDS.setdefault(point.name, point.value)


def config_kinds(config: LegatoConfig | None) -> dict[str, str]:
    """The well-formed entries of the ``step_kinds:`` section: kind name -> import string
    (:func:`config_kind_issues` reports the others)."""
    raw = config.raw("step_kinds") if config is not None else None
    if not isinstance(raw, Mapping):
        return {}
    return {
        str(name): ref for name, ref in raw.items() if name not in BUILTIN_KINDS and isinstance(ref, str) and ":" in ref
    }


def config_kind_issues(config: LegatoConfig) -> list[SpecIssue]:
    """Problems of the ``step_kinds:`` section, located in ``legato.yaml``."""
    raw = config.raw("step_kinds")
    if raw is None:
        return []

    def issue(message: str, *path: str) -> SpecIssue:
        pos = locate(config.data, ("step_kinds", *path))
        dotted = ".".join(("step_kinds", *path))
        line, column = pos if pos else (None, None)
        return SpecIssue(f"{dotted}: {message}", file=config.source, line=line, column=column, path=dotted)

    if not isinstance(raw, Mapping):
        return [issue("must map a kind name to 'package.module:build'")]
    issues = []
    for name, ref in raw.items():
        if name in BUILTIN_KINDS:
            issues.append(issue(f"{name!r} is a built-in step kind and cannot be replaced", str(name)))
        elif not isinstance(ref, str) or ":" not in ref:
            issues.append(issue("expected 'package.module:build' or './file.py:build'", str(name)))
    return issues


def kind_names(config: LegatoConfig | None = None) -> list[str]:
    _read_entry_points()
    return sorted(set(_KINDS) | set(config_kinds(config)))


def resolve_kind(kind: str, config: LegatoConfig | None = None) -> StepFactory:
    """The factory of ``kind``; the :class:`LookupError` for an unknown one says where kinds come from."""
    _read_entry_points()
    configured = config_kinds(config)
    if config is not None and kind in configured:
        ref = configured[kind]
        try:
            return load_callable(ref, config.base_dir)
        except (ImportError, AttributeError, ValueError, SyntaxError, OSError) as exc:
            raise LookupError(f"step kind {kind!r} ({ref}, from {config.source}) is not available: {exc}") from exc
    factory = _KINDS.get(kind)
    if factory is None:
        known = kind_names(config)
        hint = closest(kind, known)
        raise LookupError(
            f"unknown step kind {kind!r}"
            + (f" (did you mean {hint!r}?)" if hint else "")
            + f"; known kinds: {', '.join(known)}; {_SOURCES}"
        )
    if isinstance(factory, str):
        module_name, _, attr = factory.partition(":")
        try:
            module = importlib.import_module(module_name)
            loaded: StepFactory = getattr(module, attr)
        except (ImportError, AttributeError) as exc:
            raise LookupError(f"step kind {kind!r} is not available ({factory}): {exc}") from exc
        _KINDS[kind] = loaded
        return loaded
    return factory


def load_callable(ref: str, base_dir: Path) -> Callable[..., Any]:
    """Resolve ``package.module:attr`` or ``./path/file.py:attr`` (``attr`` may be dotted)."""
    obj = load_object(ref, base_dir)
    if not callable(obj):
        raise ValueError(f"{ref!r} is not callable ({type(obj).__name__})")
    return obj  # type: ignore[no-any-return]


def load_object(ref: str, base_dir: Path) -> Any:
    """The attribute ``ref`` names (see :func:`load_callable`), whatever it is."""
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr:
        raise ValueError(f"uses: {ref!r} must look like 'package.module:function' or './file.py:function'")
    if target.endswith(".py") or target.startswith((".", "/")):
        module = _load_file(base_dir / target)
    else:
        module = _import_beside(target, base_dir)
    obj: Any = module
    for part in attr.split("."):
        if part.startswith("_") and part != attr.split(".")[0]:
            raise AttributeError(f"{ref!r}: private attribute {part!r}")
        if not hasattr(obj, part):
            public = [n for n in dir(obj) if not n.startswith("_")]
            hint = closest(part, public)
            raise AttributeError(
                f"{target!r} has no attribute {part!r}" + (f" (did you mean {hint!r}?)" if hint else "")
            )
        obj = getattr(obj, part)
    return obj


def _import_beside(target: str, base_dir: Path) -> Any:
    """Import ``target``, looking for its top package in the pipeline's folder first
    (which then joins ``sys.path``, so workers that unpickle the step find it too)."""
    top = target.partition(".")[0]
    folder = str(base_dir.resolve())
    beside = (base_dir / top).is_dir() or (base_dir / f"{top}.py").is_file()
    if beside and top not in sys.modules and folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (target == exc.name or target.startswith(exc.name + ".")):
            raise ImportError(
                f"cannot import module {target!r}: no module named {exc.name!r} "
                f"(looked in the pipeline's folder {folder} and on the Python path)"
            ) from exc
        raise ImportError(f"cannot import module {target!r}: {exc}") from exc
    except ImportError as exc:
        raise ImportError(f"cannot import module {target!r}: {exc}") from exc


def _load_file(path: Path) -> Any:
    path = path.resolve()
    if not path.is_file():
        raise ImportError(f"no such file: {path.name} (looked in {path.parent})")
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:10]
    name = f"legato_user_steps.{path.stem}_{digest}"
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__file__", None) == str(path):
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path.name}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        raise SyntaxError(f"{path.name}:{exc.lineno}: {exc.msg}") from exc
    except Exception as exc:
        del sys.modules[name]
        raise ImportError(f"importing {path.name} failed: {type(exc).__name__}: {exc}") from exc
    # The module is not importable by name elsewhere (a `legato runs show`, a resume, a
    # Ray worker): values of its classes are pickled by value, not by reference.
    cloudpickle.register_pickle_by_value(module)
    return module


def build_uses(spec: Mapping[str, Any], ctx: BuildContext) -> StepBuild:
    """The built-in ``uses`` kind: a Python callable named by import string or file."""
    issues = []
    for key in spec:
        if key not in COMMON_STEP_KEYS:
            hint = closest(str(key), COMMON_STEP_KEYS)
            issues.append(ctx.issue(f"unknown field {key!r}" + (f" (did you mean {hint!r}?)" if hint else ""), key))
    ref = spec.get("uses")
    if not isinstance(ref, str):
        issues.append(ctx.issue("'uses' must be a string like 'package.module:function'", "uses"))
    if issues:
        raise SpecError(issues)
    assert isinstance(ref, str)
    fn = ctx.load_callable(ref, "uses")
    return StepBuild(fn=fn, args=dict(spec.get("with") or {}))
