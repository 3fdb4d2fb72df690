"""``Instrumented`` and ``Recorded``: the model-call observers, one pass per call.

Wrap the outermost model a caller sees (a router, a cached model, an adapter)::

    model = Instrumented(router)                    # a span + legato_model_* metrics
    model = Recorded(router, calls.append)          # a ModelCall per call
    model = Instrumented(router, on_call=sink)      # both, in one pass

Both are one wrapper, :class:`ModelObserver`, with its parts switched on or off: the
GenAI span and the ``legato_model_*`` metrics (:mod:`legato.observe._instrument`),
and the :class:`~legato.observe.ModelCall` handed to ``on_call``
(:mod:`legato.observe._calls`). Why one: the gateway used to wrap each served model
twice, a ``Recorded`` built per request around a cached ``Instrumented``, and the two
passes (two wrappers, two clocks, two stream generators, a listener check, a closure
and a dataclass with four default factories per request) cost about as much CPU as an
in-process model's answer. An observer is built once per model; whatever differs per
request (the gateway's key and request id) is read by the sink from context
variables, not given to a wrapper made for the request.

``on_call`` is called once per finished call (also when it failed; not when the caller
stopped reading a stream or was cancelled), in the context of the call (for a stream:
of whoever read its last chunk). It may be a coroutine function; an exception from it
propagates, so a sink that must not fail a call catches its own.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from legato.observe._calls import MAX_TEXT, CallSink, Final, OpenCall, listen, moves, note_final, report
from legato.observe._instrument import end_error, end_ok, error_type, has_cache, record_outcome, start_span
from legato.observe._metrics import Metrics, default_metrics
from legato.observe._tracing import tracing_enabled
from legato.providers import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    Model,
    ModelWrapper,
    close_stream,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["Instrumented", "ModelObserver", "Recorded"]

Req = TypeVar("Req", ChatRequest, EmbedRequest)
Resp = TypeVar("Resp", ChatResponse, EmbedResponse)


class ModelObserver(ModelWrapper):
    """Observes every ``chat``, ``stream`` and ``embed`` of ``inner``: a span and metrics
    when ``metrics`` is given, a :class:`ModelCall` to ``on_call`` when that is given.

    ``provider`` names the provider for spans and labels until a response says which
    one answered (defaults to the inner model's ``provider`` attribute, else
    ``"unknown"``). ``clock`` (injectable) times the call for both.
    """

    def __init__(
        self,
        inner: Model,
        *,
        metrics: Metrics | None,
        on_call: CallSink | None,
        tracer_provider: TracerProvider | None = None,
        provider: str | None = None,
        name: str | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__(inner, name=name)
        self._metrics = metrics
        self._on_call = on_call
        self._tracer_provider = tracer_provider
        self.provider = provider or str(getattr(inner, "provider", None) or "unknown")
        self._clock = clock
        # A miss can only be told from a plain answer when a response cache is among
        # the wrapped models; hits say so themselves (``cached=True``).
        self._caching = metrics is not None and has_cache(inner)
        self._gauge: Any = None  # this model's in-flight gauge child, looked up at the first call
        if on_call is not None:
            listen()

    # -- the parts of a call ------------------------------------------------------------

    def _span(self, operation: str, request: ChatRequest | EmbedRequest) -> Span | None:
        if self._metrics is None or not tracing_enabled(self._tracer_provider):
            return None
        return start_span(self._tracer_provider, self.name, self.provider, operation, request)

    def _in_flight(self, metrics: Metrics) -> Any:
        gauge = self._gauge
        if gauge is None:
            gauge = self._gauge = metrics.in_flight(self.name)
        return gauge

    def _failed(
        self, exc: BaseException, operation: str, span: Span | None, duration_s: float, ttft_s: float | None = None
    ) -> str:
        kind = error_type(exc)
        if kind == "GeneratorExit":  # a stream's consumer stopped early: not a model failure
            kind = "cancelled"
        if self._metrics is not None:
            record_outcome(
                self._metrics, self.name, self.provider, self._caching, operation, kind, duration_s, ttft_s=ttft_s
            )
        if span is not None:
            end_error(span, exc, kind)
        return kind

    # -- the Model protocol -----------------------------------------------------------

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return await self._observed("chat", self.inner.chat, request)

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        return await self._observed("embeddings", self.inner.embed, request)

    async def _observed(self, operation: str, fn: Callable[[Req], Awaitable[Resp]], request: Req) -> Resp:
        """One non-streamed call: its record, span, in-flight gauge, latency and outcome."""
        metrics, on_call = self._metrics, self._on_call
        call = OpenCall(self.name, request) if on_call is not None else None  # before the span: the caller's trace
        span = self._span(operation, request)
        if call is not None and span is not None:
            call.joins(span)
        gauge = self._in_flight(metrics) if metrics is not None else None
        if gauge is not None:
            gauge.inc()
        started = self._clock()
        token = moves.set(call.moves) if call is not None else None
        try:
            resp = await (fn(request) if span is None else _call_in(span, fn, request))
        except BaseException as exc:
            duration = self._clock() - started
            if token is not None:
                moves.reset(token)
            if gauge is not None:
                gauge.dec()
            kind = self._failed(exc, operation, span, duration)
            if call is not None and on_call is not None and isinstance(exc, Exception):
                await report(on_call, call.finish(kind, duration, error=str(exc)))
            raise
        duration = self._clock() - started
        if token is not None:
            moves.reset(token)
        if gauge is not None:
            gauge.dec()
        if metrics is not None:
            record_outcome(metrics, self.name, self.provider, self._caching, operation, "ok", duration, resp)
        if span is not None:
            end_ok(span, resp)
        if call is not None and on_call is not None:
            answer = resp.text if isinstance(resp, ChatResponse) else f"{len(resp.vectors)} vectors"
            await report(on_call, call.finish("ok", duration, resp, answer))
        return resp

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        metrics, on_call = self._metrics, self._on_call
        call = OpenCall(self.name, request) if on_call is not None else None
        span = self._span("chat", request)
        if span is not None:
            span.set_attribute("legato.stream", True)
            if call is not None:
                call.joins(span)
        gauge = self._in_flight(metrics) if metrics is not None else None
        if gauge is not None:
            gauge.inc()
        started = self._clock()
        ttft: float | None = None  # the metric's: the first chunk, whatever it holds
        last: ChatChunk | None = None  # the last chunk with usage or a finish reason (span and metrics)
        final: dict[str, Any] = {}  # the record's: the stream's last word on model, provider, usage, cost
        pieces: list[str] = []
        size = 0
        otel, ctx = _span_context(span)
        iterator = aiter(self.inner.stream(request))
        try:
            try:
                while True:
                    # The call's moves and its span are current around each step of the
                    # inner stream, never across a yield: a generator suspended with
                    # them set would leak them into its consumer.
                    token = moves.set(call.moves) if call is not None else None
                    attached = otel.attach(ctx) if otel is not None else None
                    try:
                        chunk = await anext(iterator)
                    except StopAsyncIteration:
                        break
                    finally:
                        if attached is not None:
                            otel.detach(attached)
                        if token is not None:
                            moves.reset(token)
                    if ttft is None:
                        ttft = self._clock() - started
                        if span is not None:
                            span.add_event("first_token")
                        if call is not None and chunk.text:
                            call.ttft_s = ttft
                    elif call is not None and call.ttft_s is None and chunk.text:
                        call.ttft_s = self._clock() - started
                    if chunk.usage is not None or chunk.finish_reason is not None:
                        last = chunk
                    if call is not None:
                        if chunk.text and size <= MAX_TEXT:
                            pieces.append(chunk.text)
                            size += len(chunk.text)
                        note_final(final, chunk)
                    yield chunk
            finally:
                await close_stream(iterator)  # at once, also when the consumer stopped early
        except BaseException as exc:
            duration = self._clock() - started
            if gauge is not None:
                gauge.dec()
            kind = self._failed(exc, "chat", span, duration, ttft)
            if call is not None and on_call is not None and isinstance(exc, Exception):
                await report(on_call, call.finish(kind, duration, Final(final), "".join(pieces), str(exc)))
            raise
        duration = self._clock() - started
        if gauge is not None:
            gauge.dec()
        if metrics is not None:
            record_outcome(metrics, self.name, self.provider, self._caching, "chat", "ok", duration, last, ttft)
        if span is not None:
            end_ok(span, last, **({"legato.ttft_s": ttft} if ttft is not None else {}))
        if call is not None and on_call is not None:
            await report(on_call, call.finish("ok", duration, Final(final), "".join(pieces)))


class Instrumented(ModelObserver):
    """Traces and measures every ``chat``, ``stream`` and ``embed`` of ``inner``.

    ``metrics`` defaults to the process-wide :func:`legato.observe.default_metrics`;
    ``tracer_provider`` to the global one. ``provider`` names the provider for spans
    and labels until a response says which one answered (defaults to the inner
    model's ``provider`` attribute, else ``"unknown"``). ``clock`` is injectable.
    ``on_call``, when given, also gets each finished call as a
    :class:`~legato.observe.ModelCall`, as :class:`Recorded` reports it, from the same
    pass over the call.
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
        on_call: CallSink | None = None,
    ) -> None:
        self.metrics = metrics if metrics is not None else default_metrics()
        super().__init__(
            inner,
            metrics=self.metrics,
            on_call=on_call,
            tracer_provider=tracer_provider,
            provider=provider,
            name=name,
            clock=clock,
        )


class Recorded(ModelObserver):
    """Reports each ``chat``, ``stream`` and ``embed`` of ``inner`` to ``on_call`` as a
    :class:`~legato.observe.ModelCall` (no span, no metrics)."""

    def __init__(self, inner: Model, on_call: CallSink, *, name: str | None = None) -> None:
        self.on_call = on_call
        super().__init__(inner, metrics=None, on_call=on_call, name=name)


# -- running the inner call with the span current ---------------------------------------


async def _call_in(span: Span, fn: Callable[[Req], Awaitable[Resp]], request: Req) -> Resp:
    from opentelemetry import context, trace

    token = context.attach(trace.set_span_in_context(span))
    try:
        return await fn(request)
    finally:
        context.detach(token)


def _span_context(span: Span | None) -> tuple[Any, Any]:
    """OpenTelemetry's ``context`` module and a context with ``span`` current; ``(None,
    None)`` without a span (nothing of OpenTelemetry is imported then)."""
    if span is None:
        return None, None
    from opentelemetry import context, trace

    return context, trace.set_span_in_context(span)
