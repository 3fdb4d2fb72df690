"""The GenAI span of a model call and the outcome's ``legato_model_*`` metrics.

What :class:`legato.observe.Instrumented` (``legato.observe._observer``) records per call.
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

from typing import TYPE_CHECKING, Any

from legato.observe._metrics import Metrics
from legato.observe._tracing import GenAI, get_tracer, step_parent_context
from legato.providers import ChatChunk, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["end_error", "end_ok", "error_type", "has_cache", "record_outcome", "start_span"]


def has_cache(model: Any) -> bool:
    """Whether a response cache is among the models ``model`` wraps."""
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


def start_span(
    tracer_provider: TracerProvider | None,
    name: str,
    provider: str,
    operation: str,
    request: ChatRequest | EmbedRequest,
) -> Span:
    """The CLIENT span of one call of model ``name`` (the caller checked tracing is on)."""
    from opentelemetry.trace import SpanKind

    attrs: dict[str, Any] = {GenAI.OPERATION: operation, GenAI.PROVIDER: provider, GenAI.REQUEST_MODEL: name}
    if isinstance(request, ChatRequest):
        for attr, value in (
            (GenAI.REQUEST_TEMPERATURE, request.temperature),
            (GenAI.REQUEST_TOP_P, request.top_p),
            (GenAI.REQUEST_MAX_TOKENS, request.max_tokens),
            (GenAI.REQUEST_SEED, request.seed),
        ):
            if value is not None:
                attrs[attr] = value
    tracer = get_tracer(tracer_provider)
    parent = step_parent_context()
    return tracer.start_span(f"{operation} {name}", context=parent, kind=SpanKind.CLIENT, attributes=attrs)


def end_ok(span: Span, resp: ChatResponse | EmbedResponse | ChatChunk | None, **extra: Any) -> None:
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


def end_error(span: Span, exc: BaseException, kind: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute(GenAI.ERROR_TYPE, kind)
    if kind != "cancelled":
        # The exception's type only: its message may quote the request.
        span.set_status(Status(StatusCode.ERROR, kind))
        status = getattr(exc, "status", None)
        if isinstance(status, int):
            span.set_attribute("http.response.status_code", status)
    span.end()


def record_outcome(
    metrics: Metrics,
    name: str,
    provider: str,
    caching: bool,
    operation: str,
    status: str,
    duration_s: float,
    resp: Any = None,
    ttft_s: float | None = None,
) -> None:
    """The ``legato_model_*`` series of one finished call (and the cache's hit or miss)."""
    usage = getattr(resp, "usage", None)
    series = metrics.model_series(
        getattr(resp, "model", None) or name, getattr(resp, "provider", None) or provider, operation, status
    )
    if usage is None:
        series.record(duration_s, 0, 0, 0, getattr(resp, "cost", None), ttft_s)
    else:
        series.record(
            duration_s,
            usage.input_tokens,
            usage.output_tokens,
            usage.cached_input_tokens,
            getattr(resp, "cost", None),
            ttft_s,
        )
    if resp is not None and getattr(resp, "cached", False):
        metrics.record_cache(True)
    elif resp is not None and caching:
        metrics.record_cache(False)
