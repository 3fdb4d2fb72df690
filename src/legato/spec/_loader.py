"""Load a pipeline YAML file and compile it into an engine :class:`Pipeline`.

Three passes, each reporting *every* problem it finds with file:line:column:
the YAML syntax, the shape (pydantic :class:`PipelineSpec`), then the steps
(imports, kinds, options) and the graph (references, cycles, expressions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from legato._yaml import YamlSyntaxError, load_yaml, locate
from legato.config import LegatoConfig
from legato.errors import SpecError, SpecIssue
from legato.expressions import ExpressionError, closest
from legato.retry import RetryPolicy, is_retryable
from legato.spec._kinds import BuildContext, StepBuild, config_kind_issues, kind_names, resolve_kind
from legato.spec._models import INPUT_TYPES, PipelineSpec, RetrySpec, StepSpec

if TYPE_CHECKING:
    from legato.engine import Pipeline

__all__ = ["build_named_step", "load_pipeline", "load_spec", "loads_pipeline"]


class _Source:
    check_secrets = False  # whether a model's unset env: secret is an error (run/serve)

    def __init__(self, path_or_text: str | Path, base_dir: Path | None = None) -> None:
        if isinstance(path_or_text, str) and _looks_like_text(path_or_text):
            self.file: str | None = None
            self.name = "<string>"
            self.text: str | None = path_or_text
            self.base_dir = base_dir or Path.cwd()
        else:
            path = Path(path_or_text)
            self.file = self.name = str(path)
            self.text = None
            self.base_dir = path.parent

    @classmethod
    def of_text(cls, text: str, base_dir: Path | None) -> _Source:
        src = cls.__new__(cls)
        src.file, src.name, src.text, src.base_dir = None, "<string>", text, base_dir or Path.cwd()
        return src

    @classmethod
    def nested(cls, file: str | None, base_dir: Path, *, check_secrets: bool) -> _Source:
        """The source of a part of a file (a cycle's body): same name, directory and
        secrets setting as the file."""
        src = cls.__new__(cls)
        src.file, src.name, src.text, src.base_dir = file, file or "<string>", None, base_dir
        src.check_secrets = check_secrets
        return src

    def issue(self, data: Any, path: Sequence[Any], message: str) -> SpecIssue:
        pos = locate(data, path) if data is not None else None
        dotted = ".".join(str(p) for p in path)
        return SpecIssue(
            f"{dotted}: {message}" if dotted else message,
            file=self.name,
            line=pos[0] if pos else None,
            column=pos[1] if pos else None,
            path=dotted or None,
        )


def load_spec(path_or_text: str | Path) -> tuple[PipelineSpec, Any]:
    """Parse and validate the shape of a pipeline file; returns the spec and the raw data."""
    src = _Source(path_or_text)
    return _parse(src)


def _parse(src: _Source) -> tuple[PipelineSpec, Any]:
    spec, data, issues, _ = _parse_partly(src)
    if issues:
        raise SpecError(issues)
    return spec, data


def _parse_partly(src: _Source) -> tuple[PipelineSpec, Any, list[SpecIssue], frozenset[str]]:
    """Validate the shape; on errors, validate again without the parts in error so the
    later passes still check the rest of the file. Returns the spec, the raw data, the
    shape issues and the steps left out (they stand in for the graph check)."""
    try:
        data = load_yaml(src.name, text=src.text)
    except YamlSyntaxError as exc:
        raise SpecError([SpecIssue(str(exc), file=src.name, line=exc.line, column=exc.column)]) from exc
    if not isinstance(data, Mapping):
        raise SpecError([SpecIssue("a pipeline file must be a mapping with 'name' and 'steps'", file=src.name)])
    try:
        return PipelineSpec.model_validate(data), data, [], frozenset()
    except ValidationError as exc:
        issues = [_pydantic_issue(src, data, err) for err in exc.errors()]
        pruned, dropped = _without_errors(data, [tuple(err["loc"]) for err in exc.errors()])
    try:
        return PipelineSpec.model_validate(pruned), data, issues, dropped
    except ValidationError:
        raise SpecError(issues) from None


def _without_errors(data: Mapping[str, Any], locs: list[tuple[Any, ...]]) -> tuple[dict[str, Any], frozenset[str]]:
    """``data`` without what the errors at ``locs`` point to: a step in error is left
    out, an input in error becomes an untyped one, a top-level field its default."""
    pruned = dict(data)
    steps = dict(data.get("steps") or {}) if isinstance(data.get("steps"), Mapping) else None
    inputs = dict(data.get("inputs") or {}) if isinstance(data.get("inputs"), Mapping) else None
    dropped: set[str] = set()
    for loc in locs:
        if len(loc) >= 2 and loc[0] == "steps" and steps is not None and len(steps) > 1:
            steps.pop(loc[1], None)
            dropped.add(str(loc[1]))
        elif len(loc) >= 2 and loc[0] == "inputs" and inputs is not None:
            inputs[loc[1]] = {"type": "any", "required": False}
        elif loc and loc[0] not in ("name", "steps"):
            pruned.pop(loc[0], None)
    if steps is not None:
        pruned["steps"] = steps
    if inputs is not None:
        pruned["inputs"] = inputs
    return pruned, frozenset(dropped)


def _pydantic_issue(src: _Source, data: Any, err: Any) -> SpecIssue:
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = loc[:-1]
        known = _known_fields(parent)
        hint = closest(str(loc[-1]), known)
        message = f"unknown field {loc[-1]!r}" + (f" (did you mean {hint!r}?)" if hint else "")
        return src.issue(data, loc, message)
    if kind == "too_short" and loc == ("steps",):
        return src.issue(data, loc, "a pipeline needs at least one step")
    if kind == "missing":
        return src.issue(data, loc[:-1], f"missing required field {loc[-1]!r}")
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "literal_error":
        msg = f"{msg}, got {err.get('input')!r}"
    return src.issue(data, loc, msg)


def _known_fields(parent: tuple[Any, ...]) -> list[str]:
    from legato.spec._models import InputSpec, LoopSpec

    if not parent:
        return list(PipelineSpec.model_fields)
    if parent[-1] == "loop":
        return list(LoopSpec.model_fields)
    if parent[-1] == "retries" or parent[-1] == "retry":
        return list(RetrySpec.model_fields)
    if parent[0] == "inputs":
        return list(InputSpec.model_fields)
    return []


def load_pipeline(
    path_or_text: str | Path,
    *,
    config: LegatoConfig | None = None,
    check_secrets: bool = False,
    base_dir: Path | None = None,
) -> Pipeline:
    """Load a pipeline from a YAML file into a :class:`~legato.engine.Pipeline`.

    ``path_or_text`` is a path (``str`` or ``Path``); a string holding YAML text (one
    with a newline) is read as :func:`loads_pipeline` reads it. ``uses: ./file.py:fn``
    is relative to the file's directory; ``config`` is handed to step-kind factories
    (default: the ``legato.yaml`` :func:`~legato.config.find_config` finds: ``$LEGATO_CONFIG``,
    beside the file, then in the current directory). ``check_secrets`` makes a model
    whose ``env:`` secret is unset an error (what running needs; static checks skip it).
    A ``package.module:pipeline`` or ``./file.py:pipeline`` reference that names no
    file imports a Python :class:`~legato.engine.Pipeline` instead (see
    :mod:`legato.spec._python`).

    The result is ready to run and carries the validated spec as ``pipeline.spec``.
    Raises :class:`~legato.errors.SpecError` whose ``issues`` list every problem,
    each with file:line:column.
    """
    from legato.spec._python import is_pipeline_ref, load_pipeline_ref

    if is_pipeline_ref(path_or_text):
        return load_pipeline_ref(str(path_or_text))
    return _compile(_Source(path_or_text, base_dir), config, check_secrets)


def loads_pipeline(
    text: str,
    *,
    config: LegatoConfig | None = None,
    check_secrets: bool = False,
    base_dir: Path | None = None,
) -> Pipeline:
    """Load a pipeline from YAML text, as :func:`load_pipeline` loads a file.

    ``uses: ./file.py:fn`` and ``config`` are found from ``base_dir`` (default: the
    current directory); issues name the file ``<string>``."""
    return _compile(_Source.of_text(text, base_dir), config, check_secrets)


def _looks_like_text(value: str) -> bool:
    return "\n" in value or value.lstrip().startswith("{")


def _compile(src: _Source, config: LegatoConfig | None, check_secrets: bool) -> Pipeline:
    """The three passes of the module docstring over one source."""
    src.check_secrets = check_secrets
    spec, data, issues, dropped = _parse_partly(src)
    cfg = config if config is not None else LegatoConfig.load(spec=src.file)
    issues.extend(config_kind_issues(cfg))
    issues.extend(_executor_issues(src, data, spec))
    pipeline = _new_pipeline(src, data, spec, cfg)
    broken: list[str] = list(dropped)
    issues.extend(_map_sources(src, data, spec))
    for name, step in spec.steps.items():
        step_issues = _add_step(pipeline, src, data, cfg, name, step)
        if step_issues:
            issues.extend(step_issues)
            broken.append(name)
    for name, value in spec.outputs.items():
        try:
            pipeline.add_output(name, value)
        except ExpressionError as exc:
            issues.append(src.issue(data, ("outputs", name), exc.issues[0].message))
    issues.extend(_graph_issues(pipeline, src, data, broken))
    if issues:
        raise SpecError(sorted(issues, key=lambda i: (i.line or 0, i.column or 0)))
    return pipeline


def _executor_issues(src: _Source, data: Any, spec: PipelineSpec) -> list[SpecIssue]:
    from legato.engine import executor_names

    if spec.executor in executor_names():
        return []
    hint = closest(spec.executor, executor_names())
    message = (
        f"unknown executor {spec.executor!r}"
        + (f" (did you mean {hint!r}?)" if hint else "")
        + f"; known: {', '.join(executor_names())}"
    )
    return [src.issue(data, ("executor",), message)]


def _new_pipeline(src: _Source, data: Any, spec: PipelineSpec, cfg: LegatoConfig) -> Pipeline:
    """The empty pipeline the spec's top level describes (its steps are added after)."""
    from legato.engine import InputDecl, Pipeline

    inputs = {
        name: InputDecl(
            name=name,
            type=INPUT_TYPES[decl.type],
            required=decl.is_required,
            default=decl.default,
            description=decl.description,
            type_name=decl.type,
        )
        for name, decl in spec.inputs.items()
    }
    try:
        pipeline = Pipeline(
            spec.name,
            max_concurrency=spec.max_concurrency,
            failure_policy=spec.failure_policy,
            retry=_retry(spec.retry),
            deadline=spec.deadline,
            inputs=inputs,
            outputs={},
            description=spec.description,
        )
    except ValueError as exc:
        raise SpecError([src.issue(data, (), str(exc))]) from exc
    pipeline.spec = spec
    pipeline.source = src.file
    pipeline.config_file = cfg.source
    if spec.executor != "local" or spec.executor_options:
        pipeline.executor_name = spec.executor
        pipeline.executor_options = dict(spec.executor_options)
    return pipeline


def _graph_issues(pipeline: Pipeline, src: _Source, data: Any, broken: list[str]) -> list[SpecIssue]:
    """The graph checked even when some steps are broken, so every problem is listed
    at once: a broken step stands in as a step without parameters, and its own graph
    issues are dropped (it already has an error)."""
    for name in broken:
        try:
            pipeline.add_step(_stand_in, name=name)
        except (ValueError, SpecError):
            continue  # an invalid or duplicate name: already reported
    issues = []
    for issue in pipeline.validate():
        path = tuple(issue.path.split(".")) if issue.path else ()
        if len(path) >= 2 and path[0] == "steps" and path[1] in broken:
            continue
        issues.append(src.issue(data, path, issue.message))
    return issues


def _map_sources(src: _Source, data: Any, spec: PipelineSpec) -> list[SpecIssue]:
    """A ``map:`` whose parameter is exactly an input declared as a scalar or a mapping cannot fan out."""
    issues = []
    for name, step in spec.steps.items():
        value = step.with_.get(step.map) if step.map is not None else None
        if not isinstance(value, str):
            continue
        source = value.strip()
        if not (source.startswith("${") and source.endswith("}")):
            continue
        head, dot, field = source[2:-1].strip().partition(".")
        decl = spec.inputs.get(field) if head == "inputs" and dot else None
        if decl is not None and decl.type in _NOT_MAPPABLE:
            issues.append(
                src.issue(
                    data,
                    ("steps", name, "map"),
                    f"map over {step.map!r}, the input {field!r} declared {decl.type}: a map needs a list",
                )
            )
    return issues


_NOT_MAPPABLE = frozenset({"string", "integer", "number", "boolean", "object", "mapping"})


async def _stand_in() -> None:
    """Takes the place of a step that failed to build while the graph is checked."""


def _retry(spec: RetrySpec | None) -> RetryPolicy | None:
    if spec is None:
        return None
    return RetryPolicy(
        max_attempts=spec.max_attempts,
        base_delay=spec.base_delay,
        multiplier=spec.multiplier,
        max_delay=spec.max_delay,
        jitter=spec.jitter,
        retry_on=_any_exception if spec.retry_on == "any" else is_retryable,
    )


def _any_exception(error: BaseException) -> bool:
    return isinstance(error, Exception)


def _add_step(
    pipeline: Pipeline, src: _Source, data: Any, cfg: LegatoConfig, name: str, step: StepSpec
) -> list[SpecIssue]:
    from legato.engine import LoopOptions

    ctx = BuildContext(
        step=name, file=src.name, base_dir=src.base_dir, config=cfg, data=data, check_secrets=src.check_secrets
    )
    try:
        built = _build(ctx, data["steps"][name], step)
    except SpecError as exc:
        return list(exc.issues)
    if step.tool:  # built to check it; the agents that list it call it
        return []
    loop = None
    if step.loop is not None:
        try:
            from legato.expressions import compile_expression

            loop = LoopOptions(
                until=compile_expression(step.loop.until),
                max_iterations=step.loop.max_iterations,
                on_max_iterations=step.loop.on_max_iterations,
            )
        except ExpressionError as exc:
            return [ctx.issue(exc.issues[0].message, "loop", "until")]
    try:
        pipeline.add_step(
            built.fn,
            name=name,
            args=built.args,
            depends_on=(*step.depends_on, *built.depends_on),
            timeout=step.timeout,
            retries=_retry(step.retries),
            when=step.when,
            map=step.map,
            max_concurrency=step.max_concurrency,
            optional=step.optional,
            cache=step.cache,
            version=step.version,
            resources=step.resources,
            estimate_ms=step.estimate_ms,
            loop=loop,
            description=step.description or built.description or None,
            continue_on_error=step.continue_on_error,
            map_errors=step.map_errors,
            **({"default": step.default} if "default" in step.model_fields_set else {}),
        )
    except ExpressionError as exc:
        return [ctx.issue(exc.issues[0].message, _expr_field(step, exc))]
    except SpecError as exc:
        return [ctx.issue(i.message) for i in exc.issues]
    except (ValueError, TypeError) as exc:
        message = str(exc).removeprefix(f"step {name!r}: ")
        return [ctx.issue(message, *_option_field(message))]
    return []


def _build(ctx: BuildContext, raw: Any, step: StepSpec) -> StepBuild:
    """Run the step's kind factory; raises :class:`SpecError` located in the file."""
    kind = step.kind
    if kind is None:
        if step.uses is not None:
            kind = "uses"
        else:
            names = kind_names(ctx.config)
            extra = [k for k in (step.model_extra or {}) if k in names]
            if len(extra) != 1:
                raise SpecError(
                    [ctx.issue("a step needs 'uses: module:function' or a kind (" + ", ".join(names) + ")")]
                )
            kind = extra[0]
    try:
        factory = resolve_kind(kind, ctx.config)
    except LookupError as exc:
        raise SpecError([ctx.issue(str(exc), "kind")]) from exc
    built = factory(raw, ctx)
    if not isinstance(built, StepBuild):
        raise SpecError([ctx.issue(f"step kind {kind!r} returned {type(built).__name__}, not a StepBuild")])
    return built


def build_named_step(ctx: BuildContext, name: str, path: Sequence[str | int]) -> StepBuild:
    """Build step ``name`` of the file ``ctx`` comes from, for the step ``ctx`` builds.

    The step must be marked ``tool: true``; problems are reported at ``path`` of
    the asking step (a missing or unmarked step) or at the step itself.
    """
    steps = ctx.data.get("steps") if isinstance(ctx.data, Mapping) else None
    raw = steps.get(name) if isinstance(steps, Mapping) else None
    if not isinstance(raw, Mapping):
        hint = closest(name, list(steps or ()))
        message = f"no step named {name!r}" + (f" (did you mean {hint!r}?)" if hint else "")
        raise SpecError([ctx.issue(message, *path)])
    try:
        step = StepSpec.model_validate(raw)
    except ValidationError:
        raise SpecError([ctx.issue(f"step {name!r} is not valid (see its own errors)", *path)]) from None
    if not step.tool:
        raise SpecError([ctx.issue(f"step {name!r} is not marked 'tool: true', so it cannot be a tool", *path)])
    own = BuildContext(
        step=name,
        file=ctx.file,
        base_dir=ctx.base_dir,
        config=ctx.config,
        data=ctx.data,
        check_secrets=ctx.check_secrets,
    )
    return _build(own, raw, step)


def _expr_field(step: StepSpec, exc: ExpressionError) -> str:
    if step.when is not None and exc.expression is not None and exc.expression.strip() == step.when.strip():
        return "when"
    return "with"


def _option_field(message: str) -> tuple[str, ...]:
    for key in ("map_errors", "map", "optional", "timeout", "max_concurrency", "max_iterations", "default"):
        if message.startswith(key):
            return (key,)
    if "has no parameter" in message:
        return ("with",)
    return ()
