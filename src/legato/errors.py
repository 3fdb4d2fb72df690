"""The whole legato exception tree.

Every error legato raises is a :class:`LegatoError`. Provider SDK and ``httpx``
exceptions never escape an adapter: they are translated at the adapter edge into
the :class:`ModelError` branch, which carries ``retryable``, ``provider``,
``status``, ``request_id`` and (where the provider said so) ``retry_after``.

::

    LegatoError
    ├── ConfigError                 invalid legato.yaml / settings (names the field, file:line)
    │   └── ModelUnavailable        a configured model cannot be used in this process (no API key)
    ├── SpecError                   invalid pipeline spec; ``.issues`` lists every problem
    │   └── ExpressionError         an expression does not parse or fails when evaluated
    ├── YamlSyntaxError             a YAML file cannot be read or parsed (``file``, ``line``, ``column``)
    ├── InputError                  missing or mistyped pipeline inputs (before any step runs)
    ├── RunError                    a run did not succeed
    │   ├── StepError               a step raised; names the step, the exception type and message
    │   ├── RunCancelled            the run was cancelled
    │   └── DeadlineExceeded        the run (or a step) ran past its deadline
    ├── BudgetExceeded              a budget would be overspent by the next call
    │   └── BudgetBusy              what is left is held by calls in flight that did not settle in time
    ├── LimitsUnavailable           the shared store of limits and budgets (Redis) cannot be reached
    ├── AgentError                  an agent did not answer
    │   ├── AgentLimitReached       turns, tokens, cost or time ran out first (``.outcome``, ``.result``)
    │   └── ToolError               a tool call failed and the agent was told to raise (``.tool``, ``.call_id``)
    │       ├── UnknownTool         the model named a tool the agent does not have
    │       ├── InvalidToolArguments    the arguments are not JSON or do not match the tool's schema
    │       └── ToolFailed          the tool itself raised (its exception is ``__cause__``)
    ├── ExecutorError               an executor (e.g. Ray) could not run a step
    │   └── WorkerLost              the worker or node running the step died (retryable)
    ├── StoreError                  the run store failed
    │   ├── IdempotencyConflict     same idempotency key, different request
    │   ├── RunNotFound             no run with that id
    │   │   └── AmbiguousRunId      a run-id prefix matches several runs (``candidates``)
    │   ├── ScheduleNotFound        no schedule of that name in ``schedules:`` of legato.yaml
    │   ├── LeaseLost               another worker holds (or took over) the run's lease
    │   ├── RunNotResumable         succeeded, or cancelled/dead-lettered and not forced
    │   ├── PipelineChanged         the run was started by another version of its pipeline
    │   ├── StoreCorrupt            the database file is not a legato store / is damaged
    │   ├── StoreNotFound           a reading command found no store at that path / database
    │   ├── StoreFull               the disk holding the store is full
    │   └── OutputNotStorable       a step returned a value that cannot be checkpointed
    ├── AuthError                   gateway authentication / authorisation
    │   ├── InvalidAPIKey           401: missing, unknown or revoked key
    │   └── ScopeDenied             403: the key lacks the scope or model
    ├── URLNotAllowed               a user-supplied URL points where the SSRF policy forbids
    ├── GatewayError                an HTTP error answer of the gateway (``legato.server``)
    └── ModelError                  a model call failed (one tree for every provider)
        ├── RateLimited             429 (retryable, honours ``retry_after``)
        ├── Overloaded              503/529 overloaded, model loading (retryable)
        ├── ProviderTimeout         connect/read/write/pool timeout (retryable)
        ├── ConnectionFailed        DNS, refused, reset (retryable)
        ├── ServerError             5xx (retryable)
        ├── MalformedResponse       body could not be decoded (retryable)
        ├── StreamInterrupted       a stream ended or failed before its end marker
        ├── NoDeploymentAvailable   every deployment of a group is ejected or open (retryable)
        │   └── CircuitOpen         a circuit breaker refused the call; nothing was sent
        ├── AuthenticationFailed    401 (never retried)
        ├── PermissionDenied        403 (never retried)
        ├── QuotaExhausted          429 insufficient_quota / billing (never retried)
        ├── ModelNotFound           404 model (never retried)
        └── BadRequest              400/422: the request itself is wrong (never retried)
            ├── ContextWindowExceeded   the prompt does not fit the model's context
            └── ContentFiltered         refused by the provider's content policy

``retryable`` is a class default that an instance may override (for example a
``StreamInterrupted`` raised after tokens were delivered is not retryable: the
caller already saw part of the answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AgentError",
    "AgentLimitReached",
    "AmbiguousRunId",
    "AuthError",
    "AuthenticationFailed",
    "BadRequest",
    "BudgetBusy",
    "BudgetExceeded",
    "CircuitOpen",
    "ConfigError",
    "ConnectionFailed",
    "ContentFiltered",
    "ContextWindowExceeded",
    "DeadlineExceeded",
    "EncryptionKeyError",
    "ExecutorError",
    "ExpressionError",
    "GuardrailBlocked",
    "IdempotencyConflict",
    "InputError",
    "InvalidAPIKey",
    "InvalidAnswer",
    "InvalidToolArguments",
    "LeaseLost",
    "LegatoError",
    "LimitsUnavailable",
    "MalformedResponse",
    "MissingSecret",
    "ModelError",
    "ModelNotFound",
    "ModelUnavailable",
    "NoDeploymentAvailable",
    "OutputNotStorable",
    "Overloaded",
    "PermissionDenied",
    "PipelineChanged",
    "ProviderTimeout",
    "QuotaExhausted",
    "RateLimited",
    "RunCancelled",
    "RunError",
    "RunNotFound",
    "RunNotResumable",
    "ScheduleNotFound",
    "ScopeDenied",
    "ServerError",
    "SpecError",
    "SpecIssue",
    "StepError",
    "StepNotWaiting",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreNotFound",
    "StreamInterrupted",
    "ToolError",
    "ToolFailed",
    "URLNotAllowed",
    "UnknownTool",
    "WorkerLost",
    "YamlSyntaxError",
]


class LegatoError(Exception):
    """Base class of every error legato raises.

    Every legato error pickles (process pools, Ray, the run store): it is rebuilt
    from its ``args`` without calling ``__init__``, then its attributes are restored,
    so subclasses with their own constructor need nothing extra.
    """

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_error, (type(self), self.args, self.__dict__.copy()))


def _rebuild_error(cls: type[LegatoError], args: tuple[object, ...], state: dict[str, object]) -> LegatoError:
    err = cls.__new__(cls, *args)
    err.args = args
    err.__dict__.update(state)
    return err


class ConfigError(LegatoError, ValueError):
    """Invalid configuration. The message names the field and, for files, file:line."""


class MissingSecret(ConfigError):
    """A model's ``env:NAME`` secret is not set in the environment.

    Static checks (``legato validate``, ``legato plan``) accept it; running needs it.
    """

    def __init__(self, message: str, *, variable: str) -> None:
        super().__init__(message)
        self.variable = variable


@dataclass(frozen=True, slots=True)
class SpecIssue:
    """One problem in a pipeline spec, with its location when it came from a file."""

    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    path: str | None = None  # dotted location inside the spec, e.g. "steps.summary.with.text"

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            where += ": "
        elif self.path:
            where = f"{self.path}: "
        return f"{where}{self.message}"


class SpecError(LegatoError, ValueError):
    """An invalid pipeline spec. ``issues`` lists every problem found, not just the first."""

    def __init__(self, issues: Sequence[SpecIssue] | str) -> None:
        if isinstance(issues, str):
            issues = [SpecIssue(issues)]
        self.issues: tuple[SpecIssue, ...] = tuple(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class ModelUnavailable(ConfigError):
    """Raised by a ``resolve_model`` callback for a model that is configured but cannot be
    used in this process (typically: its API key variable is not set). The group keeps
    working without it: the deployment is reported ``unavailable`` and never chosen,
    so traffic goes to the other deployments, the fallbacks or the degraded tier."""


class ExpressionError(SpecError):
    """An expression that does not parse, uses something the language forbids, or
    fails when evaluated (unknown name, missing field, wrong types)."""

    def __init__(self, message: str, *, expression: str | None = None, column: int | None = None) -> None:
        self.expression = expression
        self.column = column
        self.reason = message
        text = message if expression is None else f"{message} in expression {expression!r}"
        super().__init__([SpecIssue(text)])


class YamlSyntaxError(LegatoError, ValueError):
    """A YAML file that cannot be read or is not valid YAML; ``file``, ``line`` and
    ``column`` (1-based) say where, when known."""

    def __init__(self, message: str, file: str | None, line: int | None, column: int | None) -> None:
        self.file, self.line, self.column = file, line, column
        super().__init__(message)


class InputError(LegatoError, ValueError):
    """Missing, unknown or mistyped pipeline inputs; raised before any step runs."""


class RunError(LegatoError):
    """A run did not succeed."""


class StepError(RunError):
    """A step raised. ``step``, ``error_type`` and ``message`` describe what happened;
    the original exception is ``__cause__``."""

    def __init__(self, step: str, error: BaseException) -> None:
        self.step = step
        self.error_type = type(error).__name__
        self.message = str(error)
        super().__init__(f"step {step!r} failed: {self.error_type}: {self.message}")


class RunCancelled(RunError):
    """The run was cancelled; running steps were cancelled and recorded as such."""


class DeadlineExceeded(RunError, TimeoutError):
    """A run or step ran past its deadline."""


class BudgetExceeded(LegatoError):
    """Spending the next call would overrun a budget.

    ``scope`` names the budget (``run``, ``pipeline:NAME``, ``key:PREFIX``, ``day``),
    ``limit`` and ``spent`` are in USD.
    """

    def __init__(self, scope: str, limit: float, spent: float, needed: float = 0.0) -> None:
        self.scope = scope
        self.limit = limit
        self.spent = spent
        self.needed = needed
        super().__init__(
            f"budget {scope!r} exhausted: spent ${spent:.6f} of ${limit:.6f}"
            + (f", next call needs ~${needed:.6f}" if needed else "")
        )


class BudgetBusy(BudgetExceeded):
    """The money left in a budget is held by calls in flight, and they did not settle in time.

    Unlike its base, trying again later may succeed: those calls may cost less than
    they reserved.
    """

    def __init__(self, scope: str, limit: float, spent: float, needed: float = 0.0) -> None:
        super().__init__(scope, limit, spent, needed)
        self.args = (
            f"budget {scope!r}: what is left of ${limit:.6f} is held by calls in flight "
            f"(spent and held ${spent:.6f}, next call needs ~${needed:.6f}); retry shortly",
        )


class LimitsUnavailable(LegatoError):
    """The store that counts limits and budgets across processes (Redis) could not be reached.

    Nothing was counted or reserved. ``retry_after`` is a suggested wait in seconds.
    """

    retryable = True

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AgentError(LegatoError):
    """An agent could not produce its answer."""


class AgentLimitReached(AgentError):
    """The agent ran out of turns, tokens, money or time before it answered.

    ``outcome`` is the :class:`legato.agents.AgentOutcome` that stopped it and
    ``result`` the :class:`legato.agents.AgentResult` so far (its turns, usage and cost).
    """

    def __init__(self, message: str, *, outcome: str, result: object = None) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.result = result


class ToolError(AgentError):
    """A tool call failed and the agent's ``on_tool_error`` is ``"raise"``."""

    def __init__(self, message: str, *, tool: str, call_id: str | None = None) -> None:
        super().__init__(message)
        self.tool = tool
        self.call_id = call_id


