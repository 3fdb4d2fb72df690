"""Error translation at the adapter edge: one table per provider.

Every provider failure becomes a :class:`legato.errors.ModelError` subclass with
``provider``, ``status``, ``request_id``, ``code`` and ``retry_after``. The tables
map (status, the provider's error type/code, and where a provider has no code for
it, a message phrase) to our class. Transport failures (the lean wire's, aiohttp's and
``httpx``'s exceptions) are translated once, in :func:`from_transport`; nothing from a
wire escapes an adapter.
"""

from __future__ import annotations

import email.utils
import json
import re
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from legato.errors import (
    AuthenticationFailed,
    BadRequest,
    ConnectionFailed,
    ContentFiltered,
    ContextWindowExceeded,
    MalformedResponse,
    ModelError,
    ModelNotFound,
    Overloaded,
    PermissionDenied,
    ProviderTimeout,
    QuotaExhausted,
    RateLimited,
    ServerError,
    StreamInterrupted,
)
from legato.providers import _h1

__all__ = [
    "ErrorInfo",
    "from_transport",
    "parse_retry_after",
    "translate_anthropic",
    "translate_openai",
    "translate_tgi",
    "transport_errors",
]

Clock = Callable[[], float]
ErrorInfo = tuple[type[ModelError], str, str | None]  # (class, message, provider code)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(value: str) -> float | None:
    """OpenAI reset durations: ``20ms``, ``1s``, ``6m0s``, ``1h2m3.5s``."""
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value.strip():
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


def _timestamp(value: str, now: float) -> float | None:
    """Seconds from ``now`` until an RFC 3339 timestamp (Anthropic reset headers)."""
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, moment.timestamp() - now)


def parse_retry_after(headers: Mapping[str, str], *, clock: Clock = time.time) -> float | None:
    """Seconds the provider asked us to wait, or None.

    Order: ``retry-after-ms``; ``retry-after`` (seconds or an HTTP date); then the
    rate-limit reset headers of an exhausted limit (OpenAI ``x-ratelimit-reset-*``
    durations, Anthropic ``anthropic-ratelimit-*-reset`` timestamps).
    """
    lower = {k.lower(): v for k, v in headers.items()}
    ms = lower.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    ra = lower.get("retry-after")
    if ra:
        try:
            return max(0.0, float(ra))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(ra) if ra.strip() else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - clock())
    waits: list[float] = []
    for limit in ("requests", "tokens", "input-tokens", "output-tokens"):
        remaining = lower.get(f"x-ratelimit-remaining-{limit}") or lower.get(f"anthropic-ratelimit-{limit}-remaining")
        if remaining is not None and remaining.strip() not in ("0", ""):
            continue
        reset = lower.get(f"x-ratelimit-reset-{limit}")
        if reset:
            value = _duration(reset)
            if value is not None:
                waits.append(value)
        reset = lower.get(f"anthropic-ratelimit-{limit}-reset")
        if reset:
            value = _timestamp(reset, clock())
            if value is not None:
                waits.append(value)
    return max(waits) if waits else None


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _by_status(status: int) -> type[ModelError]:
    if status == 401:
        return AuthenticationFailed
    if status == 403:
        return PermissionDenied
    if status == 404:
        return ModelNotFound
    if status == 408:
        return ProviderTimeout
    if status == 429:
        return RateLimited
    if status in (503, 529):
        return Overloaded
    if status == 402:
        return QuotaExhausted
    if status >= 500 or status == 409:
        return ServerError
    return BadRequest


def translate_openai(status: int, body: bytes) -> ErrorInfo:
    data = _json(body)
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        message = body[:500].decode(errors="replace") or f"HTTP {status}"
        return _by_status(status), message, None
    code = err.get("code") or err.get("type")
    code = str(code) if code is not None else None
    etype = str(err.get("type") or "")
    message = str(err.get("message") or f"HTTP {status}")
    cls: type[ModelError] = _by_status(status)
    if "insufficient_quota" in (code, etype) or code == "billing_hard_limit_reached":
        cls = QuotaExhausted
    elif code == "context_length_exceeded" or "maximum context length" in message:
        cls = ContextWindowExceeded
    elif code in ("content_filter", "content_policy_violation") or etype == "content_filter":
        cls = ContentFiltered
    elif code in ("model_not_found", "deployment_not_found", "DeploymentNotFound"):
        cls = ModelNotFound
    return cls, message, code


_ANTHROPIC_TYPES: dict[str, type[ModelError]] = {
    "invalid_request_error": BadRequest,
    "request_too_large": BadRequest,
    "authentication_error": AuthenticationFailed,
    "permission_error": PermissionDenied,
    "not_found_error": ModelNotFound,
    "rate_limit_error": RateLimited,
    "api_error": ServerError,
    "overloaded_error": Overloaded,
    "billing_error": QuotaExhausted,
    "timeout_error": ProviderTimeout,
}


