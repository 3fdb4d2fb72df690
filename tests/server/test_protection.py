"""Protection: body size 413, request limits 400 with no provider call, bounded in-flight 429,
drain 503, health and readiness, error bodies always JSON in the client's format."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest

from legato.providers import ChatRequest, PythonModel
from legato.server import MappingCatalog, create_app
from legato.testing import FakeProvider, Reply

from .conftest import Running, catalog_for, gateway_settings, serve_in_thread


@pytest.fixture(scope="module")
def key(gateway: Running) -> str:
    return gateway.create_key(["chat", "embed"])


def test_body_too_large(gateway: Running, key: str) -> None:
    big = {"model": "gpt-fake", "messages": [{"role": "user", "content": "x" * 300_000}]}
    with gateway.client(key) as c:
        r = c.post("/v1/chat/completions", json=big)
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "request_too_large"

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"model": "gpt-fake", "messages": [{"role": "user", "content": "'
            for _ in range(40):
                yield b"y" * 10_000
            yield b'"}]}'

        r = c.post("/v1/chat/completions", content=chunked(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        r = c.post("/v1/messages", json={**big, "max_tokens": 5})
        assert r.status_code == 413
        assert r.json()["error"]["type"] == "request_too_large"
    assert gateway.fake.requests == []


@pytest.mark.parametrize(
    "body",
    [
        {"model": "gpt-fake", "messages": [{"role": "user", "content": "x"}] * 51},
        {"model": "gpt-fake", "messages": [{"role": "user", "content": "x"}], "max_tokens": 4097},
        {"model": "gpt-fake", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 10**6},
        {"model": "gpt-fake", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1},
        {"model": "gpt-fake", "messages": [{"role": "user", "content": "x"}], "temperature": 9},
        {"model": "gpt-fake", "messages": [{"role": "user", "content": "x"}], "n": 3},
        {"model": "gpt-fake", "messages": [{"role": "wizard", "content": "x"}]},
        {"model": "gpt-fake", "messages": [{"role": "assistant"}]},
        {"model": "gpt-fake", "messages": []},
        {"messages": [{"role": "user", "content": "x"}]},
        {
            "model": "gpt-fake",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema"},
        },
        {"model": "gpt-fake", "messages": [{"role": "user", "content": "x"}], "tools": [{"function": {"name": "a b"}}]},
    ],
)
def test_invalid_requests_are_400_without_provider_calls(gateway: Running, key: str, body: dict[str, object]) -> None:
    with gateway.client(key) as c:
        r = c.post("/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert err["message"]
    assert gateway.fake.requests == []


def test_ssrf_in_image_urls(gateway: Running, key: str) -> None:
    def image(url: str) -> dict[str, object]:
        content = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": url}}]
        return {"model": "gpt-fake", "messages": [{"role": "user", "content": content}]}

    with gateway.client(key) as c:
        for url in ("http://169.254.169.254/latest/meta-data/", "http://0x7f.1/", "http://[::ffff:10.0.0.1]/a.png"):
            r = c.post("/v1/chat/completions", json=image(url))
            assert r.status_code == 400, url
            assert r.json()["error"]["code"] == "url_not_allowed"
        anthropic_body = {
            "model": "claude-fake",
            "max_tokens": 5,
            "messages": [
                {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "http://localhost/x"}}]}
            ],
        }
        r = c.post("/v1/messages", json=anthropic_body)
        assert r.status_code == 400
        assert r.json()["type"] == "error"
        assert gateway.fake.requests == []
        gateway.fake.script(Reply(text="a cat"))
        ok = c.post("/v1/chat/completions", json=image("https://93.184.216.34/cat.png"))
        assert ok.status_code == 200
        assert ok.json()["choices"][0]["message"]["content"] == "a cat"


def test_unknown_routes_methods_and_bodies_answer_json(gateway: Running, key: str) -> None:
    with gateway.client(key) as c:
        assert c.get("/v1/nothing-here").json()["error"]["type"] == "not_found_error"
        r = c.get("/v1/chat/completions")
        assert r.status_code == 405
        assert r.json()["error"]["message"]
        r = c.post("/v1/chat/completions", content=b"{oops", headers={"content-type": "application/json"})
        assert r.status_code == 400
        assert r.json()["error"]["type"] == "invalid_request_error"


def test_health_and_readiness(gateway: Running, key: str) -> None:
    with gateway.client(key) as c:
        gateway.fake.script(Reply(text="counted"))
        assert (
            c.post(
                "/v1/chat/completions", json={"model": "gpt-fake", "messages": [{"role": "user", "content": "x"}]}
            ).status_code
            == 200
        )
    with gateway.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["store"] == "ok"
        assert ready.json()["checks"]["models"] == {"claude-fake": True, "gpt-fake": True}
        metrics = c.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        http_series = [line for line in metrics.text.splitlines() if line.startswith("legato_http_requests_total{")]
        assert any('route="/v1/chat/completions"' in line and 'status="200"' in line for line in http_series)
        model_series = [line for line in metrics.text.splitlines() if line.startswith("legato_model_requests_total{")]
        assert model_series  # the served models are instrumented
        assert c.get("/openapi.json").json()["paths"]["/v1/chat/completions"]


def test_overload_answers_429_then_drain_then_stop_answers_503(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With room for one request in flight, a second one gets 429 + Retry-After at once."""
    with FakeProvider(seed=0).in_thread() as fake:
        release = threading.Event()

        def slow(_: object) -> Reply:
            release.wait(30)
            return Reply(text="done")

        fake.responder = slow
        app = create_app(gateway_settings(tmp_path_factory.mktemp("busy"), max_in_flight=1), catalog=catalog_for(fake))
        with serve_in_thread(app) as url:
            admin = httpx.Client(base_url=url, headers={"Authorization": "Bearer mk-test-master-key-0123456789"})
            key = admin.post("/v1/admin/keys", json={"name": "k", "scopes": ["chat"]}).json()["key"]
            admin.close()
            body = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}
            results: list[int] = []

            def first() -> None:
                with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
                    results.append(c.post("/v1/chat/completions", json=body).status_code)

            t = threading.Thread(target=first)
            t.start()
            while not fake.requests:  # the first request is now in flight at the provider
                t.join(0.01)
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
                r = c.post("/v1/chat/completions", json=body)
                assert r.status_code == 429
                assert r.headers["retry-after"] == "1"
                assert r.json()["error"]["code"] == "server_overloaded"
                assert c.get("/healthz").status_code == 200  # probes are never refused
                release.set()
                t.join(30)
                assert results == [200]
                assert c.post("/v1/chat/completions", json=body).status_code == 200

                app.state.load.drain()  # the drain window: not ready, still serving
                assert c.get("/readyz").status_code == 503
                assert c.get("/healthz").json() == {"status": "draining"}
                r = c.post("/v1/chat/completions", json=body)
                assert r.status_code == 200
                assert r.headers["connection"] == "close"
                app.state.load.stop()  # then: refusing new requests
                r = c.post("/v1/chat/completions", json=body)
                assert r.status_code == 503
                assert r.headers["connection"] == "close"
                assert c.get("/healthz").status_code == 503


