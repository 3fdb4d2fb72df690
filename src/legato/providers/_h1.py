"""The default wire: HTTP/1.1 to the adapter's one origin, on asyncio transports and llhttp.

Why not a library. An adapter's pool talks to one origin, POSTs a JSON body it already
holds as bytes and reads a JSON or SSE answer; a gateway does that for every proxied
call. aiohttp costs about 50 µs of CPU per request for it (its request and response
objects, yarl URLs, multidicts, cookie-jar filtering, the timer context of every read)
where a keep-alive protocol on the same loop costs 15-17 µs: aiohttp alone was 15-20%
of the gateway's ~330 µs per proxied call, and it sits on a stream's path to its first
chunk. httpx costs more still (see :mod:`legato.providers._transport`). This module
keeps what a client needs and nothing per call that it can do once per pool: the
request head is bytes built once (request line per path, fixed headers per pool), the
response is parsed by ``httptools`` (llhttp, the parser aiohttp itself uses), and a
connection has one read timer, re-armed lazily, rather than a timer per read
(decision 0051).

What it does:

- a pool per wire: idle connections reused last-in first-out, at most
  ``max_connections`` open (callers wait, ``pool_timeout``), at most
  ``max_keepalive_connections`` idle, each dropped ``keepalive_expiry`` seconds after
  its last use. A connection is pooled only after a response read to its end on a
  connection both sides keep alive; any other (closed by the server, ``connection:
  close``, a body not read to its end, an error, a cancelled call) is closed;
- ``POST`` with ``content-length``; the response by ``content-length``, chunked, or
  until the server closes; its head at most 64 KiB (a larger or endless head fails the
  call, as aiohttp's line and field limits do); ``1xx`` answers skipped; ``gzip`` and ``deflate`` decoded
  (streamed bodies too), the encodings it advertises, as the aiohttp wire does;
- cookies the origin sets (``Set-Cookie``: path, ``max-age``/``expires``, ``secure``),
  sent back on later calls to the same pool;
- timeouts: connect, the wait for a pooled connection, and read (between bytes, while
  a caller waits for them); TLS with the shared trust store and SNI.

What it deliberately does not do: proxies (a pool an environment proxy applies to uses
:class:`~legato.providers._transport.AiohttpWire` instead, decided once per pool in
:meth:`LeanWire._open`, as are base URLs it does not handle: a scheme other than
``http``/``https``, credentials in the URL); HTTP/2 (``http2: true`` selects the httpx
wire); redirects (no adapter follows them); ``brotli``/``zstd`` (not advertised);
``Expect: 100-continue``, upgrades, trailers (ignored), pipelining; a write timeout (the
body is handed to the transport in one write; a response is waited for under the read
timeout, as with aiohttp); retrying a ``POST`` on a reused connection the server had
closed (aiohttp does not retry a ``POST`` either).

Failures are raised as this module's exceptions (:class:`WireError` and its subclasses)
and translated once, by ``_errors.from_transport``, to the legato errors the equivalent
aiohttp failures give.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http.cookies
import time
import urllib.request
import zlib
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import anyio
import httptools

from legato.providers._transport import (
    ACCEPT_ENCODING,
    SSL_CONTEXT,
    USER_AGENT,
    AiohttpWire,
    Head,
    Settings,
    prepare_ssl,
)

__all__ = [
    "ConnectError",
    "ConnectTimeout",
    "DecodeError",
    "Disconnected",
    "Headers",
    "InvalidRequest",
    "LeanWire",
    "PoolTimeout",
    "ProtocolError",
    "ReadTimeout",
    "WireError",
    "WireTimeout",
]

_HIGH_WATER = 256 * 1024  # unread body bytes at which reading pauses
# The most bytes read before a response's head is complete: llhttp keeps a header it has
# not seen the end of, so a server sending an endless head would grow it without bound.
_MAX_HEAD = 64 * 1024
_ONE_WRITE = 64 * 1024  # bodies up to this are joined to the head: one send


class WireError(Exception):
    """A failure below HTTP on the lean wire."""


class ConnectError(WireError):
    """The connection could not be opened (refused, name not resolved, TLS handshake)."""


class WireTimeout(WireError):
    """A timeout of the lean wire."""


class ConnectTimeout(WireTimeout):
    """The connection was not open within ``connect_timeout``."""


class PoolTimeout(WireTimeout):
    """No pooled connection came free within ``pool_timeout``."""


class ReadTimeout(WireTimeout):
    """No byte of the response came for ``read_timeout`` while the caller waited."""


class Disconnected(WireError):
    """The server closed or reset the connection before the response ended."""


class ProtocolError(WireError):
    """The response is not HTTP/1.1 this client reads."""


class DecodeError(ProtocolError):
    """The body does not decode with its ``content-encoding``."""


class InvalidRequest(WireError):
    """A header name or value that would break the request (a line break in it)."""


class Headers(dict[str, str]):
    """A response's headers: names lower-case, looked up in any case; repeated ones joined."""

    __slots__ = ()

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return dict.get(self, key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and dict.__contains__(self, key.lower())


class _Inflate:
    """``gzip`` or ``deflate`` (zlib-wrapped or raw, told apart on the first bytes)."""

    __slots__ = ("_d", "_raw_ok")

    def __init__(self, encoding: str) -> None:
        self._raw_ok = encoding == "deflate"
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS)

    def feed(self, data: bytes) -> bytes:
        try:
            out = self._d.decompress(data)
        except zlib.error:
            if not self._raw_ok:
                raise
            self._d = zlib.decompressobj(-zlib.MAX_WBITS)  # deflate sent without its zlib wrapper
            out = self._d.decompress(data)
        self._raw_ok = False
        return out

    def end(self) -> bytes:
        return self._d.flush()


