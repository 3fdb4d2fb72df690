"""Refusing model calls as soon as their headers are parsed, while admission is saturated.

Under sustained overload most model calls must be refused, and a refusal that goes
through the whole middleware stack (tracing, access log, protection, reading and
replaying the body, the admission queue) costs a sizeable share of what serving a
call costs. On a worker whose event loop is already busy, refused calls then wait
behind admitted ones, and the 429 arrives late, exactly when it matters most.

So while :meth:`legato.server._admission.Admission.saturated` holds, the gateway's
HTTP protocol (:mod:`legato.server._conn`) asks :class:`EarlyRefusal` about each
request the moment its headers are complete. A call to a model route that presents a
key already known to be valid (the master key, or a key in this replica's cache, with
the route's scope) is answered with a pre-rendered 429 ``server_overloaded`` with
``Retry-After`` in the route's wire format (OpenAI or Anthropic), the request id, the
access-log line and the request metrics (``legato_http_requests_total{status="429"}``),
as the full path would. Its body is never read (the protocol discards it and the
connection stays open). The protocol writes the answer's bytes
(:meth:`Refusal.respond`) straight to the socket, without an ASGI request cycle or a
task: a refusal then costs a fraction of what it did through the app. While an earlier
request of the same connection is still being answered (HTTP pipelining), the
refusal is queued behind it as the ASGI app it also is.

Anything else (no key, an unknown or uncached key, another route, admission not
saturated) goes the normal way, where the same order holds: the key is checked from
the headers first, so a client without a valid key never takes part in admission.
Refused calls are counted by the admission (``rejected`` in ``/readyz``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import lru_cache

from starlette.types import ASGIApp, Receive, Scope, Send

from legato.observe import default_metrics
from legato.server._access import Exchange, log_access, request_id_of
from legato.server._admission import Admission
from legato.server._auth import IDENTIFIED
from legato.server._errors import GatewayError, is_anthropic_path, render_error
from legato.server._keys import ApiKey

__all__ = ["MODEL_ROUTES", "EarlyRefusal", "Refusal", "overloaded"]

# The model routes and the scope each needs: what adaptive admission guards.
MODEL_ROUTES = {"/v1/chat/completions": "chat", "/v1/messages": "chat", "/v1/embeddings": "embed"}
_RAW_ROUTES = {path.encode(): scope for path, scope in MODEL_ROUTES.items()}


def overloaded(limit: int) -> GatewayError:
    """The 429 of a model call that admission refuses."""
    message = f"the server is shedding load ({limit} model calls admitted at once); retry shortly"
    return GatewayError(429, "rate_limit", message, code="server_overloaded", headers={"Retry-After": "1"})


@lru_cache(maxsize=256)
def _rendered(limit: int, anthropic: bool) -> tuple[tuple[tuple[bytes, bytes], ...], bytes]:
    response = render_error(overloaded(limit), anthropic)
    return tuple(response.raw_headers), bytes(response.body)


@lru_cache(maxsize=256)
def _wire(limit: int, anthropic: bool) -> tuple[bytes, bytes]:
    """The status line and headers (up to the request id), and the body, as bytes."""
    headers, body = _rendered(limit, anthropic)
    head = b"HTTP/1.1 429 Too Many Requests\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in headers)
    return head, body


class EarlyRefusal:
    """Decides, from a request's raw target and headers, whether to refuse it at once."""

    def __init__(self, admission: Admission, known: Callable[[Mapping[str, str]], ApiKey | None]) -> None:
        self.admission = admission
        self.known = known

    def __call__(self, target: bytes, raw_headers: list[tuple[bytes, bytes]]) -> ASGIApp | None:
        """The app answering this request's refusal, or None to serve it normally."""
        admission = self.admission
        if not admission.saturated():
            return None
        needs = _RAW_ROUTES.get(target.split(b"?", 1)[0])
        if needs is None:
            return None
        headers: dict[str, str] = {}
        for name, value in raw_headers:  # the first of repeated headers, as Starlette reads them
            headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        key = self.known(headers)
        if key is None or not key.has_scope(needs):
            return None  # answered by the full path: 401, 403, or served
        admission.refuse()
        anthropic = "anthropic-version" in headers
        return Refusal(key, admission.limit, anthropic)


class Refusal:
    """One refused call: written by the protocol (:meth:`respond`), or served as an ASGI app."""

    __slots__ = ("anthropic", "key", "limit")

    def __init__(self, key: ApiKey, limit: int, anthropic: bool) -> None:
        self.key = key
        self.limit = limit
        self.anthropic = anthropic

    def respond(self, scope: Scope, default_headers: list[tuple[bytes, bytes]], keep_alive: bool) -> bytes:
        """The whole HTTP/1.1 response (``default_headers``: the server's ``date`` and
        ``server``), with the request logged and counted as the ASGI path does."""
        started = time.perf_counter()
        scope["state"][IDENTIFIED] = self.key
        ex = Exchange(request_id_of(scope))
        head, body = _wire(self.limit, self.anthropic or is_anthropic_path(scope["path"]))
        parts = [head, *(n + b": " + v + b"\r\n" for n, v in default_headers)]
        parts += [b"x-request-id: ", ex.request_id.encode(), b"\r\n"]
        parts += [b"\r\n" if keep_alive else b"connection: close\r\n\r\n", body]
        _account(scope, ex, time.perf_counter() - started)
        return b"".join(parts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        scope.setdefault("state", {})[IDENTIFIED] = self.key
        ex = Exchange(request_id_of(scope))
        headers, body = _rendered(self.limit, self.anthropic or is_anthropic_path(scope["path"]))
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [*headers, (b"x-request-id", ex.request_id.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
        _account(scope, ex, time.perf_counter() - started)


def _account(scope: Scope, ex: Exchange, elapsed: float) -> None:
    """The access-log line and the request metrics of a refusal."""
    log_access(scope, ex, 429, elapsed)
    metrics, method, path = default_metrics(), scope.get("method", "POST"), scope["path"]
    metrics.child(metrics.http_requests, method, path, "429").inc()
    metrics.child(metrics.http_duration, method, path).observe(elapsed)