class UnknownTool(ToolError):
    """The model called a tool that the agent does not offer."""


class InvalidToolArguments(ToolError):
    """The model's arguments are not a JSON object or do not match the tool's schema."""


class ToolFailed(ToolError):
    """The tool raised; the original exception is ``__cause__``."""


class ExecutorError(LegatoError):
    """An executor could not run a step (cluster unreachable, task could not be shipped).

    ``retryable`` says whether the same step may succeed if run again.
    """

    retryable: bool = False


class WorkerLost(ExecutorError):
    """The worker process or node running the step died before it returned."""

    retryable = True


class StoreError(LegatoError):
    """The run store failed."""


class IdempotencyConflict(StoreError):
    """The idempotency key was already used with different inputs."""


class RunNotFound(StoreError, KeyError):
    """No run with that id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "run not found"


class ScheduleNotFound(StoreError, KeyError):
    """No schedule of that name in the ``schedules:`` section of legato.yaml."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "schedule not found"


class LeaseLost(StoreError):
    """Another worker holds the run's lease, or took it over after this one's expired.

    ``owner`` names the holder and ``expires_at`` (epoch seconds) when its lease runs out.
    """

    def __init__(self, message: str, *, owner: str | None = None, expires_at: float | None = None) -> None:
        super().__init__(message)
        self.owner = owner
        self.expires_at = expires_at


