"""Authentication and authorisation: every endpoint x every scope, 401 vs 403, models per key, canaries."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from legato.server import SCOPES
from legato.testing import Fault

from .conftest import MASTER, Running

CHAT = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
MESSAGES = {"model": "claude-fake", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}

# (method, path, json body, scope that grants it; None = any valid key)
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, str | None]] = [
    ("POST", "/v1/chat/completions", CHAT, "chat"),
    ("POST", "/v1/messages", MESSAGES, "chat"),
    ("POST", "/v1/embeddings", {"model": "gpt-fake", "input": "hi"}, "embed"),
    ("GET", "/v1/models", None, None),
    ("POST", "/v1/pipelines/shout/runs", {"inputs": {"text": "x"}}, "runs:write"),
    ("GET", "/v1/runs", None, "runs:read"),
    ("GET", "/v1/runs/0000000000000000", None, "runs:read"),
    ("GET", "/v1/runs/0000000000000000/events", None, "runs:read"),
    ("POST", "/v1/runs/0000000000000000/cancel", None, "runs:write"),
    ("POST", "/v1/admin/keys", {"name": "made-by-matrix", "scopes": ["chat"]}, "admin"),
    ("GET", "/v1/admin/keys", None, "admin"),
    ("GET", "/v1/admin/keys/lg_000000000", None, "admin"),
    ("DELETE", "/v1/admin/keys/lg_000000000", None, "admin"),
    ("GET", "/v1/admin/spend", None, "admin"),
]


@pytest.fixture(scope="module")
def keys(gateway: Running) -> dict[str, str]:
    made = {scope: gateway.create_key([scope]) for scope in SCOPES}
    made["revoked"] = gateway.create_key(list(SCOPES))
    with gateway.admin() as c:
        assert c.delete(f"/v1/admin/keys/{made['revoked'][:12]}").status_code == 200
    return made


@pytest.mark.parametrize(("method", "path", "body", "needed"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
@pytest.mark.parametrize("scope", SCOPES)
def test_scope_matrix(
    gateway: Running, keys: dict[str, str], scope: str, method: str, path: str, body: Any, needed: str | None
) -> None:
    with gateway.client(keys[scope]) as c:
        r = c.request(method, path, json=body)
    allowed = needed is None or scope == needed or scope == "admin"
    if allowed:
        assert r.status_code not in (401, 403), r.text
    else:
        assert r.status_code == 403, r.text
        assert needed in r.json()["error"]["message"]
        assert keys[scope][:12] in r.json()["error"]["message"]


@pytest.mark.parametrize(("method", "path", "body", "needed"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
@pytest.mark.parametrize("credential", ["none", "unknown", "malformed", "revoked", "wrong-scheme"])
def test_401_without_a_valid_key(
    gateway: Running, keys: dict[str, str], credential: str, method: str, path: str, body: Any, needed: str | None
) -> None:
    headers = {
        "none": {},
        "unknown": {"Authorization": "Bearer lg_" + "A" * 40},
        "malformed": {"x-api-key": "not-a-key"},
        "revoked": {"Authorization": f"Bearer {keys['revoked']}"},
        "wrong-scheme": {"Authorization": f"Basic {keys['admin']}"},
    }[credential]
    before = len(gateway.fake.requests)
    with gateway.client(**headers) as c:
        r = c.request(method, path, json=body)
    assert r.status_code == 401, r.text
    assert len(gateway.fake.requests) == before
    if credential == "revoked":
        assert "revoked" in r.text
        assert keys["revoked"] not in r.text


def test_master_key_and_x_api_key_header(gateway: Running) -> None:
    with gateway.client(**{"x-api-key": MASTER}) as c:
        assert c.get("/v1/admin/keys").status_code == 200
    with gateway.client(**{"x-api-key": MASTER + "x"}) as c:
        assert c.get("/v1/admin/keys").status_code == 401


def test_models_per_key(gateway: Running) -> None:
    with gateway.admin() as c:
        key = c.post("/v1/admin/keys", json={"name": "gpt only", "scopes": ["chat"], "models": ["gpt-fake"]}).json()
    assert key["models"] == ["gpt-fake"]
    with gateway.client(key["key"]) as c:
        assert [m["id"] for m in c.get("/v1/models").json()["data"]] == ["gpt-fake"]
        assert c.post("/v1/chat/completions", json=CHAT).status_code == 200
        denied = c.post("/v1/chat/completions", json={**CHAT, "model": "claude-fake"})
        assert denied.status_code == 403
        assert "claude-fake" in denied.json()["error"]["message"]


def test_admin_key_listing_never_shows_secrets(gateway: Running) -> None:
    secret = gateway.create_key(["chat"])
    with gateway.admin() as c:
        listing = c.get("/v1/admin/keys").text
        shown = c.get(f"/v1/admin/keys/{secret[:12]}").json()
    assert secret not in listing
    assert secret[:12] in listing
    assert shown["prefix"] == secret[:12]
    assert "key" not in shown
    assert "key_hash" not in listing


def test_canaries_never_leak(gateway: Running, caplog: pytest.LogCaptureFixture) -> None:
    """The caller's key, the master key and the upstream API key appear in no error body and no log line."""
    canary = gateway.create_key(["embed"])
    bodies: list[str] = []
    with caplog.at_level(logging.DEBUG):
        with gateway.client(canary) as c:
            bodies.append(c.post("/v1/chat/completions", json=CHAT).text)  # 403 scope
            bodies.append(c.post("/v1/embeddings", json={"model": "nope", "input": "x"}).text)  # 404
            bodies.append(c.post("/v1/embeddings", json={"model": "gpt-fake", "input": []}).text)  # 400
            bodies.append(
                c.post("/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"}).text
            )
            gateway.fake.script(Fault.http_error("auth"))
            bodies.append(c.post("/v1/embeddings", json={"model": "gpt-fake", "input": "x"}).text)  # upstream 401
        with gateway.client(canary + "x") as c:
            bodies.append(c.get("/v1/models").text)
        with gateway.client(MASTER[:-1]) as c:
            bodies.append(c.get("/v1/admin/keys").text)
        with gateway.client(**{"x-api-key": canary}) as c:
            bodies.append(c.post("/v1/messages", json=MESSAGES).text)  # 403 in Anthropic shape
    text = "\n".join(bodies) + "\n" + "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    for secret in (canary, MASTER, "sk-fake", "sk-ant-fake"):
        assert secret not in text
    assert len(bodies) == 8
    assert all(b.startswith("{") for b in bodies)
