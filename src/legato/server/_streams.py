"""Streamed answers of the model routes: the upstream's chunks relayed to the client as
server-sent events, in the client's format.

A stream is started before its response (:meth:`Upstream.start` waits for the first
chunk), so that an error before the first chunk gets its proper status; after that,
:class:`EventStream` relays. It is one loop, not a chain of async generators: pull a
chunk, let the format's writer encode it (``ChunkWriter`` for OpenAI, ``StreamWriter``
for Anthropic: the bytes around a text delta are built once per stream, so a chunk
costs one JSON string escape), write it. An error after the first chunk is written in
the stream in the client's format; the usage and cost are settled once the stream
ends, however it ends (finished, failed, or the client gone).

The per-chunk deadline (``timeout``: the upstream must produce each chunk within it)
costs no timer per chunk: the loop notes when it starts waiting for the upstream, and
the one helper task every stream has anyway (it watches for the client's disconnect,
as Starlette's ``StreamingResponse`` does) wakes at the earliest moment the deadline
could have passed and ends the relay if it has. Time spent writing to a slow client is
never counted against the upstream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Protocol, TypeVar

import anyio
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from legato.errors import ModelError, ProviderTimeout
from legato.providers import ChatChunk, Usage

__all__ = ["ChunkEncoder", "EventStream", "Upstream", "json_text", "upstream_timeout", "within"]

log = logging.getLogger("legato.server")

Settle = Callable[[Usage, "float | None"], Awaitable[None]]
T = TypeVar("T")


def json_text(text: str) -> bytes:
    """``text`` as a JSON string (quotes included) in UTF-8, as ``json.dumps(text,
    ensure_ascii=False)`` writes it; a lone surrogate, which UTF-8 cannot carry, is
    written as its ``\\uXXXX`` escape instead of failing the stream."""
    try:
        return encode_basestring(text).encode()
    except UnicodeEncodeError:
        return encode_basestring_ascii(text).encode()


def upstream_timeout(timeout: float) -> ProviderTimeout:
    """The gateway's own timeout of a model call (``upstream_timeout_s``)."""
    return ProviderTimeout(f"the model did not answer within {timeout:g}s")


async def within(call: Awaitable[T], timeout: float) -> T:
    """``await call``, or :func:`upstream_timeout` after ``timeout`` seconds. A model's own
    timeout error passes as it is; a bare ``TimeoutError`` from the call is ours."""
    # A cancel scope with a deadline, as anyio.fail_after makes one, without its
    # generator-based context manager (about 3 us less per call).
    try:
        with anyio.CancelScope(deadline=anyio.current_time() + timeout) as scope:
            return await call
    except TimeoutError as exc:
        if isinstance(exc, ModelError):
            raise
        raise upstream_timeout(timeout) from exc
    assert scope.cancelled_caught  # the only way out of the block without a return
    raise upstream_timeout(timeout)


class ChunkEncoder(Protocol):
    """One stream's events in one client format."""

    def start(self) -> bytes: ...

    def chunk(self, chunk: ChatChunk) -> bytes: ...

    def finish(self, reason: str | None, usage: Usage | None) -> bytes: ...

    def error(self, exc: ModelError) -> bytes: ...


class Upstream:
    """A model's stream, its first chunk awaited by :meth:`start`; :meth:`close` settles it."""

    __slots__ = ("cost", "finish", "first", "it", "settle", "timeout", "usage")

    def __init__(self, it: AsyncIterator[ChatChunk], timeout: float, settle: Settle) -> None:
        self.it, self.timeout, self.settle = it, timeout, settle
        self.usage: Usage | None = None
        self.cost: float | None = None
        self.finish: str | None = None
        self.first: ChatChunk | None = None

    async def start(self) -> None:
        """Wait for the first chunk (``ProviderTimeout`` after ``timeout``); on any
        failure the stream is closed and settled before the error propagates."""
        try:
            self.first = await within(anext(self.it, None), self.timeout)
        except BaseException:
            await self.close()
            raise

    def note(self, chunk: ChatChunk) -> None:
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.cost is not None:
            self.cost = chunk.cost
        if chunk.finish_reason is not None:
            self.finish = chunk.finish_reason

    async def close(self) -> None:
        """Close the model's stream and settle its usage (shielded: this runs on a
        client's disconnect too)."""
        aclose = getattr(self.it, "aclose", None)
        with anyio.CancelScope(shield=True):
            try:
                if aclose is not None:
                    await aclose()
            finally:
                await self.settle(self.usage or Usage(), self.cost)


class EventStream(Response):
    """``text/event-stream`` response relaying a started :class:`Upstream` through ``encoder``."""

    media_type = "text/event-stream"

    def __init__(self, upstream: Upstream, encoder: ChunkEncoder, headers: Mapping[str, str]) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers(headers)
        self.up, self.encoder = upstream, encoder
        self._relay = anyio.CancelScope()
        self._waiting_since: float | None = None  # time.monotonic() while the relay waits for the upstream
        self._stalled = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The guard is a plain asyncio task, not a child of an anyio task group: the
        # gateway serves on asyncio only (uvicorn), and a task group with one child,
        # started and cancelled, costs about 39 us of CPU per stream against 5 us. The
        # guard only cancels the relay's scope and never raises (_guarded); however the
        # relay ends, it is cancelled and waited for, so it never outlives the response.
        guard = asyncio.get_running_loop().create_task(self._guarded(receive))
        try:
            await self._stream(send)
        except OSError as exc:  # the client went away while we wrote (ASGI 2.4 servers)
            raise ClientDisconnect() from exc
        finally:
            guard.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait((guard,))

    async def _stream(self, send: Send) -> None:
        up, encoder = self.up, self.encoder
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            with self._relay:
                tail = await self._pump(send)
            if self._relay.cancelled_caught:
                if not self._stalled:
                    return  # the client disconnected: nothing more to write
                tail = encoder.error(upstream_timeout(up.timeout))
            await send({"type": "http.response.body", "body": tail, "more_body": False})
        finally:
            await up.close()

    async def _pump(self, send: Send) -> bytes:
        """Relay chunks until the upstream ends; the stream's last bytes are returned."""
        up, encoder, it = self.up, self.encoder, self.up.it
        chunk = up.first
        out = encoder.start()
        clock = time.monotonic
        try:
            while chunk is not None:
                up.note(chunk)
                out += encoder.chunk(chunk)
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                    out = b""
                self._waiting_since = clock()
                chunk = await anext(it, None)
                self._waiting_since = None
        except ModelError as exc:
            self._waiting_since = None
            return out + encoder.error(exc)
        return out + encoder.finish(up.finish, up.usage)

    async def _guarded(self, receive: Receive) -> None:
        try:
            await self._guard(receive)
        except Exception:  # a broken receive() must not go unnoticed, nor stop the relay
            log.exception("the stream's disconnect watch failed; the stream goes on without it")

    async def _guard(self, receive: Receive) -> None:
        """End the relay when the client disconnects, or when the upstream has kept it
        waiting for a chunk for ``timeout`` seconds."""
        timeout = self.up.timeout
        while True:
            since = self._waiting_since
            wait = timeout if since is None else since + timeout - time.monotonic()
            if wait <= 0:
                self._stalled = True
                self._relay.cancel()
                return
            with anyio.move_on_after(wait):
                message = await receive()
                if message["type"] == "http.disconnect":
                    self._relay.cancel()
                    return
