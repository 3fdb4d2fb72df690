"""What every HTTP adapter shares: one pooled client, timeouts, error edges, the ledger.

The adapters speak the providers' HTTP APIs themselves rather than through the
vendors' SDKs: one connection pool per adapter (opened lazily or by
:meth:`HttpModel.start`; aiohttp's by default, an ``httpx.AsyncClient`` for HTTP/2
and injected transports: see :mod:`legato.providers._transport`), no per-call
allocation beyond the request itself, and full control of the error edge: every
transport failure is translated once, by ``_errors.from_transport`` (decision 0023). Subclasses implement the
wire mapping; this module owns the transport and the accounting.

Every request carries the current OpenTelemetry context (W3C ``traceparent``,
through the globally configured propagator), so a trace continues into the
provider. With tracing off this costs a dictionary lookup: when
``opentelemetry.context`` was never imported, nothing can have made a span
current, and an empty current context has nothing to propagate.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx
from pydantic_core import from_json

from legato.errors import BadRequest, MalformedResponse, ModelError, StreamInterrupted
from legato.ledger import CallRecord, current_ledger
from legato.providers._errors import from_transport, parse_retry_after, transport_errors
from legato.providers._h1 import LeanWire
from legato.providers._pricing import Price, PricingTable, cost_of
from legato.providers._sse import ServerSentEvent, SSEDecoder
from legato.providers._transport import Head, HttpxWire, Settings, Wire, dumps
from legato.providers._types import ChatChunk, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Usage
from legato.providers._validate import validate_chat

__all__ = ["HttpModel", "HttpOptions", "Progress", "record_call", "trace_headers"]

log = logging.getLogger("legato.providers")


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """Transport settings of an adapter's connection pool (seconds, counts)."""

    connect_timeout: float = 10.0
    read_timeout: float = 600.0
    write_timeout: float = 30.0
    pool_timeout: float = 30.0
    max_connections: int = 200
    max_keepalive_connections: int = 50
    keepalive_expiry: float = 30.0
    http2: bool = False


@dataclass(slots=True)
class Progress:
    """Whether a stream has delivered content yet (a cut after that is not retryable)."""

    delivered: bool = False


def trace_headers(headers: Mapping[str, str] | None = None) -> Mapping[str, str] | None:
    """``headers`` plus the current trace context's headers (``traceparent``, ...), if any."""
    context = sys.modules.get("opentelemetry.context")
    if context is None:
        return headers
    current = context.get_current()
    if not current:
        return headers
    from opentelemetry.propagate import inject

    carrier = dict(headers or {})
    inject(carrier, context=current)
    return carrier


def embed_response(
    *, vectors: list[list[float]], model: str, provider: str, usage: Usage, cost: float | None, latency_s: float
) -> EmbedResponse:
    """The response of a finished embed call, recorded on the current ledger."""
    record_call(model=model, provider=provider, usage=usage, cost=cost)
    return EmbedResponse(vectors=vectors, model=model, provider=provider, usage=usage, cost=cost, latency_s=latency_s)


def record_call(*, model: str, provider: str, usage: Usage | None, cost: float | None, cached: bool = False) -> None:
    """Report a finished call on the current ledger, when there is one."""
    ledger = current_ledger()
    if ledger is None:
        return
    u = usage or Usage()
    ledger.record(
        CallRecord(
            model=model,
            provider=provider,
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cached_input_tokens=u.cached_input_tokens,
            cost=cost,
            cached=cached,
        )
    )


