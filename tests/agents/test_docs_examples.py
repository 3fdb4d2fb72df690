"""The examples of docs/agents.md run as written (offline, against the fake provider)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "agents.md"


def named_blocks() -> dict[str, str]:
    """Fenced blocks whose first line is a comment naming a file (``# support.yaml``)."""
    blocks = {}
    for body in re.findall(r"```(?:python|yaml)\n(.*?)```", PAGE.read_text(), flags=re.S):
        first = body.splitlines()[0]
        match = re.fullmatch(r"# ([\w.]+\.(?:py|yaml))", first)
        if match and match.group(1) != "legato.yaml":
            blocks[match.group(1)] = body
    return blocks


def run(script: str, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("LEGATO_CONFIG", None)
    done = subprocess.run(
        [sys.executable, script], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    blocks = named_blocks()
    assert {"agent_demo.py", "support_tools.py", "support.yaml", "shipping.yaml", "run_support.py"} <= set(blocks)
    for name, body in blocks.items():
        (tmp_path / name).write_text(body)
    return tmp_path


def test_the_python_agent_example_runs(examples: Path) -> None:
    out = run("agent_demo.py", examples).splitlines()
    assert out[0] == "Your order A-1001 has shipped with DHL."
    assert out[1] == 'lookup_order({"order_id": "A-1001"}) -> {"state":"shipped","carrier":"DHL"}'
    assert re.fullmatch(r"2 turns, \d+ tokens, \$\d+\.\d{6}", out[2])


def test_the_pipeline_example_runs(examples: Path) -> None:
    out = run("run_support.py", examples).splitlines()
    assert out == ["A-1001 was delivered; you get 40.0 back.", "['lookup_order', 'shipping', 'refund_amount']"]


def test_the_durable_python_example_runs(examples: Path) -> None:
    out = run("durable_agent.py", examples).splitlines()
    assert out == ["Invoice sent. (2 model calls, 2 tool calls)"]
