"""``Instrumented``: a Model wrapper that records a span and metrics for every call.

Wrap the outermost model a caller sees (a router, a cached model, an adapter)::

    model = Instrumented(router)            # spans + legato_model_* metrics

Spans follow the OpenTelemetry GenAI conventions: name ``"{operation} {model}"``
(``chat gpt-4o-mini``, ``embeddings text-embedding-3-small``), kind CLIENT, with
``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
``gen_ai.response.model``, ``gen_ai.usage.input_tokens``/``output_tokens`` and
``error.type`` on failure. Prompts and completions are never put on spans.

``gen_ai.request.model`` and every metric label come from the wrapped model's
configured name, not from ``request.model``, which is client input (a gateway caller
could put anything there, secrets included).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from legato.observe._metrics import Metrics, default_metrics
from legato.observe._tracing import GenAI, get_tracer, step_parent_context, tracing_enabled
from legato.providers import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    Model,
    ModelWrapper,
    close_stream,
    closing_stream,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["Instrumented", "error_type"]

Q = TypeVar("Q")
R = TypeVar("R")
Req = TypeVar("Req", ChatRequest, EmbedRequest)
Resp = TypeVar("Resp", ChatResponse, EmbedResponse)


def _has_cache(model: Any) -> bool:
    for _ in range(16):
        stats = getattr(model, "stats", None)
        if stats is not None and hasattr(stats, "hits") and hasattr(stats, "misses"):
            return True
        model = getattr(model, "inner", None)
        if model is None:
            return False
    return False


def error_type(exc: BaseException) -> str:
    """The ``error.type`` / ``status`` value for an exception: its class name."""
    import anyio

    if isinstance(exc, anyio.get_cancelled_exc_class()):
        return "cancelled"
    return type(exc).__name__


class Instrumented(ModelWrapper):
    """Traces and measures every ``chat``, ``stream`` and ``embed`` of ``inner``.

    ``metrics`` defaults to the process-wide :func:`legato.observe.default_metrics`;
    ``tracer_provider`` to the global one. ``provider`` names the provider for spans
    and labels until a response says which one answered (defaults to the inner
    model's ``provider`` attribute, else ``"unknown"``). ``clock`` is injectable.
    """

    def __init__(
        self,
        inner: Model,
        *,
        metrics: Metrics | None = None,
        tracer_provider: TracerProvider | None = None,
        provider: str | None = None,
        name: str | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__(inner, name=name)
        self.metrics = metrics if metrics is not None else default_metrics()
        self._tracer_provider = tracer_provider
        self.provider = provider or str(getattr(inner, "provider", None) or "unknown")
        self._clock = clock
        # A miss can only be told from a plain answer when a response cache is among
        # the wrapped models; hits say so themselves (``cached=True``).
        self._caching = _has_cache(inner)

    # -- spans -------------------------------------------------------------------

    def _start_span(self, operation: str, request: ChatRequest | EmbedRequest) -> Span | None:
        if not tracing_enabled(self._tracer_provider):
            return None
        from opentelemetry.trace import SpanKind

        attrs: dict[str, Any] = {
            GenAI.OPERATION: operation,
            GenAI.PROVIDER: self.provider,
            GenAI.REQUEST_MODEL: self.name,
        }
        if isinstance(request, ChatRequest):
            for attr, value in (
                (GenAI.REQUEST_TEMPERATURE, request.temperature),
                (GenAI.REQUEST_TOP_P, request.top_p),
                (GenAI.REQUEST_MAX_TOKENS, request.max_tokens),
                (GenAI.REQUEST_SEED, request.seed),
            ):
                if value is not None:
                    attrs[attr] = value
        tracer = get_tracer(self._tracer_provider)
        parent = step_parent_context()
        return tracer.start_span(f"{operation} {self.name}", context=parent, kind=SpanKind.CLIENT, attributes=attrs)

    @staticmethod
    def _end_ok(span: Span | None, resp: ChatResponse | EmbedResponse | ChatChunk | None, **extra: Any) -> None:
        if span is None:
            return
        if resp is not None:
            usage = resp.usage
            attrs: dict[str, Any] = {GenAI.RESPONSE_MODEL: resp.model or "", GenAI.PROVIDER: resp.provider or ""}
            if usage is not None:
                attrs[GenAI.INPUT_TOKENS] = usage.input_tokens
                attrs[GenAI.OUTPUT_TOKENS] = usage.output_tokens
            if resp.cost is not None:
                attrs["legato.cost.usd"] = resp.cost
            if isinstance(resp, ChatResponse):
                if resp.id:
                    attrs[GenAI.RESPONSE_ID] = resp.id
                if resp.finish_reason:
                    attrs[GenAI.RESPONSE_FINISH_REASONS] = [resp.finish_reason]
                attrs["legato.cached"] = resp.cached
                if resp.tier:
                    attrs["legato.tier"] = resp.tier
                if resp.degraded:
                    attrs["legato.degraded"] = True
            elif isinstance(resp, ChatChunk) and resp.finish_reason:
                attrs[GenAI.RESPONSE_FINISH_REASONS] = [resp.finish_reason]
            span.set_attributes({k: v for k, v in attrs.items() if v != ""})
        if extra:
            span.set_attributes(extra)
        span.end()

    @staticmethod
    def _end_error(span: Span | None, exc: BaseException, kind: str) -> None:
        if span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute(GenAI.ERROR_TYPE, kind)
        if kind != "cancelled":
            # The exception's type only: its message may quote the request.
            span.set_status(Status(StatusCode.ERROR, kind))
            status = getattr(exc, "status", None)
            if isinstance(status, int):
                span.set_attribute("http.response.status_code", status)
        span.end()

    # -- the Model protocol --------------------------------------------------------

    def _record(self, operation: str, status: str, started: float, resp: Any = None, **kw: Any) -> None:
        usage = getattr(resp, "usage", None)
        self.metrics.record_model_call(
            model=(getattr(resp, "model", None) or self.name),
            provider=(getattr(resp, "provider", None) or self.provider),
            operation=operation,
            status=status,
            duration_s=self._clock() - started,
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            cached_input_tokens=usage.cached_input_tokens if usage else 0,
            cost=getattr(resp, "cost", None),
            **kw,
        )
        if resp is not None and getattr(resp, "cached", False):
            self.metrics.record_cache(True)
        elif resp is not None and self._caching:
            self.metrics.record_cache(False)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return await self._observed("chat", self.inner.chat, request)

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        return await self._observed("embeddings", self.inner.embed, request)

    async def _observed(
        self,
        operation: str,
        call: Callable[[Req], Awaitable[Resp]],
        request: Req,
    ) -> Resp:
        """One non-streamed call: its span, in-flight gauge, latency and outcome."""
        span = self._start_span(operation, request)
        gauge = self.metrics.in_flight(self.name)
        gauge.inc()
        started = self._clock()
        try:
            resp = await self._call_in(span, call, request)
        except BaseException as exc:
            kind = error_type(exc)
            self._record(operation, kind, started)
            self._end_error(span, exc, kind)
            raise
        finally:
            gauge.dec()
        self._record(operation, "ok", started, resp)
        self._end_ok(span, resp)
        return resp

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        span = self._start_span("chat", request)
        if span is not None:
            span.set_attribute("legato.stream", True)
        gauge = self.metrics.in_flight(self.name)
        gauge.inc()
        started = self._clock()
        ttft: float | None = None
        last: ChatChunk | None = None
        chunks = self.inner.stream(request) if span is None else self._stream_in(span, request)
        try:
            async with closing_stream(chunks):  # closed at once when the consumer stops early
                async for chunk in chunks:
                    if ttft is None:
                        ttft = self._clock() - started
                        if span is not None:
                            span.add_event("first_token")
                    if chunk.usage is not None or chunk.finish_reason is not None:
                        last = chunk
                    yield chunk
        except BaseException as exc:
            kind = error_type(exc)
            if kind == "GeneratorExit":  # the consumer stopped early: not a model failure
                kind = "cancelled"
            self._record("chat", kind, started, ttft_s=ttft)
            self._end_error(span, exc, kind)
            raise
        finally:
            gauge.dec()
        self._record("chat", "ok", started, last, ttft_s=ttft)
        self._end_ok(span, last, **({"legato.ttft_s": ttft} if ttft is not None else {}))

    # -- running the inner call with the span current --------------------------------

    @staticmethod
    async def _call_in(span: Span | None, fn: Callable[[Q], Awaitable[R]], request: Q) -> R:
        if span is None:
            return await fn(request)
        from opentelemetry import context, trace

        token = context.attach(trace.set_span_in_context(span))
        try:
            return await fn(request)
        finally:
            context.detach(token)

    async def _stream_in(self, span: Span, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        from opentelemetry import trace

        # The context is attached around each step of the inner iterator, never across
        # a yield: a generator suspended with an attached context would leak it.
        ctx = trace.set_span_in_context(span)
        from opentelemetry import context

        iterator = aiter(self.inner.stream(request))
        try:
            while True:
                token = context.attach(ctx)
                try:
                    chunk = await anext(iterator)
                except StopAsyncIteration:
                    return
                finally:
                    context.detach(token)
                yield chunk
        finally:
            await close_stream(iterator)
