"""Request protection, as one small ASGI middleware. In order, for every request but
the probes (``/healthz``, ``/readyz``, ``/metrics``):

1. Stopping (SIGTERM, after the drain window): 503 with ``Connection: close``.
2. A ``Content-Length`` over ``max_body_bytes``: 413 before the body is read.
3. Routes that need a key (``/v1/...``, ``/mcp``): the key is checked from the
   headers; a missing or unknown key is answered 401 at once, without waiting for
   a body, and the connection is closed (its unread body is never read). Wrong keys
   are counted per client address (:mod:`legato.server._throttle`): past
   ``auth_failures`` within ``auth_failure_window_s`` the address gets 429 +
   ``Retry-After`` whatever key it presents, until the window ends. A key this replica
   already holds (the master key, a cached key) is taken without a lookup.
4. Model routes, while the adaptive admission is saturated
   (:mod:`legato.server._admission`): 429 + ``Retry-After`` before the body is read.
   (On the httptools protocol such calls are usually refused even earlier, when their
   headers are parsed: :mod:`legato.server._shed`.)
5. The body is read in full within ``body_timeout_s`` (else 408) and at most
   ``max_body_bytes`` (else 413), then replayed to the app. A request whose body is
   still arriving therefore holds no in-flight slot.
6. Bounded in-flight work: at most ``max_in_flight`` requests are served at once (a
   stream counts until its last byte); one more gets 429 + ``Retry-After`` at once.
7. Model routes take an admission slot: 429 + ``Retry-After`` within milliseconds
   when the latency-following limit and its short queue are full. Only keys with the
   route's scope take part in admission (others get the route's 403). The latency
   sample a successful call gives the admission is the gateway's own share of it:
   the time from admission to the response's first byte, **less** the time the
   handler waited for the model (the answer, or a stream's first chunk: the
   request's :class:`~legato.server._access.Exchange` ``upstream_s``), **plus** the
   time the request waited for the event loop before reaching this middleware (from
   the protocol's stamp, :data:`ARRIVED`; 0 without one). The models a gateway serves
   answer in 20 ms or in 20 s; a limit following their latency would take a slow
   model's calls for queueing behind a fast one's baseline. What a concurrency limit
   can fix is the gateway's own queueing, and on a saturated worker most of it happens
   before admission, which a sample that left it out would never see. The time spent
   reading the body (and looking up an uncached key) is left out too: a slow uploader
   is not the gateway being slow.

During the drain window (SIGTERM, before stopping) requests are served normally,
with ``Connection: close`` so that kept-alive clients reconnect elsewhere.

Early answers (401, 408, 413, 503) carry ``Connection: close``: the server then
closes the socket instead of reading a body nobody will use. A pure ASGI class
rather than Starlette's ``BaseHTTPMiddleware``: it costs a few microseconds and does
not buffer streams.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import StrEnum

import anyio
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from legato.errors import InvalidAPIKey, LegatoError
from legato.server._access import Exchange, exchange
from legato.server._admission import Admission
from legato.server._auth import IDENTIFIED, Authenticator, presented_key
from legato.server._body import replay
from legato.server._conn import ARRIVED, BODY_COMPLETE
from legato.server._errors import GatewayError, from_exception, render_error, wants_anthropic
from legato.server._shed import MODEL_ROUTES, overloaded
from legato.server._throttle import FailureThrottle

__all__ = ["Load", "Phase", "Protection", "body_too_large"]

log = logging.getLogger("legato.server")

EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})
CLOSE = {"Connection": "close"}


def body_too_large(limit: int) -> GatewayError:
    message = f"request body exceeds {limit} bytes"
    return GatewayError(413, "too_large", message, code="request_too_large", headers=CLOSE)


def _needs_key(path: str) -> bool:
    return path.startswith("/v1/") or path == "/mcp"


class Phase(StrEnum):
    SERVING = "serving"
    DRAINING = "draining"  # not ready, still serving (the drain window)
    STOPPING = "stopping"  # refusing new requests, finishing those in flight


class Load:
    """Shared by the middleware, ``/readyz`` and the shutdown path of ``legato serve``."""

    def __init__(
        self,
        *,
        max_in_flight: int,
        max_body_bytes: int,
        body_timeout_s: float = 30.0,
        admission: Admission | None = None,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.admission = admission
        self.in_flight = 0
        self.phase = Phase.SERVING

    @property
    def draining(self) -> bool:
        """Not ready for new traffic (the drain window or later)."""
        return self.phase is not Phase.SERVING

    def drain(self) -> None:
        """Start the drain window: report not ready, keep serving."""
        if self.phase is Phase.SERVING:
            self.phase = Phase.DRAINING

    def stop(self) -> None:
        """Refuse new requests from now on (those in flight finish)."""
        self.phase = Phase.STOPPING


class _BodyTimeout(Exception):
    pass


class _Disconnected(Exception):
    pass


class Protection:
    """``auth`` returns the gateway's :class:`Authenticator` (None: no key checks here);
    ``throttle`` counts wrong keys per client address (None: not counted)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        load: Load,
        auth: Callable[[], Authenticator] | None = None,
        throttle: FailureThrottle | None = None,
    ) -> None:
        self.app = app
        self.load = load
        self.auth = auth
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        waited = _waited(scope, self.load)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        anthropic = wants_anthropic(scope["path"], headers)
        refusal = await self._refusal(scope, headers)
        if refusal is not None:
            await render_error(refusal, anthropic)(scope, receive, send)
            return
        try:
            body = await self._read_body(scope, receive)
        except _Disconnected:
            return
        except _BodyTimeout:
            refusal = GatewayError(
                408,
                "invalid_request",
                f"the request body did not arrive within {self.load.body_timeout_s:g}s",
                code="request_timeout",
                headers=CLOSE,
            )
        except GatewayError as exc:
            refusal = exc
        if refusal is not None:
            await render_error(refusal, anthropic)(scope, receive, send)
            return
        await self._serve(scope, replay(body, receive), send, anthropic, waited)

    async def _refusal(self, scope: Scope, headers: dict[str, str]) -> GatewayError | None:
        """What is decided from the headers alone: stopping, declared size, the key."""
        load = self.load
        if load.phase is Phase.STOPPING:
            return GatewayError(503, "overloaded", "the server is shutting down", headers={**CLOSE, "Retry-After": "1"})
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > load.max_body_bytes:
            return body_too_large(load.max_body_bytes)
        if self.auth is not None and _needs_key(scope["path"]):
            refusal = await self._check_key(scope, headers)
            if refusal is not None:
                return refusal
        admission = _admission_for(scope, load)
        if admission is not None and admission.saturated():
            admission.refuse()
            return overloaded(admission.limit)
        return None

    async def _check_key(self, scope: Scope, headers: dict[str, str]) -> GatewayError | None:
        """Identify the caller from the headers (kept in the scope state), or the refusal."""
        assert self.auth is not None
        auth = self.auth()
        client = scope["client"][0] if scope.get("client") else "unknown"
        throttle = self.throttle if presented_key(headers) is not None else None  # a missing key guesses nothing
        if throttle is not None and (wait := throttle.blocked(client)) is not None:
            return _throttled(wait)
        key = auth.known(headers)
        if key is None:
            if throttle is not None and (wait := await throttle.retry_after(client)) is not None:
                return _throttled(wait)  # over the limit on another replica
            try:
                key = await auth.identify(Request(scope))
            except InvalidAPIKey as exc:
                if throttle is not None and (wait := await throttle.failed(client)) is not None:
                    return _throttled(wait)
                return _closing_error(exc)
            except LegatoError as exc:
                return _closing_error(exc)
            except Exception:
                log.exception("the key store did not answer")
                return GatewayError(
                    503, "overloaded", "API keys cannot be checked right now; retry shortly",
                    code="key_store_unavailable", headers={**CLOSE, "Retry-After": "1"},
                )  # fmt: skip
        scope.setdefault("state", {})[IDENTIFIED] = key
        return None

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        body = _Body(self.load.max_body_bytes)
        # When the protocol holds the whole body, receive() does not wait: no deadline needed.
        if scope.get("state", {}).get(BODY_COMPLETE) and body.take(await receive()):
            return body.bytes()
        with anyio.move_on_after(self.load.body_timeout_s):
            while not body.take(await receive()):
                pass
            return body.bytes()
        raise _BodyTimeout

    async def _serve(self, scope: Scope, receive: Receive, send: Send, anthropic: bool, waited: float) -> None:
        load = self.load
        if load.in_flight >= load.max_in_flight:
            err = GatewayError(
                429,
                "rate_limit",
                f"the server is at capacity ({load.max_in_flight} requests in flight); retry shortly",
                code="server_overloaded",
                headers={"Retry-After": "1"},
            )
            await render_error(err, anthropic)(scope, receive, send)
            return
        if load.draining:
            send = _closing(send)
        admission = _admission_for(scope, load)
        if admission is not None and not await admission.acquire():
            await render_error(overloaded(admission.limit), anthropic)(scope, receive, send)
            return
        load.in_flight += 1
        timing = _Timing(send, admission.clock if admission is not None else time.monotonic, waited, exchange(scope))
        try:
            await self.app(scope, receive, timing.send if admission is not None else send)
        finally:
            load.in_flight -= 1
            if admission is not None:
                admission.release(timing.rtt())


