"""How the HTTP adapters move bytes: the lean HTTP/1.1 wire, aiohttp's pool, or httpx.

An adapter needs two things from HTTP: POST a JSON body and get (status, headers,
body), and POST a JSON body and read the answer as it arrives (SSE). :class:`Wire`
is that seam; the adapters build payloads, translate errors and decode events
above it. A failure below it is raised as the wire's own exception (the lean wire's,
aiohttp's or ``httpx``'s) and translated once, straight to :mod:`legato.errors`, by
``_errors.from_transport``.

- :class:`~legato.providers._h1.LeanWire`, the default: HTTP/1.1 on asyncio transports
  with llhttp (``httptools``) parsing the answers, one pool per adapter, the request
  head built once per pool and path. aiohttp costs about 50 µs of CPU per request, the
  lean wire about a third of that (decision 0051, docs/benchmarks.md). It chooses, once
  per pool on its first call, to hand every call to :class:`AiohttpWire` when an
  environment proxy applies to the origin or the base URL is one it does not handle.
- :class:`AiohttpWire`: HTTP/1.1 over aiohttp's ``ClientSession``, for proxies (plain
  and ``CONNECT`` tunnels). httpx's own stack costs too much per call for a gateway:
  httpcore's pool looks at every pooled connection and polls each idle socket on every
  request (1.5-6 ms of CPU per call with a few dozen in flight), and even over a faster
  transport httpx's request and URL building, cookie handling and per-request log line
  cost about 0.4 ms (decision 0023).
- :class:`HttpxWire`: an ``httpx.AsyncClient``, for HTTP/2 (``http2=True``) and for
  an injected ``httpx`` transport (``httpx.ASGITransport`` for an in-process app,
  ``httpx.MockTransport`` in tests).

The lean and aiohttp wires send the same request: the same ``user-agent``, ``accept``
and ``accept-encoding`` (``gzip, deflate``, decoded), ``content-type:
application/json``, the client headers (auth and extras) and the per-call headers
(``traceparent``). All three honour the cookies a provider sets, for its origin.
Proxies from the environment (``HTTPS_PROXY``, ``NO_PROXY``...) are looked up once per
pool (where aiohttp's own ``trust_env`` would ask a thread on every request). A proxy's
credentials go on the request to a plain-HTTP proxy and on the ``CONNECT`` of a tunnel,
where aiohttp's deprecated ``proxy_auth=`` put them; the API key never goes on a
``CONNECT``.
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import httpx

from legato._version import __version__

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson comes with the server extra
    _orjson = None  # type: ignore[assignment]

__all__ = [
    "ACCEPT_ENCODING",
    "SSL_CONTEXT",
    "USER_AGENT",
    "AiohttpWire",
    "Head",
    "HttpxWire",
    "Wire",
    "dumps",
    "prepare_ssl",
]

SSL_CONTEXT: dict[str, ssl.SSLContext] = {}
_PREPARING = threading.Lock()

USER_AGENT = f"legato/{__version__}"
"""The ``user-agent`` of the lean and aiohttp wires (the same request from both)."""
ACCEPT_ENCODING = "gzip, deflate"
"""What the lean and aiohttp wires accept, and decode (aiohttp would add ``br``/``zstd``
when their optional packages are installed; the lean wire decodes neither)."""


def prepare_ssl(with_aiohttp: bool) -> ssl.SSLContext:
    """Load the trust store (and import aiohttp, for its wire), once per process, in a worker thread.

    Both take 100-300 ms of CPU (aiohttp builds its default SSL contexts at import,
    and the certifi bundle is parsed for every context): on the event loop that
    stalled every other task of a run at its first model call. One context serves
    every pool (an ``SSLContext`` is safe to share between connections and threads).
    """
    with _PREPARING:
        if with_aiohttp:
            import aiohttp  # noqa: F401  (imported here so that its import-time work is off the loop)
        context = SSL_CONTEXT.get("default")
        if context is None:
            context = SSL_CONTEXT["default"] = httpx.create_ssl_context()
        return context


def dumps(payload: Any) -> bytes:
    """The JSON body as httpx's ``json=`` encodes it (compact, UTF-8, no NaN).

    orjson writes it when installed (the ``server`` extra; 0.1 against 2 µs for a short
    chat request), the same bytes but for a float's exponent (``1e-7`` for ``1e-07``).
    What orjson refuses (integers beyond 64 bits, keys that are not strings, text that
    is not valid Unicode) or may write differently (NaN and infinity become ``null``;
    a body with ``null`` in it is rare on the fast path) goes to the standard library,
    which encodes it or raises the errors the adapters map to :class:`BadRequest`.
    """
    if _orjson is not None:
        try:
            body: bytes = _orjson.dumps(payload)
        except TypeError:  # orjson.JSONEncodeError
            pass
        else:
            if b"null" not in body:
                return body
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True, slots=True)
class Head:
    """The status and headers of an answer (headers case-insensitive)."""

    status: int
    headers: Mapping[str, str]


class Wire(Protocol):
    """POST a JSON body; raises the client library's exceptions (see ``_errors.transport_errors``)."""

    async def post(self, path: str, body: bytes, headers: Mapping[str, str] | None) -> tuple[Head, bytes]: ...

    def stream(
        self, path: str, body: bytes, headers: Mapping[str, str] | None
    ) -> AbstractAsyncContextManager[tuple[Head, AsyncIterator[bytes]]]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Settings:
    """What a wire is built from (the adapter's base URL, client headers and HttpOptions)."""

    base_url: str
    headers: Mapping[str, str]
    connect_timeout: float
    read_timeout: float
    write_timeout: float
    pool_timeout: float
    max_connections: int
    max_keepalive_connections: int
    keepalive_expiry: float


