"""W3C ``traceparent`` propagation between the gateway, pipelines and providers.

The gateway calls :func:`continue_trace` with the incoming request's headers; every
span started inside (the run, its steps, model calls) joins the caller's trace.
Outgoing HTTP calls to providers get the current ``traceparent`` from
:func:`inject_headers` (or the ``httpx`` event hook :func:`httpx_request_hook`).

This works without the OpenTelemetry SDK: the API keeps the remote span context
current, so a trace id sent by a client is passed on to providers even when legato
records no spans itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.context import Context

__all__ = ["continue_trace", "current_traceparent", "extract_context", "httpx_request_hook", "inject_headers"]


def _propagator() -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


def extract_context(headers: Mapping[str, str]) -> Context | None:
    """The context carried by ``traceparent``/``tracestate`` in ``headers``, or None.

    Header names are matched case-insensitively; a malformed ``traceparent`` is
    ignored (a new trace starts), as the W3C specification requires.
    """
    from opentelemetry import trace

    lowered = {k.lower(): v for k, v in headers.items() if k.lower() in ("traceparent", "tracestate")}
    if "traceparent" not in lowered:
        return None
    ctx = _propagator().extract(lowered)
    if not trace.get_current_span(ctx).get_span_context().is_valid:
        return None
    return ctx  # type: ignore[no-any-return]


@contextmanager
def continue_trace(headers: Mapping[str, str]) -> Iterator[Context | None]:
    """Make the trace in ``headers`` current for the block (a no-op without one)."""
    ctx = extract_context(headers)
    if ctx is None:
        yield None
        return
    from opentelemetry import context

    token = context.attach(ctx)
    try:
        yield ctx
    finally:
        context.detach(token)


def inject_headers(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Add ``traceparent`` (and ``tracestate``) for the current span to ``headers``."""
    _propagator().inject(headers)
    return headers


def current_traceparent() -> str | None:
    """The ``traceparent`` value of the current span, or None outside a trace."""
    carrier: dict[str, str] = {}
    _propagator().inject(carrier)
    return carrier.get("traceparent")


async def httpx_request_hook(request: Any) -> None:
    """``httpx.AsyncClient(event_hooks={"request": [httpx_request_hook]})``: propagate the trace."""
    carrier: dict[str, str] = {}
    _propagator().inject(carrier)
    for key, value in carrier.items():
        request.headers[key] = value