class HttpModel:
    """Base class of the HTTP adapters. The constructor only stores configuration."""

    provider = "http"

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api_key: str | None = None,
        name: str | None = None,
        headers: Mapping[str, str] | None = None,
        options: HttpOptions | None = None,
        price: Price | None = None,
        pricing: PricingTable | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.model = model
        self.name = name or model
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.extra_headers = dict(headers or {})
        self.options = options or HttpOptions()
        self.price = price
        self.pricing = pricing
        self._transport = transport
        self._clock = clock
        self._http: Wire | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model!r}, base_url={self.base_url!r})"

    # ------------------------------------------------------------------ lifecycle

    def _auth_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _client(self) -> Wire:
        if self._http is None:
            o = self.options
            settings = Settings(
                base_url=self.base_url,
                headers={**self._auth_headers(), **self.extra_headers},
                connect_timeout=o.connect_timeout,
                read_timeout=o.read_timeout,
                write_timeout=o.write_timeout,
                pool_timeout=o.pool_timeout,
                max_connections=o.max_connections,
                max_keepalive_connections=o.max_keepalive_connections,
                keepalive_expiry=o.keepalive_expiry,
            )
            if self._transport is None and not o.http2:  # the lean wire (aiohttp's behind a proxy)
                self._http = LeanWire(settings)
            else:
                self._http = HttpxWire(settings, http2=o.http2, transport=self._transport)
        return self._http

    async def start(self) -> None:
        """Open the connection pool now rather than on the first call."""
        self._client()

    async def warm_up(self) -> None:
        """Same as :meth:`start`: every model kind has ``warm_up`` (local ones load weights)."""
        await self.start()

    async def aclose(self) -> None:
        client, self._http = self._http, None
        if client is not None:
            await client.aclose()

    # ------------------------------------------------------------------ protocol defaults

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        raise BadRequest(
            f"{self.provider} model {self.model!r} does not embed", provider=self.provider, model=self.model
        )

    def _check(self, request: ChatRequest) -> None:
        validate_chat(request, provider=self.provider, model=self.model)

    # ------------------------------------------------------------------ errors

    def _translate(self, status: int, body: bytes) -> tuple[type[ModelError], str, str | None, float | None]:
        """(class, message, provider code, retry_after from the body) for an error response."""
        raise NotImplementedError

    def _raise_status(self, status: int, headers: Mapping[str, str], body: bytes) -> NoReturn:
        cls, message, code, body_wait = self._translate(status, body)
        retry_after = parse_retry_after(headers)
        raise cls(
            message,
            provider=self.provider,
            status=status,
            request_id=self._request_id(headers),
            retry_after=retry_after if retry_after is not None else body_wait,
            code=code,
            model=self.model,
        )

    @staticmethod
    def _request_id(headers: Mapping[str, str]) -> str | None:
        value = headers.get("x-request-id") or headers.get("request-id")
        return str(value) if value else None

    def _malformed(self, what: str, headers: Mapping[str, str] | None = None, **kw: Any) -> MalformedResponse:
        return MalformedResponse(
            f"{self.provider} sent {what}",
            provider=self.provider,
            model=self.model,
            request_id=self._request_id(headers) if headers is not None else None,
            **kw,
        )

    # ------------------------------------------------------------------ transport

    def _encode(self, payload: Any) -> bytes:
        """The JSON body of a request; :class:`BadRequest` when the request holds what JSON
        cannot carry (text that is not valid Unicode, NaN): the request's fault, never sent."""
        try:
            return dumps(payload)
        except UnicodeEncodeError as exc:
            char = exc.object[exc.start] if isinstance(exc.object, str) else "?"
            raise BadRequest(
                f"the request holds text that is not valid Unicode (lone surrogate U+{ord(char):04X})",
                provider=self.provider,
                model=self.model,
            ) from None
        except ValueError:
            raise BadRequest(
                "the request holds a number JSON cannot carry (NaN or infinity)",
                provider=self.provider,
                model=self.model,
            ) from None

    async def _post(
        self, path: str, payload: Any, headers: Mapping[str, str] | None = None
    ) -> tuple[Any, Mapping[str, str]]:
        """POST JSON, return (decoded JSON, headers); raise the translated error otherwise."""
        body = self._encode(payload)
        try:
            head, body = await self._client().post(path, body, trace_headers(headers))
        except Exception as exc:  # only the HTTP client runs here: every failure is a transport failure
            raise from_transport(exc, provider=self.provider, model=self.model) from exc
        if head.status >= 400:
            self._raise_status(head.status, head.headers, body)
        try:
            return _loads(body), head.headers
        except ValueError:
            raise self._malformed("a body that is not JSON", head.headers, status=head.status) from None

    @asynccontextmanager
    async def _open_stream(
        self, path: str, payload: Any, progress: Progress
    ) -> AsyncIterator[tuple[Head, AsyncIterator[list[ServerSentEvent]]]]:
        """POST for an SSE answer: yields (status and headers, the events); closes both on exit.

        The events come in batches, one per read from the network (a batch may be
        empty), so that the adapter's loop costs no async step per event."""
        body = self._encode(payload)
        stack = AsyncExitStack()
        try:
            head, chunks = await stack.enter_async_context(self._client().stream(path, body, trace_headers()))
        except Exception as exc:  # only the HTTP client runs here: every failure is a transport failure
            raise from_transport(exc, provider=self.provider, model=self.model, streaming=True) from exc
        try:
            async with stack:
                if head.status >= 400:
                    body = b"".join([chunk async for chunk in chunks])
                    self._raise_status(head.status, head.headers, body)
                async with aclosing(self._events(head, chunks, progress)) as events:
                    yield head, events
        except transport_errors() as exc:  # reading an error body, or closing the response
            raise from_transport(exc, provider=self.provider, model=self.model, streaming=True) from exc

    async def _events(
        self, head: Head, chunks: AsyncIterator[bytes], progress: Progress
    ) -> AsyncGenerator[list[ServerSentEvent], None]:
        """The SSE events of a body, a batch per read; a cut body raises StreamInterrupted."""
        feed = SSEDecoder().feed
        try:
            async for raw in chunks:
                yield feed(raw)
        except (*transport_errors(), OSError) as exc:  # type: ignore[misc]  # a tuple built at run time
            err = from_transport(exc, provider=self.provider, model=self.model, streaming=True)
            if isinstance(err, StreamInterrupted):
                err.retryable = not progress.delivered
                err.request_id = self._request_id(head.headers)
            raise err from exc

    def _interrupted(self, response: Head, why: str, delivered: bool) -> StreamInterrupted:
        return StreamInterrupted(
            f"the stream ended {why}",
            provider=self.provider,
            model=self.model,
            request_id=self._request_id(response.headers),
            retryable=not delivered,
        )

    # ------------------------------------------------------------------ accounting

    def _cost(self, model: str, usage: Usage) -> float | None:
        return cost_of(self.provider, model, usage, price=self.price, table=self.pricing)

    def _finish(self, response: ChatResponse) -> ChatResponse:
        record_call(model=response.model, provider=self.provider, usage=response.usage, cost=response.cost)
        return response

    def _finish_chunk(self, chunk: ChatChunk) -> ChatChunk:
        record_call(model=chunk.model or self.model, provider=self.provider, usage=chunk.usage, cost=chunk.cost)
        return chunk


def _loads(body: bytes) -> Any:
    """The JSON of a response body, read by pydantic-core's parser (ten times faster than the
    standard library's on an embeddings answer). It refuses escapes of lone surrogates, which
    the standard library reads: such a body is read that way instead."""
    try:
        return from_json(body)
    except ValueError:
        return json.loads(body)