def _head_too_large() -> ProtocolError:
    return ProtocolError(f"the response's head is over {_MAX_HEAD // 1024} KiB")


def _check(name: str, value: str) -> None:
    if "\r" in name or "\n" in name or ":" in name or "\r" in value or "\n" in value:
        raise InvalidRequest(f"header {name!r} holds a line break")


def _header_lines(headers: Mapping[str, str]) -> bytes:
    for name, value in headers.items():
        _check(name, value)
    return b"".join(f"{name}: {value}\r\n".encode() for name, value in headers.items())


class _Cookies:
    """The cookies the origin set, by (name, path): (value, expiry as a Unix time or None, secure)."""

    __slots__ = ("_host", "_jar")

    def __init__(self, host: str) -> None:
        self._host = host
        self._jar: dict[tuple[str, str], tuple[str, float | None, bool]] = {}

    def __bool__(self) -> bool:
        return bool(self._jar)

    def take(self, lines: list[str], target: str) -> None:
        now = time.time()
        for line in lines:
            cookie: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
            try:
                cookie.load(line)
            except http.cookies.CookieError:
                continue
            for name, morsel in cookie.items():
                domain = morsel["domain"].lstrip(".").lower()
                if domain and self._host != domain and not self._host.endswith("." + domain):
                    continue  # another site's: never sent
                path = morsel["path"]
                if not path.startswith("/"):  # the default path: the request's directory
                    path = target.split("?", 1)[0].rsplit("/", 1)[0] or "/"
                expires: float | None = None
                if morsel["max-age"]:
                    with contextlib.suppress(ValueError):
                        expires = now + int(morsel["max-age"])
                elif morsel["expires"]:
                    with contextlib.suppress(TypeError, ValueError):
                        expires = email.utils.parsedate_to_datetime(morsel["expires"]).timestamp()
                if expires is not None and expires <= now:
                    self._jar.pop((name, path), None)
                else:
                    self._jar[(name, path)] = (morsel.value, expires, bool(morsel["secure"]))

    def header(self, target: str, https: bool) -> str | None:
        now = time.time()
        path = target.split("?", 1)[0]
        sent = []
        for (name, where), (value, expires, secure) in sorted(self._jar.items(), key=lambda i: -len(i[0][1])):
            if expires is not None and expires <= now:
                del self._jar[(name, where)]
            elif (not secure or https) and (
                path == where or (path.startswith(where) and (where.endswith("/") or path[len(where)] == "/"))
            ):
                sent.append(f"{name}={value}")
        return "; ".join(sent) or None