class RunNotResumable(StoreError):
    """The run cannot be resumed: it succeeded, or it was cancelled or dead-lettered
    and the resume was not forced. ``status`` is the run's stored status."""

    def __init__(self, message: str, *, status: str) -> None:
        super().__init__(message)
        self.status = status


class StepNotWaiting(StoreError):
    """An answer was sent for a step that is not waiting for one (the run is not
    waiting, the step never asked, or it was answered already). ``status`` is the run's."""

    def __init__(self, message: str, *, status: str) -> None:
        super().__init__(message)
        self.status = status


class InvalidAnswer(InputError):
    """An answer does not satisfy the waiting step's schema; the message names the problem."""


class PipelineChanged(StoreError):
    """The run was started by another version of its pipeline (a step's code or the
    spec changed); resuming would mix results of two versions unless allowed."""

    def __init__(self, message: str, *, started: str, current: str) -> None:
        super().__init__(message)
        self.started = started
        self.current = current


class StoreCorrupt(StoreError):
    """The database is not a legato store, is from a newer version, or is damaged."""


class EncryptionKeyError(StoreError):
    """A store's encryption key is missing, unreadable or not the key its data was
    written with. ``ref`` is the key reference (``env:NAME`` or ``file:PATH``) when known."""

    def __init__(self, message: str, *, ref: str | None = None) -> None:
        super().__init__(message)
        self.ref = ref


