"""Connection guards uvicorn does not have: a deadline for a request's headers and a
cap on the connections one client address holds open.

uvicorn closes a kept-alive connection after ``timeout_keep_alive`` of silence
between requests (the gateway sets it from ``idle_timeout_s``), but it has no
deadline for headers: a client that connects and sends nothing, or one header byte
a second, holds its socket forever. Its ``limit_concurrency`` counts every
connection together and answers 503, which lets one client lock everybody out.
Neither h11 nor httptools offers either guard, and they cannot live in the ASGI app,
which sees a request only once its headers are complete. So this module subclasses
uvicorn's two HTTP protocols with one small mixin:

- headers must be complete within ``header_timeout_s`` of the connection opening or
  of the first byte of the next request on a kept-alive connection; otherwise the
  client gets ``408`` with ``Connection: close`` and the socket is closed;
- a client address with ``max_connections_per_client`` connections open gets ``429``
  with ``Retry-After`` and ``Connection: close`` on the next one (``0``: no cap).
  Counts are per worker process; behind a load balancer every connection comes from
  the balancer's address, so raise the cap or set it to 0 there.

The request body's deadline is enforced in the app (:mod:`legato.server._protect`),
which reads the body.

One more hook lives here because it must run before the app does: on the httptools
protocol, when the request's headers are complete, the callable the app put in its
lifespan state under :data:`EARLY_ANSWER` (:class:`legato.server._shed.EarlyRefusal`)
may return an answer for this one request instead of the whole application (a 429
while admission is saturated). When no earlier request of the connection is still
being answered, the protocol writes the answer's bytes (``respond``) at once and
marks the request answered: its body, as it arrives, is discarded by uvicorn's own
rule for a request answered before its body, and the connection stays open for the
next one (closed when the client asked for that). Behind a pipelined request the
answer is queued as the ASGI app it also is, and uvicorn runs it in turn. The h11
fallback has no such hook; there the refusal comes from the app.

Both protocols also write through :class:`_Coalescing`: uvicorn writes a response's
head and body separately, and the writes of one step of the event loop are handed to
the socket as one, so an answer costs one system call and one packet instead of two.

Both protocols stamp each request with the moment its headers were complete
(``time.monotonic()`` when the bytes completing them were handed over, put in the
request's ``scope["state"]`` under :data:`ARRIVED`). On a busy worker a request then
waits for the event loop before the app runs; adaptive admission counts that wait
in its latency samples (:mod:`legato.server._protect`), since it is queueing the
limit causes. The stamp is taken at the headers' completion, not the first byte, so
a client that drips its headers does not make the gateway look slow. When the whole
body came with the headers (most requests: one packet), the state also says so under
:data:`BODY_COMPLETE`, and the body is read without a deadline (nothing to wait for).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from functools import partial
from typing import Any, cast

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["ARRIVED", "BODY_COMPLETE", "EARLY_ANSWER", "ConnectionGuard", "protocol_factory"]

EARLY_ANSWER = "legato.early_answer"  # lifespan-state entry: (target, headers) -> ASGI app | None
ARRIVED = "legato.arrived"  # request-state entry: time.monotonic() when the headers were complete
BODY_COMPLETE = "legato.body_complete"  # request-state entry: True when the body came with the headers


def _raw_error(status: str, message: str, code: str, extra: str = "") -> bytes:
    kind = "rate_limit_error" if status.startswith("429") else "invalid_request_error"
    body = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"{extra}connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class ConnectionGuard:
    """The limits, and the open connections counted per client address (one worker)."""

    def __init__(self, *, header_timeout_s: float, max_connections_per_client: int) -> None:
        self.header_timeout_s = header_timeout_s
        self.max_per_client = max_connections_per_client
        self.open: Counter[str] = Counter()
        self.timed_out = _raw_error(
            "408 Request Timeout",
            f"the request headers did not arrive within {header_timeout_s:g}s",
            "request_timeout",
        )
        self.too_many = _raw_error(
            "429 Too Many Requests",
            f"too many connections from this address (at most {max_connections_per_client})",
            "too_many_connections",
            "retry-after: 1\r\n",
        )

    def admit(self, host: str) -> bool:
        if self.max_per_client and self.open[host] >= self.max_per_client:
            return False
        self.open[host] += 1
        return True

    def release(self, host: str) -> None:
        self.open[host] -= 1
        if self.open[host] <= 0:
            del self.open[host]


class _Coalescing:
    """A connection's transport whose writes within one step of the event loop go out
    as one ``send``.

    uvicorn writes a response's head and its body separately: two system calls and,
    with ``TCP_NODELAY``, two packets for every answer, though the body follows the
    head within the same step of the loop. The first write of a step is held and
    handed on either by the next write (head and body together) or, if none comes, at
    the end of the step (``call_soon``): nothing waits longer than the step that wrote
    it. Closing hands on what is held first. Everything else is the transport's own.
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is None:
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
            return
        held, self._held = self._held, None
        self._transport.write(held + data)

    def writelines(self, lines: Any) -> None:
        self.write(b"".join(lines))

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Guarded:
    """Mixed into a uvicorn HTTP protocol (which provides ``transport``, ``client``,
    ``cycle`` and ``loop``). A new ``cycle`` object means a request's headers are complete."""

    transport: asyncio.Transport
    client: tuple[str, int] | None
    cycle: Any
    loop: asyncio.AbstractEventLoop

    def __init__(self, *args: Any, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = guard
        self._host: str | None = None
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self.transport = cast("asyncio.Transport", _Coalescing(self.transport, self.loop))  # the cycles write here
        host = self.client[0] if self.client else "unknown"
        if not self._guard.admit(host):
            self.transport.write(self._guard.too_many)
            self.transport.close()
            return
        self._host = host
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._host is not None:
            self._guard.release(self._host)
            self._host = None
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        before, arrived = self.cycle, time.monotonic()
        super().data_received(data)  # type: ignore[misc]
        if self.cycle is not before:  # headers complete: the request's task is created, not yet run
            state = self.cycle.scope["state"]
            state[ARRIVED] = arrived
            if not getattr(self.cycle, "more_body", True):
                state[BODY_COMPLETE] = True
            self._disarm()
        elif self._header_timer is None and (before is None or before.response_complete):
            self._arm()  # the first bytes of the next request on a kept-alive connection

    def _arm(self) -> None:
        if self._header_timer is None and not self.transport.is_closing():
            self._header_timer = self.loop.call_later(self._guard.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.write(self._guard.timed_out)
            self.transport.close()


class _NoWaiter:
    """Where uvicorn signals a request's reader (``message_event``): nobody reads an answered request."""

    def set(self) -> None:
        return None


class _Answered:
    """The cycle of a request the protocol answered itself: complete from the start."""

    __slots__ = ("scope",)
    response_complete = True
    disconnected = False
    message_event = _NoWaiter()

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope


class GuardedHttpTools(_Guarded, HttpToolsProtocol):
    """uvicorn's httptools protocol with the header deadline, the per-client cap and
    the early answer."""

    app_state: dict[str, Any]
    url: bytes
    headers: list[tuple[bytes, bytes]]
    root_path: str
    parser: Any
    pipeline: Any
    server_state: Any

    def on_headers_complete(self) -> None:
        early = self.app_state.get(EARLY_ANSWER)
        answer = early(self.url, self.headers) if early is not None else None
        if answer is None:
            super().on_headers_complete()
            return
        idle = self.cycle is None or self.cycle.response_complete
        if idle and not self.pipeline and not self.parser.should_upgrade():
            self._answer_now(answer)
            return
        app, self.app = self.app, answer  # uvicorn starts the request's task with self.app
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def _answer_now(self, answer: Any) -> None:
        """Write ``answer`` for the request whose headers just completed, without a task."""
        http_version = self.parser.get_http_version()
        scope: Any = self.scope
        scope["method"] = self.parser.get_method().decode("ascii")
        if http_version != "1.1":
            scope["http_version"] = http_version
        scope["path"] = self.root_path + self.url.split(b"?", 1)[0].decode("ascii")  # a model route: no escapes
        keep_alive = http_version != "1.0" and self.parser.should_keep_alive()
        self.cycle = _Answered(scope)  # uvicorn drops the body of an answered request
        self.transport.write(answer.respond(scope, self.server_state.default_headers, keep_alive))
        if keep_alive:
            self.on_response_complete()  # keep-alive timer, flow control, as after any answer
        else:
            self.transport.close()


class GuardedH11(_Guarded, H11Protocol):
    """uvicorn's h11 protocol with the header deadline and the per-client cap."""


def protocol_factory(http: str, guard: ConnectionGuard) -> Any:
    """The ``http=`` value for :class:`uvicorn.Config`: the guarded protocol for ``http``
    (``"httptools"`` or ``"h11"``) bound to ``guard``. A ``partial`` of a module-level
    class, so it pickles into the worker processes of ``--workers N`` (each gets its own counts)."""
    cls = GuardedHttpTools if http == "httptools" else GuardedH11
    return partial(cls, guard=guard)
