"""Errors in the client's own format.

Every failure the gateway answers becomes one :class:`GatewayError` (status, kind,
message, code, param, headers). It is rendered as the OpenAI error object
(``{"error": {"message", "type", "param", "code"}}``) everywhere except under
``/v1/messages``, where clients speak Anthropic and get
``{"type": "error", "error": {"type", "message"}}``. The official SDKs map these
statuses and shapes to their own exception classes.

Messages never contain the API key or the request headers: they are written here
from the error class and, for upstream failures, the provider's message (which the
adapters already stripped of credentials).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from legato.errors import (
    AuthenticationFailed,
    BadRequest,
    BudgetBusy,
    BudgetExceeded,
    ConnectionFailed,
    ContentFiltered,
    ContextWindowExceeded,
    InvalidAPIKey,
    LegatoError,
    LimitsUnavailable,
    MalformedResponse,
    ModelError,
    ModelNotFound,
    NoDeploymentAvailable,
    Overloaded,
    PermissionDenied,
    ProviderTimeout,
    QuotaExhausted,
    RateLimited,
    RunNotFound,
    ScopeDenied,
    ServerError,
    StreamInterrupted,
)

__all__ = [
    "AnthropicError",
    "GatewayError",
    "OpenAIError",
    "error_response",
    "error_responses",
    "from_exception",
    "invalid_request",
    "is_anthropic_path",
    "render_error",
    "wants_anthropic",
]

# OpenAI error "type" per kind; Anthropic uses its own vocabulary (below).
_OPENAI_TYPE = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "too_large": "invalid_request_error",
    "rate_limit": "rate_limit_error",
    "quota": "insufficient_quota",
    "overloaded": "server_error",
    "upstream": "server_error",
    "timeout": "timeout_error",
    "internal": "server_error",
    "conflict": "invalid_request_error",
}
_ANTHROPIC_TYPE = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "too_large": "request_too_large",
    "rate_limit": "rate_limit_error",
    "quota": "rate_limit_error",
    "overloaded": "overloaded_error",
    "upstream": "api_error",
    "timeout": "timeout_error",
    "internal": "api_error",
    "conflict": "invalid_request_error",
}


class GatewayError(LegatoError):
    """An error answer: HTTP ``status``, a format-neutral ``kind`` and a message for the client."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self, anthropic: bool) -> dict[str, Any]:
        if anthropic:
            return {
                "type": "error",
                "error": {"type": _ANTHROPIC_TYPE.get(self.kind, "api_error"), "message": self.message},
            }
        return {
            "error": {
                "message": self.message,
                "type": _OPENAI_TYPE.get(self.kind, "server_error"),
                "param": self.param,
                "code": self.code,
            }
        }


