"""TraceMiddleware: requests join the caller's trace; runs they start join it too."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from legato import Pipeline
from legato.observe import Metrics, TraceMiddleware, TracingSubscriber, current_traceparent

from .conftest import scrape

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def build(provider: TracerProvider | None, metrics: Metrics) -> FastAPI:
    app = FastAPI()
    p = Pipeline("lookup")

    @p.step
    async def find(item_id: str) -> str:
        return item_id.upper()

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, object]:
        result = await p.run(item_id=item_id, subscribers=[TracingSubscriber(provider)])
        return {"value": result.outputs["find"], "traceparent": current_traceparent()}

    @app.get("/healthz")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(TraceMiddleware, metrics=metrics, tracer_provider=provider)
    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_request_span_joins_the_caller_and_parents_the_run(
    spans: tuple[TracerProvider, InMemorySpanExporter], metrics: Metrics
) -> None:
    provider, exporter = spans
    async with client(build(provider, metrics)) as c:
        r = await c.get("/items/abc", headers={"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"})
    assert r.json()["value"] == "ABC"
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    server = by_name["GET /items/{item_id}"]
    assert server.kind is SpanKind.SERVER
    assert format(server.context.trace_id, "032x") == TRACE
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert dict(server.attributes or {})["http.response.status_code"] == 200
    run = by_name["run lookup"]
    assert run.parent is not None
    assert run.parent.span_id == server.context.span_id
    s = scrape(metrics)
    assert s[("legato_http_requests_total", (("method", "GET"), ("route", "/items/{item_id}"), ("status", "200")))] == 1


async def test_without_an_sdk_the_callers_trace_still_passes_through(metrics: Metrics) -> None:
    async with client(build(None, metrics)) as c:
        r = await c.get("/items/x", headers={"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"})
    assert r.json()["traceparent"] == f"00-{TRACE}-00f067aa0ba902b7-01"


async def test_unmatched_paths_and_probes(spans: tuple[TracerProvider, InMemorySpanExporter], metrics: Metrics) -> None:
    provider, exporter = spans
    async with client(build(provider, metrics)) as c:
        assert (await c.get("/no/such/sk-abcdefghijklmnopqrstuv")).status_code == 404
        assert (await c.get("/healthz")).status_code == 200
    body = metrics.render()[0].decode()
    assert 'route="unmatched",status="404"' in body
    assert "sk-abcdefghijklmnopqrstuv" not in body
    assert "healthz" not in body
    assert [s.name for s in exporter.get_finished_spans()] == ["GET unmatched"]
