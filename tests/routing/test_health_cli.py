from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legato.cli import app
from legato.testing import FakeProvider, Fault


def test_models_health_reports_every_deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGATO_HEALTH_KEY", "sk-test")
    monkeypatch.delenv("LEGATO_HEALTH_MISSING", raising=False)
    with FakeProvider(seed=1).in_thread() as fake:
        fake.inject(Fault.http_error("auth"), model="revoked")
        fake.inject(Fault.server_error(), model="broken")
        config = tmp_path / "legato.yaml"
        config.write_text(
            "models:\n"
            f"  ok: {{provider: openai, model: ok, api_key: env:LEGATO_HEALTH_KEY, "
            f"base_url: '{fake.openai_base_url}'}}\n"
            f"  revoked: {{provider: anthropic, model: revoked, api_key: env:LEGATO_HEALTH_KEY, "
            f"base_url: '{fake.anthropic_base_url}'}}\n"
            f"  broken: {{provider: openai, model: broken, api_key: env:LEGATO_HEALTH_KEY, "
            f"base_url: '{fake.openai_base_url}'}}\n"
            "  nokey: {provider: openai, model: gpt-4o-mini, api_key: env:LEGATO_HEALTH_MISSING}\n"
            "groups:\n"
            "  main:\n"
            "    deployments: [{model: ok}, {model: revoked}, {model: broken}, {model: nokey}]\n"
        )
        result = CliRunner().invoke(app, ["models", "health", "--config", str(config), "--json"])
    assert result.exit_code == 1, result.output
    rows = {r["deployment"]: r for r in json.loads(result.stdout)}
    assert {name: r["state"] for name, r in rows.items()} == {
        "ok": "healthy",
        "revoked": "unhealthy",
        "broken": "ejected",
        "nokey": "unavailable",
    }
    assert "LEGATO_HEALTH_MISSING" in rows["nokey"]["error"]
    assert rows["nokey"]["probe_ms"] is None  # nothing to probe without a key
    assert rows["ok"]["probe_ms"] is not None


def test_models_health_without_probes_and_with_a_bad_group(tmp_path: Path) -> None:
    config = tmp_path / "legato.yaml"
    config.write_text("groups:\n  g:\n    deployments: [{model: missing-model}]\n")
    result = CliRunner().invoke(app, ["models", "health", "--config", str(config), "--no-probe"])
    assert result.exit_code == 2
    assert "missing-model" in result.output
