"""The adapters' default HTTP/1.1 transport: httpx's interface over aiohttp's connection pool.

Why not httpx's own transport: httpcore's pool looks at every pooled connection on
every request and polls each idle socket to see whether it expired, so with a few
dozen calls in flight one upstream call costs 1.5-6 ms of CPU (a gateway worker then
tops out near 100 calls/s; see docs/benchmarks.md). aiohttp keeps idle connections
per host in a queue and parses responses in C: about 0.1-0.2 ms per call at any
concurrency. httpx stays the interface of the adapters (request building, response
objects, an injected ``transport=``, HTTP/2 through httpx's own transport when
``http2=True``, the error translation of ``_errors.py``); only the bytes move
through aiohttp.

Why not the ``httpx-aiohttp`` package: it maps a server disconnect (a cut stream)
to ``httpx.ConnectTimeout``, which would turn :class:`~legato.errors.StreamInterrupted`
into a timeout. Here aiohttp's exceptions map to the httpx classes httpcore raises
for the same failure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx

__all__ = ["AiohttpTransport"]


@contextmanager
def _mapped(request: httpx.Request) -> Iterator[None]:
    """aiohttp's exceptions as the httpx exceptions httpcore raises for the same failure."""
    try:
        yield
    except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError) as exc:
        cls = httpx.ConnectTimeout if isinstance(exc, aiohttp.ConnectionTimeoutError) else httpx.ConnectError
        raise cls(str(exc) or type(exc).__name__, request=request) from exc
    except (aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise httpx.ReadTimeout(str(exc) or type(exc).__name__, request=request) from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientResponseError) as exc:
        raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__, request=request) from exc
    except (aiohttp.ClientPayloadError, aiohttp.ClientOSError) as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
    except aiohttp.NonHttpUrlClientError as exc:
        raise httpx.UnsupportedProtocol(str(exc) or type(exc).__name__, request=request) from exc
    except aiohttp.InvalidURL as exc:  # a host or port no socket can reach (httpcore fails the connect)
        raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
    except aiohttp.ClientError as exc:
        raise httpx.TransportError(str(exc) or type(exc).__name__, request=request) from exc
    except TimeoutError as exc:
        raise httpx.TimeoutException(str(exc) or "timed out", request=request) from exc


class _Body(httpx.AsyncByteStream):
    """A response body read as it arrives (SSE events reach the adapter as soon as they are sent)."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped(self._request):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # A body read to its end returns the connection to the pool; aiohttp closes
        # the connection of a body left unread rather than reuse it.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over one aiohttp connection pool, opened on the first request.

    ``limits.max_connections`` bounds the pool and ``limits.keepalive_expiry`` closes
    idle connections; aiohttp keeps every idle connection until then (it has no
    ``max_keepalive_connections``). Timeouts come from each request (httpx's
    ``timeout`` extension): connect, read, and the wait for a pooled connection.
    """

    def __init__(self, *, limits: httpx.Limits) -> None:
        self._limits = limits
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[Any, ...], aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        limits = self._limits
        connector = aiohttp.TCPConnector(
            limit=limits.max_connections or 0,
            keepalive_timeout=limits.keepalive_expiry,
            ssl=httpx.create_ssl_context(),  # the same trust store as httpx's own transport
        )
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("Content-Type",)
        )
        return self._session

    def _timeout(self, request: httpx.Request) -> aiohttp.ClientTimeout:
        t = request.extensions.get("timeout") or {}
        key = (t.get("connect"), t.get("read"), t.get("pool"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            connect, read, pool = key
            waited = None if connect is None or pool is None else connect + pool
            timeout = self._timeouts[key] = aiohttp.ClientTimeout(
                total=None, connect=waited, sock_connect=connect, sock_read=read
            )
        return timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        body = await request.aread()
        with _mapped(request):
            response = await session.request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=body or None,
                allow_redirects=False,
                timeout=self._timeout(request),
            )
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(response, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
