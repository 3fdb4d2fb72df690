"""Request ids and the access log, as one small ASGI middleware.

- ``x-request-id``: taken from the client when it is a plain token (1-128 of
  ``A-Z a-z 0-9 . _ : / + = -``), otherwise generated (``req_`` + 32 hex). It is
  sent back on every response (errors, refusals and probes included), set on the
  request's server span (``legato.request_id``) and added to every log line written
  while the request is served (:data:`legato.observe.request_id`).
- One access-log line per request on the ``legato.access`` logger (JSON under
  ``legato serve``): request id, method, path (never the query), status, latency,
  the part of it spent waiting for the model (``upstream_ms``), the key's visible
  prefix, and for model routes the model, tokens and cost. Never a body, a header
  value or a secret.

Handlers describe their request through :func:`exchange` (the model, what it used,
extra response headers such as ``x-ratelimit-*``); the middleware adds those headers
when the response starts. An exception that escapes the app is logged here with its
traceback and answered 500 ``internal error`` in the client's format, with the id.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, cast

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from legato.observe import JsonFormatter
from legato.observe import request_id as request_id_var
from legato.observe._logging import direct_handler
from legato.server._auth import IDENTIFIED
from legato.server._errors import GatewayError, render_error, wants_anthropic

__all__ = ["AccessLog", "Exchange", "exchange", "log_access", "request_id_of"]

log = logging.getLogger("legato.access")
errors = logging.getLogger("legato.server")

_TOKEN = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
_STATE = "legato_exchange"


@dataclass
class Exchange:
    """What the access log and the response headers say about one request."""

    request_id: str
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    upstream_s: float = 0.0  # time spent waiting for the model (adaptive admission leaves it out)

    def used(self, input_tokens: int, output_tokens: int, cost: float | None) -> None:
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost


def exchange(scope_or_request: Any) -> Exchange | None:
    """The :class:`Exchange` of a request (a Starlette ``Request`` or an ASGI scope)."""
    scope = getattr(scope_or_request, "scope", scope_or_request)
    state = scope.get("state")
    return state.get(_STATE) if isinstance(state, dict) else None


def request_id_of(scope: Scope) -> str:
    """The client's ``x-request-id`` when it is a plain token, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if _TOKEN.fullmatch(text):
                return text
            break
    return "req_" + os.urandom(16).hex()  # as unique as uuid4().hex, a quarter of its cost


def _on_span(rid: str) -> None:
    if "opentelemetry.trace" not in sys.modules:
        return  # no tracing imported: no span can be current
    from opentelemetry import trace

    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("legato.request_id", rid)


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ex = Exchange(request_id_of(scope))
        scope.setdefault("state", {})[_STATE] = ex
        token = request_id_var.set(ex.request_id)
        _on_span(ex.request_id)
        started = time.perf_counter()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in ex.headers.items()]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", ex.request_id.encode()), *extra]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            if status != 0:
                raise  # the answer had started: the server closes the connection
            errors.error("unhandled error on %s %s", scope.get("method"), scope.get("path"), exc_info=exc)
            await self._internal_error(scope, receive, sending)
        finally:
            log_access(scope, ex, status, time.perf_counter() - started)
            request_id_var.reset(token)

    @staticmethod
    async def _internal_error(scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
        anthropic = wants_anthropic(scope.get("path", ""), headers)
        await render_error(GatewayError(500, "internal", "internal error"), anthropic)(scope, receive, send)


_MSG = "%s %s %s %.1fms"


def log_access(scope: Scope, ex: Exchange, status: int, elapsed: float) -> None:
    """The access-log line of one request."""
    if not log.isEnabledFor(logging.INFO):
        return
    state = scope.get("state", {})
    key = state.get("api_key") or state.get(IDENTIFIED)  # the route's check, or the middleware's
    fields: dict[str, Any] = {
        "request_id": ex.request_id,
        "method": scope.get("method"),
        "path": scope.get("path"),
        "status": status or 499,  # 499: the client went away before an answer started
        "latency_ms": round(elapsed * 1000, 3),
        "upstream_ms": round(ex.upstream_s * 1000, 3),
        "key_prefix": getattr(key, "prefix", None),
        "model": ex.model,
        "input_tokens": ex.input_tokens,
        "output_tokens": ex.output_tokens,
        "cost": ex.cost,
    }
    args = (fields["method"], fields["path"], fields["status"], fields["latency_ms"])
    handler = direct_handler(log, logging.INFO)
    if handler is None:
        log.handle(_record(args, fields))
        return
    # legato's own JSON handler alone: the line it would write, without a LogRecord
    try:
        line = cast(JsonFormatter, handler.formatter).line(time.time(), "INFO", log.name, _MSG % args, fields)
        with handler.lock or nullcontext():
            handler.stream.write(line + handler.terminator)
            handler.flush()
    except Exception:  # as StreamHandler.emit: reported by logging's error handler
        handler.handleError(_record(args, fields))


def _record(args: tuple[Any, ...], fields: dict[str, Any]) -> logging.LogRecord:
    """The access line's record, made without logging's search of the stack for the
    caller (the line says where it comes from: the ``legato.access`` logger)."""
    return log.makeRecord(log.name, logging.INFO, __file__, 0, _MSG, args, None, extra=fields)
