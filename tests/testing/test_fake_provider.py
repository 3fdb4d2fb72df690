from __future__ import annotations

import json
import random
import socket
from pathlib import Path

import httpx
import pytest

from legato.errors import ConfigError
from legato.testing import FakeProvider, Fault, Latency, Reply, load_script

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ping"}]}


async def test_default_reply_echoes_last_user_message(fake_provider: FakeProvider) -> None:
    async with httpx.AsyncClient(base_url=fake_provider.openai_base_url) as client:
        r = await client.post("/chat/completions", json=CHAT)
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "ping"
    assert r.headers["x-request-id"].startswith("req_")


async def test_whole_bodies_carry_content_length_and_connections_disable_nagle(
    fake_provider: FakeProvider,
) -> None:
    # Without TCP_NODELAY on the server side, Nagle + the client's delayed ACK hold
    # every loopback response back by ~40 ms.
    async with httpx.AsyncClient(base_url=fake_provider.openai_base_url) as client:
        r = await client.post("/chat/completions", json=CHAT)
        nodelay = [
            conn.transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            for conn in fake_provider._server.server_state.connections
        ]
    assert r.headers["content-length"] == str(len(r.content))
    assert "transfer-encoding" not in r.headers
    assert nodelay
    assert all(nodelay)


async def test_script_items_are_consumed_in_order_and_filtered(fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="for claude"), api="anthropic")
    fake_provider.script(Reply(text="first"), Reply(text="second"), model="gpt-4o-mini")
    async with httpx.AsyncClient(base_url=fake_provider.openai_base_url) as client:
        texts = [(await client.post("/chat/completions", json=CHAT)).json() for _ in range(3)]
    assert [t["choices"][0]["message"]["content"] for t in texts] == ["first", "second", "ping"]
    assert fake_provider.pending == 1


async def test_probabilistic_faults_follow_the_seeded_draw() -> None:
    async with FakeProvider(seed=42) as fake:
        fake.inject(Fault.server_error(), probability=0.3, api="openai")
        async with httpx.AsyncClient(base_url=fake.openai_base_url) as client:
            statuses = [(await client.post("/chat/completions", json=CHAT)).status_code for _ in range(60)]
    rng = random.Random(42)
    expected = [500 if rng.random() < 0.3 else 200 for _ in range(60)]
    assert statuses == expected
    assert 0 < statuses.count(500) < 60


async def test_api_key_is_enforced_with_the_apis_own_401() -> None:
    async with FakeProvider(api_key="sk-right") as fake, httpx.AsyncClient(base_url=fake.base_url) as client:
        wrong = await client.post("/v1/messages", json=CHAT, headers={"x-api-key": "sk-wrong"})
        right = await client.post("/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-right"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["type"] == "authentication_error"
    assert wrong.headers["request-id"].startswith("req_")
    assert right.status_code == 200


async def test_invalid_json_and_missing_fields_get_400_and_are_recorded(fake_provider: FakeProvider) -> None:
    async with httpx.AsyncClient(base_url=fake_provider.base_url) as client:
        bad_json = await client.post("/v1/chat/completions", content=b"{not json")
        no_max = await client.post("/v1/messages", json=CHAT)
        unknown = await client.post("/v2/unknown", json={})
    assert bad_json.status_code == 400
    assert bad_json.json()["error"]["type"] == "invalid_request_error"
    assert no_max.status_code == 400
    assert "max_tokens" in no_max.json()["error"]["message"]
    assert unknown.status_code == 404
    assert [r.api for r in fake_provider.requests] == ["openai.chat", "anthropic.messages", "unknown"]
    assert fake_provider.requests[0].body is None
    assert fake_provider.requests[0].raw == b"{not json"


async def test_rate_limit_headers(fake_provider: FakeProvider) -> None:
    fake_provider.script(Fault.rate_limited(retry_after=2.5), api="openai")
    fake_provider.script(Fault.rate_limited(retry_after=None, retry_after_ms=1500), api="anthropic")
    async with httpx.AsyncClient(base_url=fake_provider.base_url) as client:
        o = await client.post("/v1/chat/completions", json=CHAT)
        a = await client.post("/v1/messages", json={**CHAT, "max_tokens": 5})
    assert o.headers["retry-after"] == "2.5"
    assert o.headers["x-ratelimit-reset-requests"] == "2.5s"
    assert o.json()["error"]["code"] == "rate_limit_exceeded"
    assert a.headers["retry-after-ms"] == "1500"
    assert "anthropic-ratelimit-requests-reset" in a.headers
    assert a.json()["error"]["type"] == "rate_limit_error"


async def test_connection_reset_and_cut_body(fake_provider: FakeProvider) -> None:
    fake_provider.script(Fault.reset(), Fault.disconnect())
    async with httpx.AsyncClient(base_url=fake_provider.openai_base_url) as client:
        with pytest.raises(httpx.TransportError):
            await client.post("/chat/completions", json=CHAT)
        with pytest.raises(httpx.TransportError):
            await client.post("/chat/completions", json=CHAT)
        ok = await client.post("/chat/completions", json=CHAT)
    assert ok.status_code == 200
    assert [r.outcome for r in fake_provider.requests] == ["reset", "disconnect", "200"]


async def test_tgi_generate_and_stream(fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="a b c d e", finish_reason="length", chunk_chars=2), api="tgi.generate_stream")
    async with httpx.AsyncClient(base_url=fake_provider.base_url) as client:
        plain = await client.post("/generate", json={"inputs": "hello", "parameters": {"details": True}})
        stream = await client.post("/generate_stream", json={"inputs": "hello"})
    assert plain.json()["generated_text"] == "hello"
    assert plain.json()["details"]["finish_reason"] == "eos_token"
    events = [json.loads(line[5:]) for line in stream.text.splitlines() if line.startswith("data:")]
    assert "".join(e["token"]["text"] for e in events) == "a b c d e"
    assert events[-1]["generated_text"] == "a b c d e"
    assert events[-1]["details"]["finish_reason"] == "length"