def translate_anthropic(status: int, body: bytes | Any) -> ErrorInfo:
    data = _json(body) if isinstance(body, bytes) else body
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        message = body[:500].decode(errors="replace") if isinstance(body, bytes) else str(body)
        return _by_status(status), message or f"HTTP {status}", None
    etype = str(err.get("type") or "")
    message = str(err.get("message") or f"HTTP {status}")
    cls = _ANTHROPIC_TYPES.get(etype) or _by_status(status)
    low = message.lower()
    if cls is BadRequest:
        if "prompt is too long" in low or "context window" in low:
            cls = ContextWindowExceeded
        elif "credit balance" in low:
            cls = QuotaExhausted
        elif "content filtering" in low:
            cls = ContentFiltered
    return cls, message, etype or None


def translate_tgi(status: int, body: bytes) -> tuple[type[ModelError], str, str | None, float | None]:
    """(class, message, code, estimated_time) for TGI and the HF inference API."""
    data = _json(body)
    if not isinstance(data, dict):
        return _by_status(status), body[:500].decode(errors="replace") or f"HTTP {status}", None, None
    message = str(data.get("error") or f"HTTP {status}")
    etype = data.get("error_type")
    code = str(etype) if etype else None
    estimated = data.get("estimated_time")
    wait = float(estimated) if isinstance(estimated, int | float) else None
    cls = _by_status(status)
    if (status == 429 and etype == "overloaded") or status == 503 or wait is not None:
        cls = Overloaded
    elif cls is BadRequest and ("must be <=" in message or "maximum context" in message.lower()):
        cls = ContextWindowExceeded
    return cls, message, code, wait


def transport_errors() -> tuple[type[BaseException], ...]:
    """What the HTTP wires raise for a failure below HTTP (``except`` these, then
    :func:`from_transport`): the lean wire's and ``httpx``'s errors, and aiohttp's once
    aiohttp is loaded."""
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is None:
        return (_h1.WireError, httpx.HTTPError)
    return (_h1.WireError, httpx.HTTPError, aiohttp.ClientError)


def from_transport(exc: BaseException, *, provider: str, model: str | None, streaming: bool = False) -> ModelError:
    """Translate what the HTTP client raised (the request never got a full answer).

    The lean wire's exceptions (the default), aiohttp's (behind a proxy) and ``httpx``'s
    (HTTP/2 and injected transports) map straight to legato errors, here and nowhere
    else; a lean-wire failure maps to what the equivalent aiohttp failure gives. Besides those this
    covers ``httpx.InvalidURL`` (a bad ``base_url``, :class:`BadRequest`) and anything
    else the connection stack lets through (an ``OSError`` or an exception group from
    the socket layer: :class:`ConnectionFailed`).
    """
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    cls = _lean_class(exc, streaming) if isinstance(exc, _h1.WireError) else None
    if cls is None:
        aiohttp = sys.modules.get("aiohttp")
        cls = _aiohttp_class(exc, aiohttp, streaming) if aiohttp is not None else None
    if cls is None:
        cls = _httpx_class(exc, streaming)
    what = {
        BadRequest: "invalid URL",
        ProviderTimeout: "the provider did not answer in time",
        StreamInterrupted: "the stream was cut",
        MalformedResponse: "the body could not be decoded",
    }.get(cls, "connection failed")
    return cls(f"{what} ({detail})", provider=provider, model=model)


def _lean_class(exc: _h1.WireError, streaming: bool) -> type[ModelError]:
    """The legato class of a lean-wire failure: the class of its aiohttp equivalent."""
    if isinstance(exc, _h1.WireTimeout):  # aiohttp's ServerTimeoutError (connect, pool, socket read)
        return ProviderTimeout
    if isinstance(exc, _h1.Disconnected | _h1.ProtocolError):  # ServerDisconnected, ClientResponse/PayloadError
        return StreamInterrupted if streaming else ConnectionFailed
    return ConnectionFailed  # ConnectError: ClientConnectorError; InvalidRequest: aiohttp's ValueError


def _aiohttp_class(exc: BaseException, aiohttp: Any, streaming: bool) -> type[ModelError] | None:
    """The legato class of an aiohttp failure (subclasses before their bases), or None."""
    if isinstance(exc, aiohttp.NonHttpUrlClientError):
        return BadRequest
    if isinstance(exc, aiohttp.ServerTimeoutError):  # connect, socket read and pool timeouts
        return ProviderTimeout
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.InvalidURL):  # nothing reached the host
        return ConnectionFailed
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return StreamInterrupted if streaming else ConnectionFailed
    if isinstance(exc, aiohttp.ClientOSError):
        return StreamInterrupted if streaming else ConnectionFailed
    if isinstance(exc, aiohttp.ClientError):
        return ConnectionFailed
    return None


def _httpx_class(exc: BaseException, streaming: bool) -> type[ModelError]:
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return BadRequest
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return ProviderTimeout
    if streaming and isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return StreamInterrupted
    if isinstance(exc, httpx.TransportError):
        return ConnectionFailed
    if isinstance(exc, httpx.DecodingError):
        return MalformedResponse
    return ConnectionFailed
