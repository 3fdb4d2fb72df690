"""Wire details clients rely on: ``GET /v1/models/{id}``, ``POST /v1/messages/count_tokens``,
``x-request-id`` on every response, and OpenAI's ``x-ratelimit-*`` headers, checked
with plain httpx and with the official SDKs against a real gateway."""

from __future__ import annotations

import anthropic
import openai
import pytest

from .conftest import Running

MESSAGES = [{"role": "user", "content": "hello there, how are you today?"}]


@pytest.fixture(scope="module")
def key(gateway: Running) -> str:
    return gateway.create_key(["chat", "embed"], models=["gpt-fake", "claude-fake"])


def test_get_model_by_id_in_both_formats(gateway: Running, key: str) -> None:
    with gateway.client(key) as c:
        r = c.get("/v1/models/gpt-fake")
        assert r.status_code == 200
        assert r.json() == {"id": "gpt-fake", "object": "model", "created": 0, "owned_by": "legato"}
        r = c.get("/v1/models/claude-fake", headers={"anthropic-version": "2023-06-01"})
        assert r.json()["type"] == "model"
        assert r.json()["id"] == "claude-fake"
        missing = c.get("/v1/models/no-such-model")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "model_not_found"
    narrow = gateway.create_key(["chat"], models=["gpt-fake"])
    with gateway.client(narrow) as c:  # a model the key may not use looks like one that does not exist
        assert c.get("/v1/models/claude-fake").json() == missing.json() | {
            "error": {**missing.json()["error"], "message": "model 'claude-fake' does not exist"}
        }


def test_sdks_retrieve_a_model(gateway: Running, key: str) -> None:
    with openai.OpenAI(api_key=key, base_url=gateway.url + "/v1", max_retries=0) as client:
        assert client.models.retrieve("gpt-fake").id == "gpt-fake"
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("nope")
    with anthropic.Anthropic(api_key=key, base_url=gateway.url, max_retries=0) as client:
        assert client.models.retrieve("claude-fake").id == "claude-fake"


def test_count_tokens_with_the_anthropic_sdk_makes_no_provider_call(gateway: Running, key: str) -> None:
    before = len(gateway.fake.requests)
    with anthropic.Anthropic(api_key=key, base_url=gateway.url, max_retries=0) as client:
        short = client.messages.count_tokens(model="claude-fake", messages=[{"role": "user", "content": "hi"}])
        long = client.messages.count_tokens(
            model="claude-fake", messages=[{"role": "user", "content": "many words " * 100}], system="be brief"
        )
        assert 0 < short.input_tokens < long.input_tokens
        with pytest.raises(anthropic.BadRequestError):
            client.messages.count_tokens(model="claude-fake", messages=[])
        with pytest.raises(anthropic.PermissionDeniedError):  # this key may use two models only
            client.messages.count_tokens(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert len(gateway.fake.requests) == before


def test_every_response_carries_a_request_id(gateway: Running, key: str) -> None:
    with gateway.client(key) as c:
        ok = c.post("/v1/chat/completions", json={"model": "gpt-fake", "messages": MESSAGES})
        refused = c.post("/v1/chat/completions", content=b"{")
        probe = c.get("/healthz")
        ids = [r.headers["x-request-id"] for r in (ok, refused, probe)]
        assert all(i.startswith("req_") and len(i) == 36 for i in ids)
        assert len(set(ids)) == 3
        mine = c.get("/v1/models", headers={"x-request-id": "client-trace:42"})
        assert mine.headers["x-request-id"] == "client-trace:42"
        hostile = c.get("/v1/models", headers={"x-request-id": "a b\tc" + "x" * 200})
        assert hostile.headers["x-request-id"].startswith("req_")  # not echoed: generated instead
    with gateway.client("lg_" + "z" * 40) as c:
        assert c.get("/v1/models").headers["x-request-id"].startswith("req_")  # 401 too


def test_sdk_exposes_the_request_id(gateway: Running, key: str) -> None:
    with openai.OpenAI(api_key=key, base_url=gateway.url + "/v1", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-fake", messages=MESSAGES)  # type: ignore[arg-type]
        assert raw.headers["x-request-id"].startswith("req_")


def test_rate_limit_headers_count_down_for_a_key_with_limits(gateway: Running) -> None:
    limited = gateway.create_key(["chat"], rpm=5, tpm=100_000)
    with gateway.client(limited) as c:
        seen = []
        for _ in range(5):
            r = c.post("/v1/chat/completions", json={"model": "gpt-fake", "messages": MESSAGES})
            assert r.status_code == 200
            assert r.headers["x-ratelimit-limit-requests"] == "5"
            assert r.headers["x-ratelimit-limit-tokens"] == "100000"
            assert r.headers["x-ratelimit-reset-requests"].endswith("s")
            seen.append(int(r.headers["x-ratelimit-remaining-requests"]))
        assert seen == [4, 3, 2, 1, 0]
        refused = c.post("/v1/chat/completions", json={"model": "gpt-fake", "messages": MESSAGES})
        assert refused.status_code == 429
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert int(refused.headers["retry-after"]) >= 1
    tokens = gateway.create_key(["chat"], tpm=100_000)
    with gateway.client(tokens) as c:
        first = c.post("/v1/chat/completions", json={"model": "gpt-fake", "messages": MESSAGES})
        second = c.post("/v1/chat/completions", json={"model": "gpt-fake", "messages": MESSAGES})
        assert "x-ratelimit-limit-requests" not in first.headers
        used = first.json()["usage"]["total_tokens"]
        assert int(first.headers["x-ratelimit-remaining-tokens"]) == 100_000
        assert int(second.headers["x-ratelimit-remaining-tokens"]) == 100_000 - used


def test_a_key_without_limits_gets_no_rate_limit_headers(gateway: Running, key: str) -> None:
    with gateway.client(key) as c:
        r = c.post("/v1/chat/completions", json={"model": "gpt-fake", "messages": MESSAGES})
    assert not [h for h in r.headers if h.startswith("x-ratelimit")]


def test_sdks_raise_bad_request_for_values_that_would_only_coerce(gateway: Running, key: str) -> None:
    before = len(gateway.fake.requests)
    with openai.OpenAI(api_key=key, base_url=gateway.url + "/v1", max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model="gpt-fake", messages=MESSAGES, max_tokens=True)  # type: ignore[arg-type]
        assert err.value.param == "max_tokens"  # type: ignore[attr-defined]
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="gpt-fake", messages=MESSAGES, extra_body={"stream": "yes"})
        with pytest.raises(openai.BadRequestError):
            client.embeddings.create(model="gpt-fake", input="x", extra_body={"dimensions": True})
    with anthropic.Anthropic(api_key=key, base_url=gateway.url, max_retries=0) as client:
        with pytest.raises(anthropic.BadRequestError) as aerr:
            client.messages.create(model="claude-fake", max_tokens=True, messages=[{"role": "user", "content": "hi"}])  # type: ignore[arg-type]
        assert aerr.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert len(gateway.fake.requests) == before
