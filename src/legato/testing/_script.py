"""What the fake provider answers: scripted replies, faults and latency.

A call to the fake provider is answered by, in order: the first queued script item
whose filter matches the call (:meth:`FakeProvider.script`), else the first
probabilistic fault rule that fires (:meth:`FakeProvider.inject`, drawn from a
seeded random generator so a run is reproducible), else the default
:class:`Reply` (which echoes the last user message).

Everything here is a frozen pydantic model so that a script file for
``legato fake-provider --script F`` is validated with messages that name the field.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from legato.errors import ConfigError
from legato.providers._types import ToolCall, Usage

__all__ = [
    "ERROR_KINDS",
    "Fault",
    "FaultRule",
    "Latency",
    "Reply",
    "Script",
    "load_script",
]

ErrorKind = Literal[
    "bad_request",
    "auth",
    "permission",
    "not_found",
    "rate_limit",
    "quota",
    "context_length",
    "content_filter",
    "server",
    "overloaded",
]
ERROR_KINDS: tuple[str, ...] = ErrorKind.__args__  # type: ignore[attr-defined]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Latency(_Frozen):
    """A delay distribution in seconds, sampled before the response headers.

    ``fixed``: always ``value``; ``uniform``: between ``low`` and ``high``;
    ``lognormal``: median ``median`` with shape ``sigma`` (the usual long tail of a
    real API); ``normal``: mean ``mean``, deviation ``stddev``, clipped at 0.
    """

    distribution: Literal["fixed", "uniform", "lognormal", "normal"] = "fixed"
    value: float = Field(default=0.0, ge=0)
    low: float = Field(default=0.0, ge=0)
    high: float = Field(default=0.0, ge=0)
    median: float = Field(default=0.0, ge=0)
    sigma: float = Field(default=0.5, ge=0)
    mean: float = Field(default=0.0, ge=0)
    stddev: float = Field(default=0.0, ge=0)

    @classmethod
    def fixed(cls, value: float) -> Latency:
        return cls(distribution="fixed", value=value)

    @classmethod
    def uniform(cls, low: float, high: float) -> Latency:
        return cls(distribution="uniform", low=low, high=high)

    @classmethod
    def lognormal(cls, median: float, sigma: float = 0.5) -> Latency:
        return cls(distribution="lognormal", median=median, sigma=sigma)

    @classmethod
    def normal(cls, mean: float, stddev: float) -> Latency:
        return cls(distribution="normal", mean=mean, stddev=stddev)

    def sample(self, rng: random.Random) -> float:
        if self.distribution == "uniform":
            return rng.uniform(self.low, self.high)
        if self.distribution == "lognormal":
            return 0.0 if self.median <= 0 else rng.lognormvariate(math.log(self.median), self.sigma)
        if self.distribution == "normal":
            return max(0.0, rng.gauss(self.mean, self.stddev))
        return self.value


class Reply(_Frozen):
    """A successful answer.

    ``text=None`` echoes the last user message (chat) or the input (TGI). Streams
    split ``text`` and each tool call's ``arguments`` into pieces of ``chunk_chars``
    characters. ``usage=None`` counts about 4 characters per token. ``delay`` is
    waited before the headers, ``first_chunk_delay`` between the headers and the
    first body byte (a slow first byte), ``chunk_delay`` between stream events.
    """

    kind: Literal["reply"] = "reply"
    text: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter"] | None = None
    usage: Usage | None = None
    model: str | None = None
    vectors: list[list[float]] | None = None
    labels: list[tuple[str, float]] | None = None
    chunk_chars: int = Field(default=4, ge=1)
    delay: float = Field(default=0.0, ge=0)
    first_chunk_delay: float = Field(default=0.0, ge=0)
    chunk_delay: float = Field(default=0.0, ge=0)


class Fault(_Frozen):
    """A failure, reproduced the way the real APIs fail.

    * ``error``: an HTTP error with the exact status, body and headers the API
      being called sends for ``error`` (see :data:`ERROR_KINDS`), e.g. OpenAI
      ``429 insufficient_quota`` or Anthropic ``529 overloaded_error``.
    * ``http``: any ``status`` with a raw ``body`` and ``headers``.
    * ``stream_error``: a stream that sends ``after_chunks`` events, then the API's
      mid-stream error event for ``error``.
    * ``disconnect``: the connection is closed after ``after_chunks`` events
      (or half of a JSON body), with the HTTP body left incomplete.
    * ``truncate``: the stream ends cleanly after ``after_chunks`` events but
      without its end marker (``[DONE]`` / ``message_stop``).
    * ``malformed``: 200 with a body (or an SSE event) that is not valid JSON.
    * ``reset``: the TCP connection is reset before any response byte.
    """

    kind: Literal["error", "http", "stream_error", "disconnect", "truncate", "malformed", "reset"]
    error: ErrorKind = "server"
    status: int | None = Field(default=None, ge=100, le=599)
    message: str | None = None
    body: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    retry_after: float | None = Field(default=None, ge=0)
    retry_after_ms: int | None = Field(default=None, ge=0)
    after_chunks: int = Field(default=0, ge=0)
    delay: float = Field(default=0.0, ge=0)

    @classmethod
    def http_error(cls, error: str, **kw: Any) -> Fault:
        """The API's own error response for ``error`` (one of :data:`ERROR_KINDS`)."""
        return cls.model_validate({"kind": "error", "error": error, **kw})

    @classmethod
    def rate_limited(cls, retry_after: float | None = 1.0, **kw: Any) -> Fault:
        return cls(kind="error", error="rate_limit", retry_after=retry_after, **kw)

    @classmethod
    def overloaded(cls, **kw: Any) -> Fault:
        return cls(kind="error", error="overloaded", **kw)

    @classmethod
    def server_error(cls, **kw: Any) -> Fault:
        return cls(kind="error", error="server", **kw)

    @classmethod
    def raw(cls, status: int, body: str = "", headers: dict[str, str] | None = None) -> Fault:
        return cls(kind="http", status=status, body=body, headers=headers or {})

    @classmethod
    def stream_error(cls, error: str = "overloaded", after_chunks: int = 1) -> Fault:
        return cls.model_validate({"kind": "stream_error", "error": error, "after_chunks": after_chunks})

    @classmethod
    def disconnect(cls, after_chunks: int = 1) -> Fault:
        return cls(kind="disconnect", after_chunks=after_chunks)

    @classmethod
    def truncate(cls, after_chunks: int = 1) -> Fault:
        return cls(kind="truncate", after_chunks=after_chunks)

    @classmethod
    def malformed(cls) -> Fault:
        return cls(kind="malformed")

    @classmethod
    def reset(cls) -> Fault:
        return cls(kind="reset")