def _url(base_url: str, path: str) -> str:
    """``base_url`` joined with ``path`` the way httpx joins a client's base URL."""
    return base_url.rstrip("/") + "/" + path.lstrip("/")


class HttpxWire:
    """An ``httpx.AsyncClient`` (HTTP/2, or an injected transport)."""

    def __init__(self, s: Settings, *, http2: bool, transport: httpx.AsyncBaseTransport | None) -> None:
        self.client = httpx.AsyncClient(
            base_url=s.base_url,
            headers=dict(s.headers),
            timeout=httpx.Timeout(
                connect=s.connect_timeout, read=s.read_timeout, write=s.write_timeout, pool=s.pool_timeout
            ),
            limits=httpx.Limits(
                max_connections=s.max_connections,
                max_keepalive_connections=s.max_keepalive_connections,
                keepalive_expiry=s.keepalive_expiry,
            ),
            http2=http2,
            transport=transport,
            follow_redirects=False,
        )

    def _headers(self, headers: Mapping[str, str] | None) -> dict[str, str]:
        return {"content-type": "application/json", **(headers or {})}

    async def post(self, path: str, body: bytes, headers: Mapping[str, str] | None) -> tuple[Head, bytes]:
        response = await self.client.post(path, content=body, headers=self._headers(headers))
        return Head(response.status_code, response.headers), response.content

    @asynccontextmanager
    async def stream(
        self, path: str, body: bytes, headers: Mapping[str, str] | None
    ) -> AsyncIterator[tuple[Head, AsyncIterator[bytes]]]:
        async with self.client.stream("POST", path, content=body, headers=self._headers(headers)) as response:
            yield Head(response.status_code, response.headers), response.aiter_bytes()

    async def aclose(self) -> None:
        await self.client.aclose()


class AiohttpWire:
    """HTTP/1.1 over one aiohttp connection pool, opened on the first call (it needs the loop).

    ``max_connections`` bounds the pool and ``keepalive_expiry`` closes idle
    connections; aiohttp keeps every idle connection until then (it has no
    ``max_keepalive_connections``). Timeouts: connect, read, and the wait for a
    pooled connection plus the connect.
    """

    def __init__(self, s: Settings) -> None:
        self._settings = s
        self._session: Any = None
        self._opening = anyio.Lock()
        self._urls: dict[str, Any] = {}
        self._headers: Any = None  # the client headers, a CIMultiDict built once per pool
        self._proxy: dict[str, Any] = {}

    async def _open(self) -> Any:
        async with self._opening:  # concurrent first calls open one pool
            if self._session is None:
                await self._open_now()
        return self._session

    async def _open_now(self) -> None:
        ssl_context = SSL_CONTEXT.get("default")
        if ssl_context is None or "aiohttp" not in sys.modules:  # the first such pool: import and load off the loop
            ssl_context = await anyio.to_thread.run_sync(prepare_ssl, True)
        import aiohttp
        from aiohttp.helpers import get_env_proxy_for_url
        from multidict import CIMultiDict

        s = self._settings
        # Built once: aiohttp turns a plain dict into a CIMultiDict on every call. Not the
        # session's default headers: aiohttp copies those into a proxy's CONNECT request,
        # which would hand the API key to the proxy.
        self._headers = CIMultiDict(
            {
                "user-agent": USER_AGENT,
                "accept-encoding": ACCEPT_ENCODING,
                "content-type": "application/json",
                **s.headers,
            }
        )
        url = self._url("")
        try:  # once per pool (one host), not on every request as aiohttp's trust_env does
            proxy, auth = await anyio.to_thread.run_sync(get_env_proxy_for_url, url)
            self._proxy = {"proxy": proxy}
        except LookupError:
            self._proxy, auth = {}, None
        if auth is not None:  # where aiohttp's deprecated proxy_auth= puts it
            if url.scheme == "https":  # on the CONNECT request of the tunnel
                self._proxy["proxy_headers"] = CIMultiDict({"Proxy-Authorization": auth.encode()})
            else:  # on the request itself, which the proxy forwards
                self._headers["Proxy-Authorization"] = auth.encode()
        connector = aiohttp.TCPConnector(
            limit=s.max_connections,
            keepalive_timeout=s.keepalive_expiry,
            ssl=ssl_context,  # the same trust store as httpx
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=s.pool_timeout + s.connect_timeout,
                sock_connect=s.connect_timeout,
                sock_read=s.read_timeout,
            ),
        )

    def _url(self, path: str) -> Any:
        url = self._urls.get(path)
        if url is None:
            from yarl import URL

            url = self._urls[path] = URL(_url(self._settings.base_url, path))
        return url

    async def _request(self, path: str, body: bytes, headers: Mapping[str, str] | None) -> Any:
        session = self._session or await self._open()
        if headers:  # the trace context's (traceparent...): over the client headers
            merged = self._headers.copy()
            merged.update(headers)
        else:
            merged = self._headers
        return await session.request(
            "POST", self._url(path), data=body, headers=merged, allow_redirects=False, **self._proxy
        )

    async def post(self, path: str, body: bytes, headers: Mapping[str, str] | None) -> tuple[Head, bytes]:
        response = await self._request(path, body, headers)
        try:
            return Head(response.status, response.headers), await response.read()
        finally:
            response.release()

    @asynccontextmanager
    async def stream(
        self, path: str, body: bytes, headers: Mapping[str, str] | None
    ) -> AsyncIterator[tuple[Head, AsyncIterator[bytes]]]:
        response = await self._request(path, body, headers)
        try:
            yield Head(response.status, response.headers), response.content.iter_any()
        finally:
            # A body read to its end returns the connection to the pool; aiohttp
            # closes the connection of a body left unread rather than reuse it.
            response.release()

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
