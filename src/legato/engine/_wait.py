"""Steps that wait for a person: the request a ``wait`` step raises, and the step itself.

A wait step never returns by itself: it raises :class:`WaitForInput` with an
:class:`InputRequest` (an approval or an answer, the question, an optional JSON
schema for the answer, an optional timeout with its default). The run then
finishes what does not depend on the step and ends with status ``waiting``; a
durable store records the request and holds no worker for the run. The answer
comes back as the step's output: a resumed run receives it among its
``completed`` steps, so the step is not called again.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["InputRequest", "WaitForInput", "WaitKind", "wait_for"]


class WaitKind(enum.StrEnum):
    APPROVAL = "approval"  # the answer is true (approved) or false (rejected)
    ANSWER = "answer"  # the answer is any JSON value (checked against the schema, if any)


@dataclass(frozen=True, slots=True)
class InputRequest:
    """What a waiting step asks. ``timeout`` (seconds) with ``has_default``: when no
    answer came in time, ``default`` is the answer."""

    kind: WaitKind
    question: str
    schema: Mapping[str, Any] | None = None
    timeout: float | None = None
    default: Any = None
    has_default: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def answer_schema(self) -> Mapping[str, Any] | None:
        """The JSON schema an answer must satisfy (an approval's is a boolean)."""
        if self.kind is WaitKind.APPROVAL:
            return {"type": "boolean"}
        return self.schema

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": str(self.kind), "question": self.question}
        if self.schema is not None:
            data["schema"] = dict(self.schema)
        if self.timeout is not None:
            data["timeout"] = self.timeout
        if self.has_default:
            data["default"] = self.default
        return data


class WaitForInput(Exception):
    """Raised by a wait step: the run pauses until the request is answered."""

    def __init__(self, request: InputRequest) -> None:
        super().__init__(f"waiting for {request.kind}: {request.question}")
        self.request = request


_NO_DEFAULT: Any = object()


def wait_for(
    question: str,
    *,
    kind: WaitKind | str = WaitKind.APPROVAL,
    schema: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    default: Any = _NO_DEFAULT,
) -> Callable[..., Any]:
    """A step function that pauses the run until a person answers.

    ``question`` may hold ``${...}`` references when the step is added with
    ``args={"question": ...}``; the function's ``question`` parameter defaults to it.
    ``kind="approval"``: the step's output is ``True`` (approved) or ``False``;
    ``kind="answer"``: any JSON value valid against ``schema``. ``timeout`` needs a
    ``default``: the answer used when nobody answered within ``timeout`` seconds.
    """
    kind = WaitKind(kind)
    if kind is WaitKind.APPROVAL and schema is not None:
        raise ValueError("an approval's answer is true or false; a schema is for kind='answer'")
    if timeout is not None and (isinstance(timeout, bool) or timeout <= 0):
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    if timeout is not None and default is _NO_DEFAULT:
        raise ValueError("a timeout needs a default: the answer when nobody answers in time")
    if schema is not None:
        check_schema(schema)
    has_default = default is not _NO_DEFAULT

    async def wait(question: str = question) -> Any:
        raise WaitForInput(
            InputRequest(kind, str(question), schema, timeout, default if has_default else None, has_default)
        )

    wait.__doc__ = f"Wait for {kind}: {question}"
    return wait


def check_schema(schema: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the problem when ``schema`` is not a valid JSON schema."""
    validators: Any = importlib.import_module("jsonschema.validators")  # no type stubs
    errors: Any = importlib.import_module("jsonschema.exceptions")
    try:
        validators.Draft202012Validator.check_schema(schema)
    except errors.SchemaError as exc:
        raise ValueError(f"invalid answer schema: {exc.message}") from None


def answer_problem(request_schema: Mapping[str, Any] | None, answer: Any) -> str | None:
    """Why ``answer`` does not satisfy ``request_schema`` (None when it does)."""
    if request_schema is None:
        return None
    validators: Any = importlib.import_module("jsonschema.validators")
    errors: Any = importlib.import_module("jsonschema.exceptions")
    error = errors.best_match(validators.Draft202012Validator(request_schema).iter_errors(answer))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{error.message}" + (f" (at {where})" if where else "")