class _Body:
    """A request body read message by message, within ``limit`` bytes."""

    __slots__ = ("chunks", "limit", "seen")

    def __init__(self, limit: int) -> None:
        self.chunks: list[bytes] = []
        self.limit = limit
        self.seen = 0

    def take(self, message: Message) -> bool:
        """Add one message of the body; True when it was the last."""
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        self.seen += len(chunk)
        if self.seen > self.limit:
            raise body_too_large(self.limit)
        self.chunks.append(chunk)
        return not message.get("more_body", False)

    def bytes(self) -> bytes:
        return b"".join(self.chunks)


def _closing_error(exc: LegatoError) -> GatewayError:
    err = from_exception(exc)
    return GatewayError(err.status, err.kind, err.message, code=err.code, headers={**err.headers, **CLOSE})


def _throttled(wait: int) -> GatewayError:
    message = f"too many failed authentications from this address; retry in {wait}s"
    headers = {**CLOSE, "Retry-After": str(wait)}
    return GatewayError(429, "rate_limit", message, code="too_many_failed_authentications", headers=headers)


def _admission_for(scope: Scope, load: Load) -> Admission | None:
    """The admission a request takes part in: model routes, for keys with the route's
    scope (a key without it is answered 403 by the route, never shed or admitted)."""
    needs = MODEL_ROUTES.get(scope["path"])
    if needs is None or load.admission is None:
        return None
    key = scope.get("state", {}).get(IDENTIFIED)
    return load.admission if key is None or key.has_scope(needs) else None


def _waited(scope: Scope, load: Load) -> float:
    """How long a request waited for the event loop between its headers' completion
    (the protocol's stamp, on the admission's clock) and now; 0 without a stamp."""
    arrived: float | None = scope.get("state", {}).get(ARRIVED)
    if arrived is None or load.admission is None:
        return 0.0
    return max(0.0, load.admission.clock() - arrived)


class _Timing:
    """Wraps ``send``: ``waited`` plus the time to the response's first byte, less the
    time waited for the model (``ex``), for successful responses."""

    def __init__(self, send: Send, clock: Callable[[], float], waited: float, ex: Exchange | None) -> None:
        self._send = send
        self._clock = clock
        self._start = clock() - waited
        self._ex = ex
        self._first: float | None = None
        self._ok = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start" and self._first is None:
            upstream = self._ex.upstream_s if self._ex is not None else 0.0
            self._first = max(0.0, self._clock() - self._start - upstream)
            self._ok = message["status"] < 400
        await self._send(message)

    def rtt(self) -> float | None:
        return self._first if self._ok else None


def _closing(send: Send) -> Send:
    async def closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return closing
