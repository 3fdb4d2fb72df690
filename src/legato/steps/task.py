"""The ``task:`` step kind: a built-in local model as a pipeline step.

::

    steps:
      entities:
        task: ner                      # ocr, ner, sentiment, embed, classify or summarize
        options: {labels: [PERSON, ORG, GPE]}   # the task's options (see legato.tasks)
        with:
          text: ${steps.ocr}           # a string, or a mapping with a "text" key (an OCR result)
        map: text                      # optional: once per item of a list, micro-batched

The input parameter is ``source`` for ``ocr`` (a file path, relative paths are
tried against the working directory and then the pipeline file's directory) and
``text`` for every other task; ``classify`` also takes ``labels`` there when they
are only known at run time (``labels: ${inputs.labels}``). The output is plain JSON: ``ocr`` -> ``{text,
pages, source}``, ``ner`` -> ``[{text, label, start, end}]``, ``sentiment`` ->
``{label, compound, ...}``, ``embed`` -> ``[float]``, ``classify`` -> ``{label,
score, scores, similarities}``, ``summarize`` -> ``{text, sentences, method}``. Generation is the
``llm:`` step's job (with a local model such as :class:`legato.tasks.LocalChatModel`).

Tasks are the shared objects of :func:`legato.tasks.get`, so a model loads once per
process. When the first task step of a pipeline runs, every task of that pipeline
starts loading in the background, so later models load while earlier steps work.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from legato.errors import ConfigError, InputError, SpecError
from legato.expressions import closest
from legato.spec import BuildContext, StepBuild
from legato.spec._models import KIND_COMMON_KEYS
from legato.tasks import Task, get, names, option_names

__all__ = ["actor_step", "build"]

_OWN_KEYS = frozenset({"task", "options", "with"})

# Tasks of one pipeline file, prefetched together. Keyed by the id of the loaded
# document (a dict, so not hashable) for exactly as long as that document lives:
# a finalizer drops the entry when it is collected, before its id can be reused.
_siblings: dict[int, list[Task[Any, Any]]] = {}


def _siblings_of(document: object) -> list[Task[Any, Any]]:
    """The tasks already built from ``document`` (a fresh list when it cannot be tracked)."""
    key = id(document)
    siblings = _siblings.get(key)
    if siblings is not None:
        return siblings
    try:
        weakref.finalize(document, _siblings.pop, key, None)
    except TypeError:  # None or a plain dict: no owner to outlive, nothing to share
        return []
    siblings = _siblings[key] = []
    return siblings


def build(spec: Mapping[str, Any], ctx: BuildContext) -> StepBuild:
    """Build a ``task:`` step (the factory the spec loader calls)."""
    own = _OWN_KEYS | KIND_COMMON_KEYS
    issues = [ctx.issue(f"unknown field {key!r}{_hint(str(key), own)}", key) for key in spec if key not in own]
    name = spec.get("task")
    options = spec.get("options") or {}
    if not isinstance(name, str) or name not in names():
        hint = _hint(name, names()) if isinstance(name, str) else ""
        issues.append(ctx.issue(f"'task' must be one of {', '.join(names())}, got {name!r}{hint}", "task"))
    if not isinstance(options, Mapping):
        issues.append(ctx.issue("'options' must be a mapping of the task's options", "options"))
    elif isinstance(name, str) and (known := option_names(name)) is not None:
        for key in options:
            if key not in known:
                takes = f"it takes {', '.join(known)}" if known else "it takes no options"
                message = f"unknown option {key!r} of task {name!r}{_hint(str(key), known)}; {takes}"
                issues.append(ctx.issue(message, "options", key))
    if issues:
        raise SpecError(issues)
    assert isinstance(name, str)
    args = dict(spec.get("with") or {})
    if name == "classify" and "labels" not in options and "labels" in args:
        return _classify_at_run_time(args, spec)
    try:
        task = get(name, **dict(options))
    except ConfigError as exc:
        raise SpecError([ctx.issue(str(exc), "options")]) from exc
    siblings = _siblings_of(ctx.data)
    if task not in siblings:
        siblings.append(task)
    fn = _step_function(task, siblings, ctx.base_dir)
    # Executors that host stateful steps (the ray executor's actors) rebuild the
    # step from this recipe once per actor, so the model loads once per actor.
    fn.legato_actor = (  # type: ignore[attr-defined]
        "legato.steps.task:actor_step",
        (name, json.dumps(dict(options), sort_keys=True, default=str), str(ctx.base_dir)),
    )
    return StepBuild(
        fn=fn,
        args=args,
        depends_on=tuple(spec.get("depends_on") or ()),
        description=f"{name} ({task.model_name or 'local model'})",
    )


def _hint(word: str, choices: Any) -> str:
    match = closest(word, list(choices))
    return f" (did you mean {match!r}?)" if match else ""


def _classify_at_run_time(args: dict[str, Any], spec: Mapping[str, Any]) -> StepBuild:
    """``classify`` with ``labels`` among the step's arguments (e.g. ``${inputs.labels}``):
    the classifier for each label set is created on first use and then shared."""

    async def classify(text: str | Mapping[str, Any], labels: Any) -> Any:
        if not isinstance(labels, list | Mapping):
            raise InputError(f"classify: labels must be a list or a mapping, got {type(labels).__name__}")
        try:
            task = get("classify", labels=labels)
        except ConfigError as exc:
            raise InputError(str(exc)) from exc
        return _jsonable(await task(_text(text)))

    return StepBuild(
        fn=classify,
        args=args,
        depends_on=tuple(spec.get("depends_on") or ()),
        description="classify (zero-shot, all-MiniLM-L6-v2)",
    )


def actor_step(name: str, options_json: str, base_dir: str) -> Callable[..., Any]:
    """The step function of ``task: name`` built afresh in another process (a Ray
    actor): the task loads there once (``warm_up``) and serves every call."""
    task = get(name, **json.loads(options_json))
    fn = _step_function(task, [task], Path(base_dir))
    fn.warm_up = task.warm_up  # type: ignore[attr-defined]
    return fn


def _step_function(task: Task[Any, Any], siblings: list[Task[Any, Any]], base_dir: Path) -> Callable[..., Any]:
    def prefetch() -> None:
        for sibling in siblings:
            sibling.prefetch()

    if task.name == "ocr":

        async def ocr(source: str | bytes) -> Any:
            prefetch()
            return _jsonable(await task(_resolve(source, base_dir)))

        return ocr

    async def run(text: str | Mapping[str, Any]) -> Any:
        prefetch()
        return _jsonable(await task(_text(text)))

    run.__name__ = run.__qualname__ = task.name
    return run


def _text(value: Any) -> str:
    """A step's text input: a string, or a mapping with a ``text`` key."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("text"), str):
        return str(value["text"])
    raise InputError(f"expected a text or a mapping with a 'text' key, got {type(value).__name__}")


def _resolve(source: Any, base_dir: Path) -> str | bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, Mapping) and isinstance(source.get("path"), str):
        source = source["path"]
    if not isinstance(source, str | Path):
        raise InputError(f"ocr: expected a file path or bytes, got {type(source).__name__}")
    path = Path(source)
    if not path.is_absolute() and not path.exists() and (base_dir / path).exists():
        path = base_dir / path
    return str(path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value