class StoreNotFound(StoreError):
    """A command that only reads was pointed at a store that does not exist (nothing created it)."""


class StoreFull(StoreError):
    """The disk holding the store is full: the failed transaction wrote nothing, earlier commits are kept."""


class AmbiguousRunId(RunNotFound):
    """A run-id prefix matches more than one run; ``candidates`` lists (some of) them."""

    def __init__(self, message: str, *, candidates: list[str]) -> None:
        super().__init__(message)
        self.candidates = candidates


class OutputNotStorable(StoreError, TypeError):
    """A step returned a value the run store cannot record (a lock, an open socket or
    file, a generator...), so a resumed run could not reuse it.

    Raised by the store's event subscriber while checkpointing; the engine fails
    *that step* with it (``step``; ``index`` for a map item; ``type_name`` of the value).
    """

    def __init__(self, message: str, *, step: str, index: int | None = None, type_name: str = "") -> None:
        super().__init__(message)
        self.step = step
        self.index = index
        self.type_name = type_name


class AuthError(LegatoError):
    """Gateway authentication or authorisation failed."""


class InvalidAPIKey(AuthError):
    """401: the API key is missing, unknown, or revoked."""


class ScopeDenied(AuthError):
    """403: the key is valid but lacks the scope or model it asked for."""


class URLNotAllowed(LegatoError, ValueError):
    """A user-supplied URL (image URL, base URL) resolves to a private, loopback,
    link-local or metadata address, or uses a scheme the policy does not allow."""


