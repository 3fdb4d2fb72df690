from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from legato.observe import continue_trace, current_traceparent, extract_context, inject_headers

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


def test_incoming_traceparent_is_passed_on_without_an_sdk() -> None:
    assert current_traceparent() is None
    with continue_trace({"TraceParent": PARENT}) as ctx:
        assert ctx is not None
        assert inject_headers({})["traceparent"] == PARENT
    assert current_traceparent() is None


def test_malformed_or_missing_traceparent_starts_no_trace() -> None:
    assert extract_context({}) is None
    assert extract_context({"traceparent": "00-zzzz-not-valid"}) is None
    with continue_trace({"traceparent": "garbage"}) as ctx:
        assert ctx is None


def test_child_spans_share_the_trace_id_and_outgoing_header(spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = spans
    with continue_trace({"traceparent": PARENT}), provider.get_tracer("t").start_as_current_span("gateway") as span:
        outgoing = current_traceparent()
    (done,) = exporter.get_finished_spans()
    assert format(done.context.trace_id, "032x") == TRACE
    assert outgoing == f"00-{TRACE}-{format(span.get_span_context().span_id, '016x')}-01"