async def test_hf_tasks_and_model_loading(fake_provider: FakeProvider) -> None:
    fake_provider.script(Fault.overloaded(retry_after=7.0), api="hf")
    url = fake_provider.hf_base_url + "/models/org/model/pipeline/"
    async with httpx.AsyncClient() as client:
        loading = await client.post(url + "feature-extraction", json={"inputs": ["x"]})
        vectors = await client.post(url + "feature-extraction", json={"inputs": ["x", "y"]})
        one = await client.post(url + "feature-extraction", json={"inputs": "x"})
        labels = await client.post(url + "text-classification", json={"inputs": "great"})
        summary = await client.post(url + "summarization", json={"inputs": "A long text. More."})
    assert loading.status_code == 503
    assert loading.json()["estimated_time"] == 7.0
    assert len(vectors.json()) == 2
    assert vectors.json()[0] == one.json()
    assert labels.json()[0][0]["label"] == "POSITIVE"
    assert "summary_text" in summary.json()[0]
    assert fake_provider.requests[-1].model == "org/model"


async def test_azure_deployment_path(fake_provider: FakeProvider) -> None:
    async with httpx.AsyncClient(base_url=fake_provider.base_url) as client:
        r = await client.post(
            "/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21",
            json={"messages": CHAT["messages"]},
            headers={"api-key": "k"},
        )
    assert r.status_code == 200
    assert r.json()["model"] == "my-gpt"


def test_latency_distributions_are_seeded_and_shaped() -> None:
    rng = random.Random(3)
    samples = sorted(Latency.lognormal(0.05, 0.5).sample(rng) for _ in range(2001))
    assert 0.04 < samples[1000] < 0.06  # the median of a lognormal is its scale
    assert samples[1900] > 2 * samples[100]  # a long tail
    assert Latency.fixed(0.2).sample(rng) == 0.2
    assert all(0.1 <= Latency.uniform(0.1, 0.2).sample(rng) <= 0.2 for _ in range(100))
    assert Latency.normal(0.0, 1.0).sample(rng) >= 0


def test_in_thread_serves_synchronous_clients() -> None:
    with FakeProvider(default=Reply(text="threaded")).in_thread() as fake:
        r = httpx.post(fake.openai_base_url + "/chat/completions", json=CHAT)
    assert r.json()["choices"][0]["message"]["content"] == "threaded"


async def test_script_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "script.yaml"
    path.write_text(
        "seed: 1\n"
        "default: {text: hello}\n"
        "script:\n"
        "  - action: {kind: error, error: quota}\n"
        "  - action: {text: second}\n"
    )
    async with (
        FakeProvider.from_script(load_script(path)) as fake,
        httpx.AsyncClient(base_url=fake.openai_base_url) as client,
    ):
        results = [await client.post("/chat/completions", json=CHAT) for _ in range(3)]
    assert results[0].status_code == 429
    assert results[0].json()["error"]["code"] == "insufficient_quota"
    assert [r.json()["choices"][0]["message"]["content"] for r in results[1:]] == ["second", "hello"]


def test_script_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("script:\n  - action: {kind: error, error: teapot}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:2:.*script\.0\.action"):
        load_script(path)
