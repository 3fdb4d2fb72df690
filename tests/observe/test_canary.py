"""Canary: secrets put into requests, errors and step outputs never reach logs,
spans, metric labels or the database (error messages, events, the journal)."""

from __future__ import annotations

import io
import json
import logging
import sqlite3
from pathlib import Path

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
from legato.store import DurableRunner, Journal, RunStore

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


async def test_canary_secrets_stay_out_of_the_database(tmp_path: Path) -> None:
    """A durable run whose step fails (after a retry) with secrets in its error
    message: the error columns, the events and the automatic journal reflection
    hold none of them. Inputs and outputs are stored as given (resume needs them)."""
    secret_in_request, secret_in_error, secret_in_output, configured = CANARIES
    model = EchoModel()
    p = Pipeline("canary-db")

    @p.step
    async def leak(key: str) -> str:
        return f"output {secret_in_output}"

    @p.step(retries=RetryPolicy(max_attempts=2, base_delay=0.0))
    async def fail(leak: str) -> str:
        await model.chat(ChatRequest(messages=[Message(role="user", content=f"FAIL {secret_in_error} {configured}")]))
        return leak

    db = tmp_path / "legato.db"
    async with RunStore(db, redactor=Redactor(CONFIGURED)) as store:
        result = await DurableRunner(store).run(p, {"key": secret_in_request})
        assert result.failed_step == "fail"
        assert result.error is not None
        assert secret_in_error in result.error
        record = await store.get_run(result.run_id)
        steps = await store.steps(record.id)
        events = await store.events(record.id)
        entries = await Journal(store).recent(limit=10)

    assert record.status == "failed"
    assert record.error is not None
    assert "[REDACTED]" in record.error
    failed = [s for s in steps if s.status == "failed"]
    assert failed
    assert all(s.error and "[REDACTED]" in s.error for s in failed)
    assert any(e.type == "StepRetried" for e in events)
    assert [e.run_id for e in entries] == [record.id]  # the reflection quoting the error was written
    assert "RateLimited" in entries[0].body

    stored = json.dumps(
        {
            "error": record.error,
            "steps": [(s.error, s.meta) for s in steps],
            "events": [e.data for e in events],
            "journal": [(e.title, e.body, e.tags) for e in entries],
        }
    )
    for canary in CANARIES:
        assert stored.count(canary) == 0, canary
    assert any(s.output == f"output {secret_in_output}" for s in steps)  # outputs verbatim
    assert record.inputs == {"key": secret_in_request}

    # The database files as a whole: the error secrets are nowhere, not even in free pages.
    raw = b"".join(f.read_bytes() for f in tmp_path.iterdir() if f.name.startswith("legato.db"))
    for canary in (secret_in_error, configured):
        assert raw.count(canary.encode()) == 0, canary
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM journal_entries").fetchone() == (1,)