Action = Annotated[Reply | Fault, Field(discriminator="kind")]
_ACTION: TypeAdapter[Reply | Fault] = TypeAdapter(Action)


class FaultRule(_Frozen):
    """Answer with ``fault`` on a ``probability`` share of the matching calls."""

    fault: Fault
    probability: float = Field(default=1.0, ge=0, le=1)
    api: str | None = None  # prefix of the API name: "openai", "anthropic.messages", "tgi", "hf"
    model: str | None = None


class ScriptItem(_Frozen):
    action: Action
    api: str | None = None
    model: str | None = None


class Script(_Frozen):
    """A whole fake-provider set-up, as loaded from a ``--script`` YAML/JSON file.

    ::

        seed: 7
        latency: {distribution: lognormal, median: 0.02, sigma: 0.6}
        default: {text: "Hello from the fake provider"}
        faults:
          - {fault: {kind: error, error: server}, probability: 0.3, api: openai}
        script:                      # consumed in order, one per matching call
          - {action: {kind: error, error: rate_limit, retry_after: 2}}
          - {action: {text: "second call"}}
    """

    seed: int | None = None
    latency: Latency | None = None
    api_key: str | None = None
    default: Reply = Reply()
    faults: list[FaultRule] = Field(default_factory=list)
    script: list[ScriptItem] = Field(default_factory=list)


def _normalise_action(raw: Any) -> Any:
    # A script item may omit ``kind: reply``.
    if isinstance(raw, dict) and "kind" not in raw:
        return {"kind": "reply", **raw}
    return raw


def load_script(path: str | Path) -> Script:
    """Read and validate a script file; errors name the field and file:line."""
    from legato._yaml import YamlSyntaxError, load_yaml, locate

    path = Path(path)
    try:
        data = load_yaml(path)
    except (OSError, YamlSyntaxError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a fake-provider script must be a mapping")
    prepared = dict(data)
    for item in prepared.get("script") or []:
        if isinstance(item, dict) and "action" in item:
            item["action"] = _normalise_action(item["action"])
    try:
        return Script.model_validate(prepared)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            pos = locate(data, loc)
            where = f"{path}:{pos[0]}:{pos[1]}" if pos else str(path)
            lines.append(f"{where}: {'.'.join(map(str, loc))}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from exc


def parse_action(raw: Any) -> Reply | Fault:
    """A Reply or Fault from a mapping (``kind`` defaults to ``reply``)."""
    return _ACTION.validate_python(_normalise_action(raw))
