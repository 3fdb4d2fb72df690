"""The groups ``legato.models.get`` shares have an owner that closes their connection
pools: a command ends without aiohttp's "Unclosed client session" at exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from legato.config import LegatoConfig
from legato.providers import ChatRequest, Message
from legato.testing import FakeProvider

ROOT = Path(__file__).resolve().parents[2]

PIPELINE = """\
name: ask
inputs:
  q: {type: string}
steps:
  answer:
    llm: g
    prompt: ${inputs.q}
outputs:
  text: ${steps.answer}
"""


def _config(base_url: str) -> str:
    return (
        "models:\n"
        f"  a: {{provider: openai, model: a, api_key: env:LEGATO_TEST_KEY, base_url: '{base_url}'}}\n"
        "groups:\n"
        "  g:\n"
        "    deployments: [{model: a}]\n"
    )


def test_legato_run_closes_the_pools_of_the_groups_it_used(tmp_path: Path) -> None:
    with FakeProvider(seed=1).in_thread() as fake:
        (tmp_path / "legato.yaml").write_text(_config(fake.openai_base_url))
        (tmp_path / "ask.yaml").write_text(PIPELINE)
        env = {k: v for k, v in os.environ.items() if k != "LEGATO_CONFIG"}
        env.update(PYTHONPATH=str(ROOT / "src"), LEGATO_TEST_KEY="sk-test", PYTHONWARNINGS="always")
        command = [str(Path(sys.executable).parent / "legato"), "run", "ask.yaml", "-i", "q=hello"]
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Unclosed" not in result.stderr


def test_closing_the_shared_groups_also_closes_pools_that_groups_built_before_the_loop_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import legato.models
    from legato.routing import aclose_shared_groups

    monkeypatch.setenv("LEGATO_TEST_KEY", "sk-test")
    with FakeProvider(seed=1).in_thread() as fake:
        (tmp_path / "legato.yaml").write_text(_config(fake.openai_base_url))
        config = LegatoConfig.load(tmp_path / "legato.yaml")
        groups = legato.models.model_groups(config)  # looked up while loading, before any loop runs
        router = groups.router("g")
        assert router is not None
        model: Any = router.deployments[0].model
        while hasattr(model, "inner"):
            model = model.inner
        request = ChatRequest(messages=[Message(role="user", content="hi")])
        sessions: list[Any] = []

        async def main() -> None:
            assert (await groups.get("g").chat(request)).text == "hi"
            sessions.append(model._http)
            await aclose_shared_groups()

        anyio.run(main)
        anyio.run(main)  # the groups stay usable: their pools reopen on the next loop
    assert len(sessions) == 2
    assert all(wire.closed for wire in sessions)
