"""A failed run reports every failure (map items by index) and what the other steps returned."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_static_checks import legato, write

STEPS = """
async def ok() -> str:
    return "fine"

async def bad() -> str:
    raise ValueError("bad thing")

async def worse() -> str:
    raise RuntimeError("worse thing")

async def item(x: int) -> int:
    if x == 2:
        raise ValueError(f"cannot take {x}")
    return x
"""

SPEC = """
name: f
failure_policy: continue
steps:
  a:
    uses: ./f.py:ok
  b:
    uses: ./f.py:bad
  c:
    uses: ./f.py:worse
  m:
    uses: ./f.py:item
    map: x
    with:
      x: [1, 2, 3]
"""


def test_json_lists_every_failure_and_every_succeeded_output(tmp_path: Path) -> None:
    write(tmp_path / "f.py", STEPS)
    write(tmp_path / "f.yaml", SPEC)
    result = legato("run", "f.yaml", "--json", "--database-url", str(tmp_path / "runs.db"), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["status"] == "failed"
    assert doc["errors"] == {
        "b": "ValueError: bad thing",
        "c": "RuntimeError: worse thing",
        "m": "item 1: ValueError: cannot take 2",
    }
    assert doc["step_outputs"] == {"a": "fine"}


def test_text_output_prints_every_failure(tmp_path: Path) -> None:
    write(tmp_path / "f.py", STEPS)
    write(tmp_path / "f.yaml", SPEC)
    result = legato("run", "f.yaml", "--database-url", str(tmp_path / "runs.db"), cwd=tmp_path)
    assert result.returncode == 1
    assert "bad thing" in result.stdout
    assert "failed c: RuntimeError: worse thing" in result.stdout
    assert "failed m: item 1: ValueError: cannot take 2" in result.stdout
