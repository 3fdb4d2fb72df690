"""Canary: secrets put into requests, errors and step outputs never reach logs,
spans or metric labels."""

from __future__ import annotations

import io
import json
import logging

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from legato import Pipeline
from legato.errors import ModelError
from legato.observe import (
    Instrumented,
    Metrics,
    MetricsSubscriber,
    Redactor,
    RoutingObserver,
    TracingSubscriber,
    configure_logging,
)
from legato.providers import ChatRequest, Message
from legato.resilience import EventHub, Retry, VirtualClock
from legato.retry import RetryPolicy

from .conftest import EchoModel

CANARIES = [
    "sk-proj-CANARYabcdefghijklmnop0001",
    "sk-ant-api03-CANARYabcdefghijk0002",
    "lg_CANARYabcdefghijklmn0003",
    "acme-CANARY-0000000004",  # a configured pattern
]
CONFIGURED = [r"acme-CANARY-\d+"]


def span_text(exporter: InMemorySpanExporter) -> str:
    parts = []
    for s in exporter.get_finished_spans():
        parts += [s.name, json.dumps(dict(s.attributes or {}), default=str), str(s.status.description)]
        for e in s.events:
            parts += [e.name, json.dumps(dict(e.attributes or {}), default=str)]
    return "\n".join(parts)


async def test_canary_secrets_appear_nowhere(spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = spans
    redactor = Redactor(CONFIGURED)
    metrics = Metrics(redactor=redactor)
    stream = io.StringIO()
    handler = configure_logging("debug", stream=stream, logger="legato", redactor=redactor)
    logger = logging.getLogger("legato.canary")
    hub, clock = EventHub(), VirtualClock()
    detach = RoutingObserver(metrics).attach(hub)
    secret_in_request, secret_in_error, secret_in_output, configured = CANARIES
    model = Instrumented(
        Retry(EchoModel(), RetryPolicy(max_attempts=2), budget=False, clock=clock, events=hub, name="echo"),
        metrics=metrics,
        tracer_provider=provider,
    )
    p = Pipeline("canary")

    @p.step
    async def call(key: str) -> str:
        request = ChatRequest(
            messages=[Message(role="user", content=f"my key is {key}")],
            user=key,
            metadata={"api_key": key, "authorization": f"Bearer {key}"},
        )
        logger.info("sending %s", request.model_dump_json(), extra={"headers": {"Authorization": f"Bearer {key}"}})
        return (await model.chat(request)).text + f" and {configured}"

    @p.step
    async def leak(call: str) -> str:
        logger.info("step output is %s", call)
        return f"output {secret_in_output}"

    @p.step
    async def fail(leak: str) -> str:
        try:
            await model.chat(ChatRequest(messages=[Message(role="user", content=f"FAIL {secret_in_error}")]))
        except ModelError:
            logger.exception("model call failed for %s", secret_in_error)
            raise
        return leak

    try:
        result = await p.run(
            key=secret_in_request, subscribers=[TracingSubscriber(provider), MetricsSubscriber(metrics)]
        )
    finally:
        detach()
        logging.getLogger("legato").removeHandler(handler)
    assert result.failed_step == "fail"
    assert secret_in_output in result.outputs["leak"]  # the data itself is untouched

    logs = stream.getvalue()
    traces = span_text(exporter)
    exposition = metrics.render()[0].decode()
    assert "sending" in logs
    assert "model call failed" in logs
    assert "chat echo" in traces
    assert "legato_model_requests_total" in exposition
    for canary in CANARIES:
        assert logs.count(canary) == 0, canary
        assert traces.count(canary) == 0, canary
        assert exposition.count(canary) == 0, canary
