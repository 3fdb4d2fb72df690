"""Runs started from Python are recorded in the store ``legato.yaml`` names
(``store: {url: ...}``), without ``Pipeline(store=...)``: ``legato runs list`` (the
real CLI) shows them, ``legato runs resume`` finishes a failed one, and a pipeline
without such a ``legato.yaml`` records nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

APP = """
import os

from legato import Pipeline

p = Pipeline("py_configured")


@p.step
async def first(n: int) -> int:
    return n + 1


@p.step
async def second(first: int) -> int:
    if os.path.exists("fail"):
        raise RuntimeError("flaky")
    return first * 10
"""

RUN = """
import asyncio
import contextlib

import app


async def main() -> None:
    result = await app.p.run(n=1)
    print(result.run_id, result.status)
    async with contextlib.aclosing(app.p.stream(n=2)) as events:
        async for event in events:
            last = event
    print(last.run_id, type(last).__name__)


asyncio.run(main())
"""


def sh(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LEGATO_CONFIG", "LEGATO_DATABASE_URL", "COLUMNS")}
    return subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, timeout=120)


def legato(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return sh(project, sys.executable, "-m", "legato", *args)


def project(tmp_path: Path, config: str | None) -> Path:
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "run.py").write_text(textwrap.dedent(RUN))
    if config is not None:
        (tmp_path / "legato.yaml").write_text(config)
    return tmp_path


def test_python_runs_are_recorded_in_the_configured_store_and_resume(tmp_path: Path) -> None:
    root = project(tmp_path, "store:\n  url: sqlite:///data/runs.db   # relative to this file\n")
    (root / "fail").touch()
    ran = sh(root, sys.executable, "run.py")
    assert ran.returncode == 0, ran.stderr
    (failed_id, status), (streamed_id, last) = (line.split() for line in ran.stdout.splitlines())
    assert (status, last) == ("failed", "RunFinished")
    assert (root / "data" / "runs.db").is_file()

    listed = legato(root, "runs", "list")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split()[1:3] for line in listed.stdout.splitlines()[1:]}
    assert rows[next(r for r in rows if failed_id.startswith(r))] == ["py_configured", "failed"]
    assert rows[next(r for r in rows if streamed_id.startswith(r))] == ["py_configured", "failed"]

    (root / "fail").unlink()
    resumed = legato(root, "runs", "resume", failed_id, "--json")  # reloads app:p, the recorded source
    assert resumed.returncode == 0, resumed.stderr
    assert '"second": 20' in resumed.stdout
    after = legato(root, "runs", "list", "--status", "succeeded").stdout
    assert any(failed_id.startswith(line.split()[0]) for line in after.splitlines()[1:]), after


def test_without_a_store_in_legato_yaml_python_runs_are_not_recorded(tmp_path: Path) -> None:
    root = project(tmp_path, "models: {}\n")
    ran = sh(root, sys.executable, "run.py")
    assert ran.returncode == 0, ran.stderr
    assert not (root / ".legato").exists()
    assert not list(root.rglob("*.db"))
