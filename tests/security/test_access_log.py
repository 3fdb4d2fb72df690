"""The access log of a real ``legato serve``: one JSON line per request with the request
id, key prefix, model, status, latency, tokens and cost, and never a body, a key or a
header value; the request id also reaches the request's span and every log line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from _serve import FAKE_KEY, MASTER, ServeProcess, serving
from legato.observe import TraceMiddleware, configure_logging
from legato.server import MappingCatalog, ServerSettings, create_app
from legato.testing import FakeProvider

CONFIG = """\
models:
  gpt-fake: {{provider: openai, model: gpt-fake, base_url: "{openai}", api_key: env:SECURITY_FAKE_KEY,
             price: {{input: 1000, output: 2000}}}}
server:
  master_key: env:SECURITY_MASTER_KEY
  key_cache_ttl_s: 0
  drain_timeout_s: 2
"""

CANARY = "body-canary-7f3e9"


@pytest.fixture(scope="module")
def serve(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("access")
    (tmp / "legato.yaml").write_text(CONFIG.format(openai=fake.openai_base_url))
    with serving(tmp / "legato.yaml") as process:
        yield process


def access_lines(serve: ServeProcess) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for line in serve.log().splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("logger") == "legato.access":
            assert record["request_id"] not in out, "two access lines for one request"
            out[str(record["request_id"])] = record
    return out


@pytest.mark.slow
def test_one_access_line_per_request_without_bodies_or_secrets(serve: ServeProcess) -> None:
    key = serve.create_key(["chat"])
    body = {"model": "gpt-fake", "messages": [{"role": "user", "content": CANARY}]}
    with serve.client(key) as c:
        chat = c.post("/v1/chat/completions", json=body)
        with c.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as streamed:
            streamed.read()
        invalid = c.post("/v1/chat/completions", json={**body, "max_tokens": True})
    with serve.client("lg_" + "s" * 40) as bad:
        unknown = bad.post("/v1/chat/completions", json=body)
    responses = {"chat": chat, "stream": streamed, "invalid": invalid, "unknown": unknown}
    assert [r.status_code for r in responses.values()] == [200, 200, 400, 401]
    ids = {name: r.headers["x-request-id"] for name, r in responses.items()}
    serve.stop()  # flushes the log
    lines = access_lines(serve)
    got = {name: lines[rid] for name, rid in ids.items()}
    prefix = key[:12]
    for name in ("chat", "stream"):
        line = got[name]
        assert line["status"] == 200
        assert line["key_prefix"] == prefix
        assert line["model"] == "gpt-fake"
        assert line["method"] == "POST"
        assert line["path"] == "/v1/chat/completions"
        assert isinstance(line["input_tokens"], int)
        assert line["input_tokens"] > 0
        assert isinstance(line["output_tokens"], int)
        assert line["output_tokens"] > 0
        assert isinstance(line["cost"], float)
        assert line["cost"] > 0
        assert isinstance(line["latency_ms"], float)
        assert 0 < line["upstream_ms"] <= line["latency_ms"]  # the wait for the model, within the request
    assert got["invalid"]["status"] == 400
    assert got["invalid"]["upstream_ms"] == 0  # refused before any model call
    assert got["invalid"]["input_tokens"] == 0
    assert got["unknown"]["status"] == 401
    assert got["unknown"]["key_prefix"] is None
    text = serve.log()
    for secret in (key, key[12:], MASTER, FAKE_KEY, "lg_" + "s" * 40, CANARY):
        assert secret not in text


def test_the_request_id_is_on_the_span_and_on_every_log_line(
    fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import anyio

    from legato.providers import create

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    stream = io.StringIO()
    handler = configure_logging("info", stream=stream, logger="legato.test.access")
    probe = logging.getLogger("legato.test.access")
    probe.propagate = False
    model = create("openai", "gpt-fake", api_key="sk-fake", base_url=fake.openai_base_url)
    tmp = tmp_path_factory.mktemp("span")
    settings = ServerSettings(database_url=f"sqlite:///{tmp / 'gw.db'}", master_key=MASTER)
    app = create_app(settings, catalog=MappingCatalog({"gpt-fake": model}))

    @app.get("/probe-log")
    async def log_something() -> dict[str, str]:
        probe.info("inside the request")
        return {"ok": "yes"}

    app.user_middleware = [m for m in app.user_middleware if m.cls is not TraceMiddleware]
    app.add_middleware(TraceMiddleware, tracer_provider=provider)

    async def main() -> httpx.Response:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            headers = {"x-request-id": "trace-me-1", "Authorization": f"Bearer {MASTER}"}
            async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
                return await c.get("/probe-log")

    try:
        response = anyio.run(main)
    finally:
        probe.removeHandler(handler)
    assert response.headers["x-request-id"] == "trace-me-1"
    (record,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert record["request_id"] == "trace-me-1"
    (span,) = [s for s in exporter.get_finished_spans() if s.name.startswith("GET")]
    assert dict(span.attributes or {})["legato.request_id"] == "trace-me-1"
