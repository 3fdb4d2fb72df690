"""The ``wait:`` step kind: pause the run for a person's approval or answer.

.. code-block:: yaml

    approve:
      wait:
        kind: approval              # or answer (any JSON value, checked against schema)
        question: Refund ${steps.order.total} to ${inputs.customer}?
        timeout: 86400              # optional, seconds; needs a default
        default: false              # the answer when nobody answered in time

See :func:`legato.engine.wait_for` for the Python form and
``docs/durable-runs.md`` for how a waiting run is stored and resumed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from legato.engine import wait_for
from legato.errors import SpecError
from legato.spec import BuildContext, StepBuild
from legato.spec._models import KIND_COMMON_KEYS

__all__ = ["build"]

_OWN_KEYS = frozenset({"kind", "question", "schema", "timeout", "default"})


def build(spec: Mapping[str, Any], ctx: BuildContext) -> StepBuild:
    """Build a ``wait:`` step (the factory the spec loader calls)."""
    issues = [ctx.issue(f"unknown field {key!r}", key) for key in spec if key not in KIND_COMMON_KEYS | {"wait"}]
    if "map" in spec:
        issues.append(ctx.issue("a wait step cannot map: each answer belongs to one step", "map"))
    raw = spec.get("wait")
    if not isinstance(raw, Mapping):
        issues.append(ctx.issue("'wait' must be a mapping: {kind: approval|answer, question: ...}", "wait"))
        raise SpecError(issues)
    issues += [
        ctx.issue(f"unknown field {key!r} (known: {', '.join(sorted(_OWN_KEYS))})", "wait", key)
        for key in raw
        if key not in _OWN_KEYS
    ]
    question = raw.get("question")
    if not isinstance(question, str) or not question.strip():
        issues.append(ctx.issue("'question' must be a non-empty text", "wait", "question"))
    if issues:
        raise SpecError(issues)
    options: dict[str, Any] = {"kind": raw.get("kind", "approval"), "schema": raw.get("schema")}
    if raw.get("timeout") is not None:
        options["timeout"] = raw["timeout"]
    if "default" in raw:
        options["default"] = raw["default"]
    if options["kind"] not in ("approval", "answer"):
        raise SpecError([ctx.issue(f"'kind' must be approval or answer, got {options['kind']!r}", "wait", "kind")])
    try:
        fn = wait_for(str(question), **options)
    except (ValueError, TypeError) as exc:
        field = next((k for k in ("schema", "timeout", "default") if k in str(exc)), "wait")
        raise SpecError(
            [ctx.issue(str(exc), "wait", field) if field != "wait" else ctx.issue(str(exc), "wait")]
        ) from None
    return StepBuild(fn=fn, args={"question": question}, description=f"wait for {options['kind']}: {question}")