class _Conn(asyncio.Protocol):
    """One connection and the response being read on it (llhttp calls the ``on_*`` methods)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float) -> None:
        self.loop = loop
        self.read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost = False
        self.idle_since = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.last = 0.0  # loop time of the last bytes received, or of the start of a wait
        self.waiter: asyncio.Future[None] | None = None
        self.active = False
        self._begin()

    def _begin(self) -> None:
        self.status = 0
        self.headers = Headers()
        self.set_cookie: list[str] | None = None
        self.head_done = False
        self.head_seen = 0  # bytes received while the head was not complete
        self.head_bytes = 0  # the header names and values parsed so far
        self.done = False
        self.informational = False
        self.until_close = False
        self.keep_alive = False
        self.exc: WireError | None = None
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.paused = False
        self.inflate: _Inflate | None = None

    # ---------------------------------------------------------------- asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.last = self.loop.time()
        if not self.active:  # bytes nobody asked for: this connection is not to be trusted
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            cause = exc.__context__  # what a callback of ours raised, wrapped by httptools
            if isinstance(cause, WireError):
                self._fail(cause)
            elif isinstance(cause, zlib.error):
                self._fail(DecodeError(f"the body does not decode: {cause}"))
            else:
                self._fail(ProtocolError(f"malformed response: {exc}"))
        except zlib.error as exc:
            self._fail(DecodeError(f"the body does not decode: {exc}"))
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("the server switched protocols"))
        if not self.head_done:  # a head that has not ended within the limit never will
            self.head_seen += len(data)
            if self.head_seen > _MAX_HEAD:
                self._fail(_head_too_large())

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.active and not self.done and self.exc is None:
            if self.until_close and self.head_done and exc is None:
                self._complete()
            else:
                why = f": {exc}" if exc is not None else ""
                self.exc = Disconnected(f"the server closed the connection before the response ended{why}")
        self._wake()

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself; connection_lost follows

    # ---------------------------------------------------------------- llhttp

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value)
        if self.head_bytes > _MAX_HEAD:  # a head that came whole in one read
            raise _head_too_large()
        key = name.lower().decode("latin-1")
        text = value.decode("utf-8", "surrogateescape")
        headers = self.headers
        if key in headers:
            headers[key] = dict.__getitem__(headers, key) + ", " + text
        else:
            dict.__setitem__(headers, key, text)
        if key == "set-cookie":
            if self.set_cookie is None:
                self.set_cookie = []
            self.set_cookie.append(text)

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # 100 Continue, 103 Early Hints...: the answer follows
            self.informational = True
            self.headers = Headers()
            self.set_cookie = None
            return
        self.status = status
        headers = self.headers
        encoding = headers.get("content-encoding")
        if encoding is not None:
            encoding = encoding.strip().lower()
            if encoding in ("gzip", "x-gzip", "deflate"):
                self.inflate = _Inflate("gzip" if encoding == "x-gzip" else encoding)
        self.until_close = (
            "content-length" not in headers and "transfer-encoding" not in headers and status not in (204, 304)
        )
        self.head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.inflate is not None:
            body = self.inflate.feed(body)
            if not body:
                return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        self.keep_alive = self.parser.should_keep_alive()
        self._complete()

    # ---------------------------------------------------------------- the response

    def _complete(self) -> None:
        if self.inflate is not None:
            try:
                tail = self.inflate.end()
            except zlib.error as exc:
                self._fail(DecodeError(f"the body does not decode: {exc}"))
                return
            if tail:
                self.chunks.append(tail)
        self.done = True
        self._wake()

    def _fail(self, exc: WireError) -> None:
        if self.exc is None and not self.done:
            self.exc = exc
        self.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _check_read(self) -> None:
        """The connection's one read timer: fails a wait with no bytes for ``read_timeout``."""
        self.timer = None
        if self.waiter is None or self.lost:
            return  # nobody waits: the next wait re-arms
        deadline = self.last + self.read_timeout
        if self.loop.time() >= deadline:
            self._fail(ReadTimeout(f"no response bytes for {self.read_timeout:g} s"))
        else:
            self.timer = self.loop.call_at(deadline, self._check_read)

    async def _wait(self) -> None:
        waiter = self.waiter = self.loop.create_future()
        self.last = self.loop.time()
        if self.timer is None:
            self.timer = self.loop.call_at(self.last + self.read_timeout, self._check_read)
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        try:
            await waiter
        finally:
            self.waiter = None

    def send(self, data: bytes, body: bytes | None) -> None:
        self._begin()
        self.active = True
        assert self.transport is not None
        if self.lost or self.transport.is_closing():
            self.exc = Disconnected("the server closed the connection before the request was sent")
            return
        if body is None:
            self.transport.write(data)
        else:
            self.transport.writelines((data, body))

    async def head(self) -> Head:
        while not self.head_done:
            if self.exc is not None:
                raise self.exc
            await self._wait()
        return Head(self.status, self.headers)

    async def read_all(self) -> bytes:
        while not self.done:
            if self.exc is not None:
                raise self.exc
            await self._wait()
        chunks = self.chunks
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def reusable(self) -> bool:
        """After a call: read to its end, kept alive by both sides, still open."""
        return (
            self.done
            and self.keep_alive
            and self.exc is None
            and not self.lost
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def close(self) -> None:
        self.lost = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.close()


class _Body:
    """A streamed response's body: what has arrived, joined, at each step."""

    __slots__ = ("_conn",)

    def __init__(self, conn: _Conn) -> None:
        self._conn = conn

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        while True:
            chunks = conn.chunks
            if chunks:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                conn.chunks = []
                conn.buffered = 0
                if conn.paused and conn.transport is not None:
                    conn.paused = False
                    conn.transport.resume_reading()
                return data
            if conn.done:
                raise StopAsyncIteration
            if conn.exc is not None:
                raise conn.exc
            await conn._wait()


def _proxied(scheme: str, host: str) -> bool:
    """Whether the environment names a proxy for this origin: the lookup aiohttp's
    ``get_env_proxy_for_url`` makes (``urllib``'s ``getproxies``/``proxy_bypass``)."""
    if urllib.request.proxy_bypass(host):
        return False
    return scheme in urllib.request.getproxies()


class LeanWire:
    """HTTP/1.1 to one origin over a pool of asyncio connections (see the module docstring).

    Opened on the first call: the choice of wire for this pool is made there, once.
    """

    def __init__(self, s: Settings) -> None:
        self._settings = s
        self._ready = False
        self._opening = anyio.Lock()
        self._fallback: AiohttpWire | None = None
        parts = urlsplit(s.base_url)
        self._scheme = parts.scheme.lower()
        self._host = parts.hostname or ""
        try:
            port = parts.port
        except ValueError:
            port, self._scheme = None, ""  # not a URL this wire handles
        self._https = self._scheme == "https"
        self._port = port or (443 if self._https else 80)
        self._usable = self._scheme in ("http", "https") and bool(self._host) and not (parts.username or parts.password)
        self._base_path = parts.path.rstrip("/")
        self._ssl: Any = None
        host = f"[{self._host}]" if ":" in self._host else self._host
        if port is not None and port != (443 if self._https else 80):
            host = f"{host}:{port}"
        fixed = {
            "host": host,
            "user-agent": USER_AGENT,
            "accept": "*/*",
            "accept-encoding": ACCEPT_ENCODING,
            "content-type": "application/json",
        }
        self._client_headers = {**fixed, **{k.lower(): v for k, v in s.headers.items()}}
        self._fixed = b""  # the header lines of every request, built when the pool opens
        self._lines: dict[str, tuple[bytes, str]] = {}  # path -> (request line, target)
        self._cookies = _Cookies(self._host.lower())
        self._idle: list[_Conn] = []
        self._conns: set[_Conn] = set()
        self._total = 0  # open and opening connections
        self._waiters: deque[asyncio.Future[_Conn | None]] = deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---------------------------------------------------------------- opening: the choice of wire

    async def _open(self) -> None:
        async with self._opening:  # concurrent first calls open one pool
            if not self._ready:
                await self._open_now()
                self._ready = True

    async def _open_now(self) -> None:
        """The one place a pool's wire is chosen: this wire, or aiohttp's for what it does not do.

        An environment proxy for the origin (looked up once, in a worker thread: on some
        platforms ``getproxies`` asks the system) or a base URL this wire does not handle
        sends every call of the pool through :class:`AiohttpWire`."""
        s = self._settings
        if not self._usable or await anyio.to_thread.run_sync(_proxied, self._scheme, self._host):
            self._fallback = AiohttpWire(s)
            return
        self._fixed = _header_lines(self._client_headers)
        if self._https:
            self._ssl = SSL_CONTEXT.get("default") or await anyio.to_thread.run_sync(prepare_ssl, False)
        self._loop = asyncio.get_running_loop()

    # ---------------------------------------------------------------- the request

    def _request(self, path: str, body: bytes, headers: Mapping[str, str] | None) -> tuple[bytes, bytes | None]:
        line = self._lines.get(path)
        if line is None:
            target = quote(self._base_path + "/" + path.lstrip("/"), safe="/:@!$&'()*+,;=?%-._~")
            line = self._lines[path] = (f"POST {target} HTTP/1.1\r\n".encode(), target)
        head = line[0] + self._fixed
        if headers:
            if any(k.lower() in self._client_headers for k in headers):  # a call's header over the pool's
                merged = {**self._client_headers, **{k.lower(): v for k, v in headers.items()}}
                head = line[0] + _header_lines(merged)
            else:
                head += _header_lines(headers)
        if self._cookies:
            cookie = self._cookies.header(line[1], self._https)
            if cookie is not None:
                head += _header_lines({"cookie": cookie})
        head += b"content-length: %d\r\n\r\n" % len(body)
        if len(body) <= _ONE_WRITE:
            return head + body, None
        return head, body

    async def _exchange(self, path: str, body: bytes, headers: Mapping[str, str] | None) -> tuple[_Conn, Head]:
        data, rest = self._request(path, body, headers)
        conn = await self._acquire()
        try:
            conn.send(data, rest)
            head = await conn.head()
        except BaseException:
            self._discard(conn)
            raise
        if conn.set_cookie is not None:
            self._cookies.take(conn.set_cookie, self._lines[path][1])
        return conn, head

    async def post(self, path: str, body: bytes, headers: Mapping[str, str] | None) -> tuple[Head, bytes]:
        if not self._ready:
            await self._open()
        if self._fallback is not None:
            return await self._fallback.post(path, body, headers)
        conn, head = await self._exchange(path, body, headers)
        try:
            content = await conn.read_all()
        except BaseException:
            self._discard(conn)
            raise
        self._release(conn)
        return head, content

    @asynccontextmanager
    async def stream(
        self, path: str, body: bytes, headers: Mapping[str, str] | None
    ) -> AsyncIterator[tuple[Head, AsyncIterator[bytes]]]:
        if not self._ready:
            await self._open()
        if self._fallback is not None:
            async with self._fallback.stream(path, body, headers) as answer:
                yield answer
            return
        conn, head = await self._exchange(path, body, headers)
        try:
            yield head, _Body(conn)
        except BaseException:
            self._discard(conn)
            raise
        self._release(conn)  # pooled only when the body was read to its end

    # ---------------------------------------------------------------- the pool

    async def _acquire(self) -> _Conn:
        idle = self._idle
        if idle:
            expiry = self._settings.keepalive_expiry
            now = self._loop.time()  # type: ignore[union-attr]
            while idle:
                conn = idle.pop()
                if not conn.lost and now - conn.idle_since < expiry and not conn.transport.is_closing():  # type: ignore[union-attr]
                    return conn
                self._discard(conn)
        if self._total >= self._settings.max_connections:
            conn_or_slot = await self._wait_for_pool()
            if conn_or_slot is not None:
                return conn_or_slot
        else:
            self._total += 1  # a slot for the connection about to be opened
        try:
            return await self._connect()
        except BaseException:
            self._free_slot()
            raise

    async def _wait_for_pool(self) -> _Conn | None:
        """A pooled connection handed over, or None: a free slot to open one in."""
        loop = self._loop
        assert loop is not None
        waiter: asyncio.Future[_Conn | None] = loop.create_future()
        self._waiters.append(waiter)
        timeout = self._settings.pool_timeout

        def expire() -> None:
            if not waiter.done():
                waiter.set_exception(PoolTimeout(f"no connection came free in {timeout:g} s"))

        timer = loop.call_later(timeout, expire)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()  # handed over as this call was cancelled: pass it on
                if handed is None:
                    self._free_slot()
                else:
                    self._release(handed)
            raise
        finally:
            timer.cancel()
            if not waiter.done():
                waiter.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    async def _connect(self) -> _Conn:
        s = self._settings
        loop = self._loop
        assert loop is not None
        conn = _Conn(loop, s.read_timeout)
        try:
            async with asyncio.timeout(s.connect_timeout):
                await loop.create_connection(
                    lambda: conn,
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._https else None,
                )
        except TimeoutError:
            raise ConnectTimeout(f"connecting to {self._host}:{self._port} took over {s.connect_timeout:g} s") from None
        except OSError as exc:  # refused, unreachable, name not resolved, TLS handshake
            raise ConnectError(f"cannot connect to {self._host}:{self._port}: {exc}") from exc
        self._conns.add(conn)
        return conn

    def _release(self, conn: _Conn) -> None:
        conn.active = False
        if not conn.reusable():
            self._discard(conn)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                conn.active = False
                waiter.set_result(conn)
                return
        if len(self._idle) >= self._settings.max_keepalive_connections:
            self._discard(conn)
            return
        loop = self._loop
        assert loop is not None
        conn.idle_since = loop.time()
        self._idle.append(conn)
        if self._sweep is None:
            self._sweep = loop.call_at(self._idle[0].idle_since + self._settings.keepalive_expiry, self._sweep_idle)

    def _sweep_idle(self) -> None:
        """Close the connections idle for ``keepalive_expiry`` (the oldest are at the bottom)."""
        self._sweep = None
        loop = self._loop
        assert loop is not None
        expiry = self._settings.keepalive_expiry
        now = loop.time()
        idle = self._idle
        while idle and (idle[0].lost or now - idle[0].idle_since >= expiry):
            self._discard(idle.pop(0))
        if idle:
            self._sweep = loop.call_at(idle[0].idle_since + expiry, self._sweep_idle)

    def _discard(self, conn: _Conn) -> None:
        conn.active = False
        conn.close()
        if conn in self._conns:
            self._conns.discard(conn)
            self._free_slot()

    def _free_slot(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the first caller waiting
                return
        if self._total > 0:  # a connection opened as aclose() reset the count frees no slot
            self._total -= 1

    @property
    def closed(self) -> bool:
        """No connection open and none to open until the next call (closed, or not yet opened)."""
        return not self._ready and not self._conns and self._fallback is None

    async def aclose(self) -> None:
        fallback, self._fallback = self._fallback, None
        if fallback is not None:
            await fallback.aclose()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._idle.clear()
        for conn in list(self._conns):
            conn.close()
        self._conns.clear()
        self._total = 0
        self._ready = False
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(Disconnected("the connection pool was closed"))
