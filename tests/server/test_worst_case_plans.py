"""The gateway prices each call's worst case on the served model, whose plan (what it
may reach, at what prices) is kept once per model, not once per request: the wrapper
built for a request (the key's guardrail) is not what is priced."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from legato.server import create_app
from legato.testing import FakeProvider

from .conftest import MASTER, catalog_for, gateway_settings


def test_one_worst_case_plan_per_served_model_however_many_calls(tmp_path: Path, fake: FakeProvider) -> None:
    app = create_app(gateway_settings(tmp_path), catalog=catalog_for(fake))
    headers = {"Authorization": f"Bearer {MASTER}"}
    with TestClient(app) as client:
        for model in ["gpt-fake"] * 5 + ["claude-fake"] * 3:
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
            assert client.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
        for _ in range(3):
            body = {"model": "gpt-fake", "input": "hello"}
            assert client.post("/v1/embeddings", json=body, headers=headers).status_code == 200
        gateway = app.state.gateway
        plans = gateway._estimator._plans
        assert {id(m) for m, _ in plans.values()} == {id(gateway.model("gpt-fake")), id(gateway.model("claude-fake"))}
