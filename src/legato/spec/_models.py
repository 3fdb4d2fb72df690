"""Pydantic models of a pipeline YAML file (the ``PipelineSpec``).

These validate the *shape* of a file: field names, types, ranges. References,
cycles and imports are checked when the spec is compiled into a pipeline
(:func:`legato.spec.load_pipeline`), so every problem of both kinds is reported
together with its file:line:column.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "COMMON_STEP_KEYS",
    "INPUT_TYPES",
    "KIND_COMMON_KEYS",
    "PYTHON_TYPE_NAMES",
    "InputSpec",
    "LoopSpec",
    "PipelineSpec",
    "RetrySpec",
    "StepSpec",
]

INPUT_TYPES: dict[str, type | tuple[type, ...] | None] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "list": list,
    "array": list,
    "object": dict,
    "mapping": dict,
    "any": None,
}


PYTHON_TYPE_NAMES: dict[str, str] = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "dict": "object",
    "list": "list",
}
"""Python's names for the input types, accepted as spellings of the YAML names."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class InputSpec(_Strict):
    """``inputs.NAME``: ``{type, description, default, required}`` or just a type name."""

    type: Literal["string", "integer", "number", "boolean", "list", "array", "object", "mapping", "any"] = "any"
    description: str = ""
    default: Any = None
    required: bool | None = None  # default: required unless a default is given

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"type": value}
        if value is None:
            return {}
        return value

    @field_validator("type", mode="before")
    @classmethod
    def _python_name(cls, value: Any) -> Any:
        return PYTHON_TYPE_NAMES.get(value, value) if isinstance(value, str) else value

    @property
    def is_required(self) -> bool:
        if self.required is not None:
            return self.required
        return "default" not in self.model_fields_set


class RetrySpec(_Strict):
    """Retry options; see :class:`legato.retry.RetryPolicy`. ``retry_on: any`` retries
    every exception, ``retry_on: transient`` (default) only timeouts, connection and
    retryable model errors. A step's ``retries: N`` is short for ``{max_attempts: N+1,
    retry_on: any}``."""

    max_attempts: int = Field(3, ge=1, le=100)
    base_delay: float = Field(0.5, ge=0)
    multiplier: float = Field(2.0, ge=1)
    max_delay: float = Field(30.0, ge=0)
    jitter: Literal["full", "none"] = "full"
    retry_on: Literal["transient", "any"] = "transient"


class LoopSpec(_Strict):
    """``loop:``: run the step again until ``until`` holds, at most ``max_iterations`` times."""

    until: str
    max_iterations: int = Field(ge=1, le=10_000)
    on_max_iterations: Literal["return", "fail"] = "return"


class StepSpec(BaseModel):
    """One step. Common options are validated here; a step kind's own keys (e.g.
    ``prompt`` for ``llm``) are kept in ``model_extra`` and checked by its factory."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    kind: str | None = None
    uses: str | None = None
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    description: str = ""
    when: str | None = None
    map: str | None = None
    max_concurrency: int | None = Field(None, ge=1)
    timeout: float | None = Field(None, gt=0)
    retries: RetrySpec | None = None
    optional: list[str] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)
    cache: bool = False
    version: str | None = None
    resources: dict[str, Any] = Field(default_factory=dict)
    estimate_ms: float | None = Field(None, ge=0)
    loop: LoopSpec | None = None
    continue_on_error: bool = False
    default: Any = None  # what dependents get when a continue_on_error step failed (only when given)
    map_errors: Literal["fail", "collect"] = "fail"
    tool: bool = False  # only an agent's tool (``tools: [step:NAME]``), never scheduled by itself

    @field_validator("retries", mode="before")
    @classmethod
    def _retries(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("retries must be a number of extra attempts or a mapping of retry options")
        if isinstance(value, int):
            if not 0 <= value <= 99:
                raise ValueError("retries must be between 0 and 99")
            return {"max_attempts": value + 1, "retry_on": "any"}
        return value

    @field_validator("with_", mode="before")
    @classmethod
    def _with(cls, value: Any) -> Any:
        return {} if value is None else value


COMMON_STEP_KEYS = frozenset(StepSpec.model_fields) - {"with_"} | {"with"}
"""Every key a step may have whatever its kind (``uses`` and ``with`` included)."""
KIND_COMMON_KEYS = COMMON_STEP_KEYS - {"uses", "with"}
"""The common keys a step kind's factory leaves to the loader (``with`` may be its own)."""


class PipelineSpec(_Strict):
    """A pipeline file."""

    name: str = Field(min_length=1)
    description: str = ""
    version: str | None = None
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    steps: dict[str, StepSpec] = Field(min_length=1)
    outputs: dict[str, Any] = Field(default_factory=dict)
    executor: str = "local"
    executor_options: dict[str, Any] = Field(default_factory=dict)
    max_concurrency: int | None = Field(None, ge=1)
    failure_policy: Literal["fail_fast", "continue"] = "fail_fast"
    deadline: float | None = Field(None, gt=0)
    retry: RetrySpec | None = None

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("steps", mode="before")
    @classmethod
    def _steps(cls, value: Any) -> Any:
        if isinstance(value, list):
            raise ValueError("steps must be a mapping of step name to step (name: {uses: ...})")
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value