class _OpenAIErrorObject(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(BaseModel):
    """The OpenAI error body (every route but ``/v1/messages``)."""

    error: _OpenAIErrorObject


class _AnthropicErrorObject(BaseModel):
    type: str
    message: str


class AnthropicError(BaseModel):
    """The Anthropic error body (``/v1/messages``, and clients that send ``anthropic-version``)."""

    type: Literal["error"]
    error: _AnthropicErrorObject


def error_responses(described: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error answers of a route: each status described, any
    other 4xx/5xx documented too (the body is always an error object), and no 422: the
    gateway answers validation errors 400, as OpenAI and Anthropic do."""
    out: dict[int | str, dict[str, Any]] = {
        status: {"description": text, "model": OpenAIError | AnthropicError} for status, text in described.items()
    }
    out["4XX"] = {
        "description": "Another client error (408 body timeout, 409 conflict...)",
        "model": OpenAIError | AnthropicError,
    }
    out["5XX"] = {
        "description": "Upstream or gateway failure (502, 503 + Retry-After, 504)",
        "model": OpenAIError | AnthropicError,
    }
    return out


def is_anthropic_path(path: str) -> bool:
    return path == "/v1/messages" or path.startswith("/v1/messages/")


def wants_anthropic(path: str, headers: Mapping[str, str]) -> bool:
    """Anthropic format under ``/v1/messages``, and for Anthropic clients (``anthropic-version``) anywhere."""
    return is_anthropic_path(path) or "anthropic-version" in headers


def error_response(request: Request, error: GatewayError) -> Response:
    """Render ``error`` in the format of the client that sent ``request``."""
    anthropic = wants_anthropic(request.url.path, request.headers)
    return render_error(error, anthropic)


def render_error(error: GatewayError, anthropic: bool) -> Response:
    body = json.dumps(error.body(anthropic), separators=(",", ":")).encode()
    return Response(body, status_code=error.status, media_type="application/json", headers=error.headers)


def invalid_request(errors: Sequence[Any]) -> GatewayError:
    """400 ``invalid_request_error`` for pydantic/FastAPI validation errors (as OpenAI and
    Anthropic answer them): each problem as ``field.path: message``, ``param`` the first field.
    The rejected values are never echoed."""
    parts = []
    for err in errors:
        loc = _field(err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg", "invalid")))
    message = "invalid request: " + ("; ".join(parts[:10]) or "could not read the body")
    param = _field(errors[0].get("loc", ())) if errors else None
    return GatewayError(400, "invalid_request", message, param=param or None)


def _field(loc: Sequence[Any]) -> str:
    """``messages.0.content`` for ``("body", "messages", 0, "content")``; ``body`` for the body itself."""
    path = list(loc[1:]) if len(loc) > 1 and loc[0] == "body" else list(loc)
    return ".".join(str(p) for p in path)


def _retry_after(seconds: float | None) -> dict[str, str]:
    if seconds is None or seconds < 0 or not math.isfinite(seconds):
        return {}
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def from_exception(exc: BaseException) -> GatewayError:
    """Map a legato error (or anything else) to the answer the client gets."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, InvalidAPIKey):
        return GatewayError(401, "authentication", str(exc) or "invalid API key", code="invalid_api_key")
    if isinstance(exc, ScopeDenied):
        return GatewayError(403, "permission", str(exc) or "permission denied", code="permission_denied")
    if isinstance(exc, BudgetExceeded | LimitsUnavailable):
        return _from_limits(exc)
    if isinstance(exc, RunNotFound):
        return GatewayError(404, "not_found", str(exc), code="run_not_found")
    if isinstance(exc, ModelError):
        return _from_model_error(exc)
    if isinstance(exc, LegatoError):
        return GatewayError(400, "invalid_request", str(exc))
    return GatewayError(500, "internal", "internal error")


def _from_limits(exc: BudgetExceeded | LimitsUnavailable) -> GatewayError:
    if isinstance(exc, LimitsUnavailable):  # never the Redis exception's text
        message = "the limits and budgets store is unavailable; retry shortly"
        headers = _retry_after(exc.retry_after)
        return GatewayError(503, "overloaded", message, code="limits_unavailable", headers=headers)
    if isinstance(exc, BudgetBusy):
        return GatewayError(429, "rate_limit", str(exc), code="budget_busy", headers={"Retry-After": "1"})
    return GatewayError(429, "quota", str(exc), code="budget_exceeded")


_TRANSPORT_MESSAGES: tuple[tuple[type[ModelError], str], ...] = (
    (ProviderTimeout, "did not answer in time"),
    (ConnectionFailed, "could not be reached"),
    (StreamInterrupted, "cut the stream before its end"),
    (MalformedResponse, "sent an answer that could not be read"),
)


def _upstream_message(exc: ModelError) -> str:
    """What the client may read of an upstream failure.

    Credential failures say only that the gateway's own credentials were refused
    (a provider's message may quote the key it was sent); everything else passes
    through the secret redactor."""
    where = f"{exc.provider or 'the provider'}" + (f" (model {exc.model})" if exc.model else "")
    if isinstance(exc, AuthenticationFailed):
        return f"{where} rejected the gateway's credentials; this is a gateway configuration problem"
    if isinstance(exc, PermissionDenied):
        return f"{where} denied access with the gateway's credentials"
    for cls, text in _TRANSPORT_MESSAGES:
        # An adapter's message holds the connection stack's own exception text (hosts,
        # addresses); the gateway's own timeout (no provider) says what it waited for.
        if isinstance(exc, cls) and exc.provider is not None:
            return f"{where} {text}"
    from legato.observe import default_redactor

    return str(default_redactor().text(exc.message))


def _from_model_error(exc: ModelError) -> GatewayError:
    msg = _upstream_message(exc)
    # Order matters: subclasses before their bases.
    table: list[tuple[type[ModelError], int, str, str | None]] = [
        (ContextWindowExceeded, 400, "invalid_request", "context_length_exceeded"),
        (ContentFiltered, 400, "invalid_request", "content_filter"),
        (BadRequest, 400, "invalid_request", None),
        (ModelNotFound, 404, "not_found", "model_not_found"),
        (QuotaExhausted, 429, "quota", "insufficient_quota"),
        (RateLimited, 429, "rate_limit", "rate_limit_exceeded"),
        (PermissionDenied, 403, "permission", "upstream_permission_denied"),
        (AuthenticationFailed, 502, "upstream", "upstream_authentication_failed"),
        (NoDeploymentAvailable, 503, "overloaded", "no_deployment_available"),
        (Overloaded, 503, "overloaded", "overloaded"),
        (ProviderTimeout, 504, "timeout", "upstream_timeout"),
        (ConnectionFailed, 502, "upstream", "upstream_connection_failed"),
        (StreamInterrupted, 502, "upstream", "stream_interrupted"),
        (MalformedResponse, 502, "upstream", "upstream_malformed_response"),
        (ServerError, 502, "upstream", "upstream_error"),
    ]
    for cls, status, kind, code in table:
        if isinstance(exc, cls):
            headers = _retry_after(exc.retry_after) if status in (429, 503) else {}
            if status == 503 and not headers:
                headers = {"Retry-After": "1"}
            return GatewayError(status, kind, msg, code=code or exc.code, headers=headers)
    return GatewayError(502, "upstream", msg, code="upstream_error")