def test_upstream_timeout_is_504(tmp_path_factory: pytest.TempPathFactory) -> None:
    with FakeProvider(seed=0).in_thread() as fake:
        fake.script(Reply(text="too late", delay=5), api="openai")
        fake.script(Reply(text="too late", delay=5), api="anthropic")
        settings = gateway_settings(tmp_path_factory.mktemp("slow"), upstream_timeout_s=0.3)
        app = create_app(settings, catalog=catalog_for(fake))
        with serve_in_thread(app) as url:
            headers = {"Authorization": "Bearer mk-test-master-key-0123456789"}
            with httpx.Client(base_url=url, headers=headers, timeout=30) as c:
                body = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}
                r = c.post("/v1/chat/completions", json=body)
                assert r.status_code == 504
                assert r.json()["error"]["code"] == "upstream_timeout"
                r = c.post("/v1/messages", json={**body, "model": "claude-fake", "max_tokens": 5})
                assert r.status_code == 504
                assert r.json() == {
                    "type": "error",
                    "error": {"type": "timeout_error", "message": "the model did not answer within 0.3s"},
                }


async def _one_word_then_stall(request: ChatRequest) -> AsyncIterator[str]:
    yield "one "
    await anyio.sleep(30)
    yield "never"


def test_a_stream_that_stalls_ends_with_a_timeout_event(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The per-chunk deadline: the client keeps what came and gets the timeout in its own format."""
    catalog = MappingCatalog({"stalls": PythonModel(_one_word_then_stall)})
    settings = gateway_settings(tmp_path_factory.mktemp("stall"), upstream_timeout_s=0.3)
    with serve_in_thread(create_app(settings, catalog=catalog)) as url:
        headers = {"Authorization": "Bearer mk-test-master-key-0123456789"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as c:
            body = {"model": "stalls", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            r = c.post("/v1/chat/completions", json=body)
            assert r.status_code == 200
            events = [line.removeprefix("data: ") for line in r.text.split("\n\n") if line]
            assert json.loads(events[1])["choices"][0]["delta"] == {"content": "one "}
            assert json.loads(events[-1])["error"]["code"] == "upstream_timeout"
            r = c.post("/v1/messages", json={**body, "max_tokens": 5})
            assert r.status_code == 200
            last = r.text.rstrip("\n").rsplit("\n\n", 1)[-1]
            assert last == (
                "event: error\ndata: "
                '{"type":"error","error":{"type":"timeout_error","message":"the model did not answer within 0.3s"}}'
            )
            assert '"text_delta","text":"one "' in r.text


_LEFT = threading.Event()


async def _words_until_closed(request: ChatRequest) -> AsyncIterator[str]:
    try:
        for i in range(10_000):
            yield f"word{i} "
            await anyio.sleep(0.02)
    finally:
        _LEFT.set()


def test_a_client_that_leaves_mid_stream_closes_the_upstream_and_is_charged(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    catalog = MappingCatalog({"words": PythonModel(_words_until_closed)})
    settings = gateway_settings(tmp_path_factory.mktemp("leave"))
    with serve_in_thread(create_app(settings, catalog=catalog)) as url:
        admin = {"Authorization": "Bearer mk-test-master-key-0123456789"}
        created = httpx.post(url + "/v1/admin/keys", json={"name": "leaver", "scopes": ["chat"]}, headers=admin)
        key = {"Authorization": f"Bearer {created.json()['key']}"}
        body = {"model": "words", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        with httpx.Client(base_url=url, headers=key, timeout=30) as c:
            with c.stream("POST", "/v1/chat/completions", json=body) as r:
                lines = r.iter_lines()
                assert any('"content":"word1 "' in line for line in lines)
            # the connection is gone with the response: the gateway stops the model and settles
            assert _LEFT.wait(10)
            for _ in range(100):
                rows = c.get("/v1/spend").json()["data"]
                if rows:
                    break
                time.sleep(0.1)
            assert [(row["model"], row["requests"]) for row in rows] == [("words", 1)]
