"""``TraceMiddleware``: HTTP requests join the caller's trace and are measured.

A plain ASGI middleware (no framework import)::

    app.add_middleware(TraceMiddleware)

For every HTTP request it makes the caller's W3C ``traceparent`` current (so runs
started by the request and the provider calls they make join the caller's trace,
with or without the SDK), opens a SERVER span ``"{method} {route}"`` when tracing is
on, and records ``legato_http_requests_total{method,route,status}`` and
``legato_http_request_duration_seconds{method,route}``. The route label is the
matched route's template (``/v1/runs/{run_id}``), ``unmatched`` otherwise: never the
raw path, so ids and typos cannot explode the series or leak into labels.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from legato.observe._metrics import Metrics, default_metrics
from legato.observe._propagation import extract_context
from legato.observe._tracing import get_tracer, tracing_enabled

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = ["TraceMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class TraceMiddleware:
    """See the module docstring. ``exclude`` paths (probes, ``/metrics``) are passed through untouched."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics | None = None,
        tracer_provider: TracerProvider | None = None,
        exclude: Iterable[str] = ("/healthz", "/readyz", "/metrics"),
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.app = app
        self.metrics = metrics if metrics is not None else default_metrics()
        self._provider = tracer_provider
        self.exclude = frozenset(exclude)
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exclude:
            await self.app(scope, receive, send)
            return
        from opentelemetry import context, trace

        carrier = {}
        for key, value in scope.get("headers", ()):
            if key in (b"traceparent", b"tracestate"):
                carrier[key.decode("latin-1")] = value.decode("latin-1")
        parent = extract_context(carrier) if carrier else None
        token = context.attach(parent) if parent is not None else None
        method = str(scope.get("method", "GET"))
        span = None
        if tracing_enabled(self._provider):
            from opentelemetry.trace import SpanKind

            span = get_tracer(self._provider).start_span(
                method,  # renamed to "{method} {route}" once the router has matched
                kind=SpanKind.SERVER,
                attributes={"http.request.method": method, "url.scheme": str(scope.get("scheme", "http"))},
            )
        status = 500
        started = self._clock()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        span_token = context.attach(trace.set_span_in_context(span)) if span is not None else None
        try:
            await self.app(scope, receive, send_status)
        finally:
            if span_token is not None:
                context.detach(span_token)
            route = _route(scope)
            m = self.metrics
            m.child(m.http_requests, method, route, str(status)).inc()
            m.child(m.http_duration, method, route).observe(self._clock() - started)
            if span is not None:
                from opentelemetry.trace import Status, StatusCode

                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                span.end()
            if token is not None:
                context.detach(token)