class ModelError(LegatoError):
    """A model call failed. One tree for every provider.

    Attributes:
        retryable: whether the same request may succeed if sent again.
        provider: the provider name (``openai``, ``anthropic``, ...), or None.
        status: the HTTP status, when there was one.
        request_id: the provider's request id, when it sent one.
        retry_after: seconds the provider asked us to wait, when it said so.
        code: the provider's own error type/code string, when it sent one.
    """

    retryable_default: bool = False

    def __init__(
        self,
        message: str = "",
        *,
        provider: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        retryable: bool | None = None,
        model: str | None = None,
    ) -> None:
        super().__init__(message or type(self).__name__)
        self.message = message or type(self).__name__
        self.provider = provider
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after
        self.code = code
        self.model = model
        self.retryable = self.retryable_default if retryable is None else retryable

    def __str__(self) -> str:
        parts = [self.message]
        details = []
        if self.provider:
            details.append(f"provider={self.provider}")
        if self.model:
            details.append(f"model={self.model}")
        if self.status is not None:
            details.append(f"status={self.status}")
        if self.code:
            details.append(f"code={self.code}")
        if self.retry_after is not None:
            details.append(f"retry_after={self.retry_after:g}s")
        if self.request_id:
            details.append(f"request_id={self.request_id}")
        if details:
            parts.append(f"({', '.join(details)})")
        return " ".join(parts)

    def __reduce__(self) -> tuple[object, ...]:
        # Keep keyword attributes across pickling (process pools, Ray).
        return (_rebuild_model_error, (type(self), self.message, self.__dict__.copy()))


def _rebuild_model_error(cls: type[ModelError], message: str, state: dict[str, object]) -> ModelError:
    err = cls(message)
    err.__dict__.update(state)
    return err


class RateLimited(ModelError):
    """429: too many requests or tokens. ``retry_after`` says when to try again."""

    retryable_default = True


class Overloaded(ModelError):
    """The provider is overloaded (Anthropic 529, 503) or still loading the model."""

    retryable_default = True


class ProviderTimeout(ModelError, TimeoutError):
    """The provider did not answer in time (connect, read, write or pool timeout)."""

    retryable_default = True


class ConnectionFailed(ModelError):
    """The connection could not be made or was reset."""

    retryable_default = True


class ServerError(ModelError):
    """The provider answered 5xx."""

    retryable_default = True


class MalformedResponse(ModelError):
    """The provider's answer could not be decoded."""

    retryable_default = True


class StreamInterrupted(ModelError):
    """A stream ended or failed before its end marker. Never reported as a clean end."""

    retryable_default = True


class NoDeploymentAvailable(ModelError):
    """Every deployment of a group is ejected, open, or already tried for this request."""

    retryable_default = True


class CircuitOpen(NoDeploymentAvailable):
    """A circuit breaker is open (or its half-open probes are taken): the call was not
    sent. ``retry_after`` says when the breaker lets a probe through."""


class AuthenticationFailed(ModelError):
    """401: the provider rejected the credentials. Never retried."""


class PermissionDenied(ModelError):
    """403: the credentials lack access to this model or feature. Never retried."""


class QuotaExhausted(ModelError):
    """The account is out of quota or credit (e.g. OpenAI ``insufficient_quota``). Never retried."""


class ModelNotFound(ModelError):
    """The model does not exist or is not available to this account. Never retried."""


class BadRequest(ModelError, ValueError):
    """The request itself is invalid (400/422, or rejected before sending). Never retried."""


class GuardrailBlocked(BadRequest):
    """A guardrail refused the request or the answer. ``entities`` names what it found
    (entity types, never the values)."""

    def __init__(self, message: str = "", *, entities: list[str] | None = None, **kw: Any) -> None:
        kw.setdefault("code", "guardrail_blocked")
        super().__init__(message, **kw)
        self.entities = entities or []


class ContextWindowExceeded(BadRequest):
    """The prompt plus ``max_tokens`` does not fit the model's context window."""


class ContentFiltered(BadRequest):
    """The provider refused the request or response under its content policy."""
