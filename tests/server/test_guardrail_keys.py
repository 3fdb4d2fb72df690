"""A key's guardrail over the real gateway: blocked in both client formats before any
provider call, masked round trips, unknown guardrail names refused."""

from __future__ import annotations

import json

import pytest

from legato.testing import Reply

from .conftest import Running

pytest.importorskip("presidio_analyzer")

EMAIL = "john.smith@example.com"
ASK = f"Please write to {EMAIL} about the refund."


def test_a_blocking_key_gets_400_in_the_openai_format_and_nothing_reaches_the_provider(gateway: Running) -> None:
    key = gateway.create_key(["chat"], guardrail="pii-block")
    with gateway.client(key) as c:
        r = c.post("/v1/chat/completions", json={"model": "gpt-fake", "messages": [{"role": "user", "content": ASK}]})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "guardrail_blocked"
    assert error["type"] == "invalid_request_error"
    assert "EMAIL_ADDRESS" in error["message"]
    assert EMAIL not in r.text
    assert gateway.fake.requests == []


def test_a_blocking_key_gets_400_in_the_anthropic_format(gateway: Running) -> None:
    key = gateway.create_key(["chat"], guardrail="pii-block")
    body = {"model": "claude-fake", "max_tokens": 50, "messages": [{"role": "user", "content": ASK}]}
    with gateway.client(key) as c:
        r = c.post("/v1/messages", json=body)
        streamed = c.post("/v1/messages", json={**body, "stream": True})
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert streamed.status_code == 400  # refused before the stream starts
    assert gateway.fake.requests == []


def test_a_masking_key_hides_pii_from_the_provider_and_restores_it(gateway: Running) -> None:
    gateway.fake.script(Reply(text=None))
    key = gateway.create_key(["chat"], guardrail="pii-mask")
    with gateway.client(key) as c:
        r = c.post("/v1/chat/completions", json={"model": "gpt-fake", "messages": [{"role": "user", "content": ASK}]})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == ASK
    sent = json.dumps([q.body for q in gateway.fake.requests])
    assert EMAIL not in sent
    assert "<EMAIL_ADDRESS_1>" in sent


def test_an_unknown_guardrail_name_is_a_400_naming_the_known_ones(gateway: Running) -> None:
    with gateway.admin() as c:
        r = c.post("/v1/admin/keys", json={"name": "t", "scopes": ["chat"], "guardrail": "pii-mask2"})
    assert r.status_code == 400
    assert "pii-mask" in r.json()["error"]["message"]
