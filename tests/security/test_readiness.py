"""Readiness per model, and model configuration checked at start-up, on real ``legato serve``
processes: one model that cannot be served does not take the replica out (unless the
operator asks for ``all_models``), and an invalid model stops the start with one line
that names the model and the field, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _serve import MASTER, ServeProcess
from legato.testing import FakeProvider

pytestmark = pytest.mark.slow

MODELS = """\
models:
  gpt-fake:
    provider: openai
    model: gpt-fake
    base_url: "{base_url}"
    api_key: env:SECURITY_FAKE_KEY
  keyless:
    provider: openai
    model: gpt-fake
    base_url: "{base_url}"
    api_key: env:LEGATO_TEST_UNSET_KEY
server:
  master_key: env:SECURITY_MASTER_KEY
  ready_when: {ready_when}
"""


@pytest.mark.parametrize(("ready_when", "status"), [("any_model", 200), ("all_models", 503)])
def test_readiness_lists_each_model_and_needs_only_one_by_default(tmp_path: Path, ready_when: str, status: int) -> None:
    with FakeProvider(seed=0).in_thread() as fake:
        (tmp_path / "legato.yaml").write_text(MODELS.format(base_url=fake.openai_base_url, ready_when=ready_when))
        proc = ServeProcess(tmp_path / "legato.yaml", "--database-url", f"sqlite:///{tmp_path / 'gateway.db'}")
        try:
            proc.wait_ready("/healthz")
            with proc.client() as c:
                r = c.get("/readyz")
                assert r.status_code == status, r.text
                checks = r.json()["checks"]
                assert checks["models"] == {"gpt-fake": True, "keyless": False}
                assert checks["models_not_ready"] == ["keyless"]
                chat = {"model": "gpt-fake", "messages": [{"role": "user", "content": "served"}]}
                assert c.post("/v1/chat/completions", json=chat).status_code == 200
        finally:
            proc.stop()
    assert "model 'keyless' needs the environment variable LEGATO_TEST_UNSET_KEY" in proc.log_path.read_text()


BAD = [
    (
        "models:\n  good: {provider: openai, model: m, api_key: env:HOME}\n"
        "  typo: {provider: opnai, model: m, api_key: env:HOME}\n",
        ["models.typo", "unknown provider 'opnai'"],
    ),
    (
        "models:\n  slow: {provider: openai, model: m, api_key: env:HOME, timeout: soon}\n",
        ["models.slow.timeout", "valid number"],
    ),
    (
        "models:\n  odd: {provider: openai, model: m, api_key: env:HOME, options: {colour: blue}}\n",
        ["models.odd", "unknown option(s) colour"],
    ),
    (
        "models:\n  good: {provider: openai, model: m, api_key: env:HOME}\n"
        "groups:\n  chat:\n    deployments: [{model: good}, {model: gone}]\n",
        ["groups.chat", "unknown model 'gone'"],
    ),
    (
        "models:\n  good: {provider: openai, model: m, api_key: env:HOME}\nserver:\n  models: [good, absent]\n",
        ["server.models", "'absent'"],
    ),
]


@pytest.mark.parametrize(("config", "expected"), BAD, ids=["provider", "field", "option", "group", "exposed"])
def test_an_invalid_model_stops_the_start_with_one_line(tmp_path: Path, config: str, expected: list[str]) -> None:
    (tmp_path / "legato.yaml").write_text(config)
    legato = str(Path(sys.executable).parent / "legato")
    env = {**os.environ, "SECURITY_MASTER_KEY": MASTER}
    db = f"sqlite:///{tmp_path / 'gateway.db'}"
    done = subprocess.run(
        [legato, "serve", "--config", str(tmp_path / "legato.yaml"), "--port", "0", "--database-url", db],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    for part in expected:
        assert part in lines[0]
    assert not (tmp_path / "gateway.db").exists()  # stopped before opening anything
