"""Many ``legato run`` processes with one idempotency key: one run, and every submitter
reports that run's outcome (they wait for it), not "failed" while it is in progress."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

LEGATO = [sys.executable, "-c", "from legato.cli import main; main()"]

STEPS = """
import time
from pathlib import Path

HERE = Path(__file__).parent


def slow(text: str) -> str:
    with open(HERE / "calls.txt", "a") as f:
        f.write("slow\\n")
    (HERE / "started").touch()
    while not (HERE / "release").exists():
        time.sleep(0.02)
    if (HERE / "fail").exists():
        raise RuntimeError("the slow step gave up")
    return text.upper()
"""

PIPELINE = """
name: once
inputs: {text: string}
steps:
  slow: {uses: ./steps.py:slow}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "steps.py").write_text(STEPS)
    (tmp_path / "once.yaml").write_text(textwrap.dedent(PIPELINE).lstrip())
    return tmp_path


def submit(project: Path, *extra: str) -> subprocess.Popen[str]:
    cmd = [*LEGATO, "run", str(project / "once.yaml"), "-i", "text=hi", "--idempotency-key", "order-7", "--json"]
    cmd += ["--database-url", str(project / "s.db"), *extra]
    return subprocess.Popen(cmd, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_file(path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("fails", [False, True], ids=["succeeds", "fails"])
def test_duplicate_submitters_wait_for_the_one_run(project: Path, fails: bool) -> None:
    if fails:
        (project / "fail").touch()
    first = submit(project)
    wait_for_file(project / "started")  # the run is stored and executing in the first process
    others = [submit(project) for _ in range(3)]
    late = submit(project, "--no-wait")
    out, err = late.communicate(timeout=120)
    assert late.returncode == 0, err
    elsewhere = json.loads(out)
    assert elsewhere["status"] == "running"
    time.sleep(1.0)  # let the waiters find the run in progress
    (project / "release").touch()
    results = []
    for proc in [first, *others]:
        out, err = proc.communicate(timeout=120)
        results.append((proc.returncode, json.loads(out), err))
    run_ids = {doc["run_id"] for _, doc, _ in results}
    assert run_ids == {elsewhere["run_id"]}
    assert (project / "calls.txt").read_text().split() == ["slow"]  # one run, one execution
    if fails:
        assert [code for code, _, _ in results] == [1] * 4
        assert all(doc["status"] == "failed" for _, doc, _ in results)
        assert all("the slow step gave up" in doc["error"] for _, doc, _ in results)
    else:
        assert [code for code, _, _ in results] == [0] * 4, [err for _, _, err in results]
        assert all(doc["outputs"] == {"slow": "HI"} for _, doc, _ in results)
    waited = [err for _, _, err in results[1:] if "waiting for its result" in err]
    assert waited  # at least the submitters that arrived while it ran said they were waiting


def test_ctrl_c_stops_waiting_and_leaves_the_run_to_its_process(project: Path) -> None:
    first = submit(project)
    wait_for_file(project / "started")
    waiter = submit(project)
    deadline = time.monotonic() + 120
    seen = ""
    while "waiting for its result" not in seen:  # the waiter found the run in progress
        assert time.monotonic() < deadline, seen
        assert waiter.poll() is None, seen
        seen += waiter.stderr.readline() if waiter.stderr else ""
    waiter.send_signal(signal.SIGINT)
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 130, err
    assert "stopped waiting for run" in err
    assert "cancelling run" not in err
    (project / "release").touch()
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert json.loads(out)["status"] == "succeeded"  # the other process's run was left alone
