"""Cancelling real ``legato run`` processes: ``legato runs cancel`` on SQLite and
PostgreSQL, Ctrl-C (SIGINT) once and twice, and resuming a cancelled run.

The pipeline runs two async steps and one blocking sync step in parallel (each logs
its start to a file and would take a minute), and one step after them. The cancel
tests print how long the cancel took (the figure; bench/cancel.py measures p50/p99)
and assert behaviour only: every running step stopped and was recorded cancelled,
the step after them never started, and the run says who cancelled it and when.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from legato.store import RunRecord, RunStore

pytestmark = pytest.mark.slow

LEGATO = str(Path(sys.executable).parent / "legato")

STEPS = """
import time
from pathlib import Path

import anyio

from legato.engine import current_step

HERE = Path(__file__).parent


def _log(what: str) -> None:
    with open(HERE / "calls.txt", "a") as f:
        f.write(what + "\\n")


def _name() -> str:
    ctx = current_step()
    return "?" if ctx is None else f"{ctx.step}#{ctx.attempt}"


async def slow() -> str:
    _log("start " + _name())
    if not (HERE / "go").exists():
        await anyio.sleep(60)
    return "done"


def blocking() -> str:
    _log("start " + _name())
    if not (HERE / "go").exists():
        time.sleep(60)  # a sync step: Python cannot interrupt it
    return "done"


async def stubborn() -> str:
    _log("start " + _name())
    try:
        await anyio.sleep(60)
    finally:
        with anyio.CancelScope(shield=True):  # ignores cancellation for a minute
            _log("cleanup " + _name())
            await anyio.sleep(60)
    return "never"


async def after(a: str, b: str, c: str) -> str:
    _log("start " + _name())
    return a + b + c
"""

PIPELINE = """
name: stoppable
steps:
  a: {uses: ./steps.py:slow}
  b: {uses: ./steps.py:slow}
  c: {uses: ./steps.py:blocking}
  after: {uses: ./steps.py:after}
"""

TIMED = """
name: timed
steps:
  c: {uses: ./steps.py:blocking, timeout: 0.3}
"""

STUBBORN = """
name: stubborn
steps:
  s: {uses: ./steps.py:stubborn}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "steps.py").write_text(STEPS)
    (tmp_path / "stoppable.yaml").write_text(PIPELINE.lstrip())
    (tmp_path / "stubborn.yaml").write_text(STUBBORN.lstrip())
    (tmp_path / "timed.yaml").write_text(TIMED.lstrip())
    return tmp_path


def logged(project: Path) -> list[str]:
    path = project / "calls.txt"
    return path.read_text().splitlines() if path.exists() else []


def start_run(project: Path, db: str, pipeline: str = "stoppable.yaml") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [LEGATO, "run", pipeline, "--database-url", db],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(project: Path, proc: subprocess.Popen[str], lines: set[str]) -> None:
    deadline = time.monotonic() + 60
    while not lines <= set(logged(project)):
        if proc.poll() is not None:
            raise AssertionError(f"legato run exited early ({proc.returncode}): {proc.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"steps did not start: {logged(project)}")
        time.sleep(0.02)


def stored(db: str, pipeline: str = "stoppable") -> tuple[RunRecord, list[Any]]:
    async def read() -> tuple[RunRecord, list[Any]]:
        async with RunStore(db) as store:
            (record,) = await store.list_runs(pipeline=pipeline)
            return record, await store.events(record.id)

    return anyio.run(read)


def cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LEGATO, *args], cwd=project, capture_output=True, text=True, timeout=120)


def cancelled_steps(events: list[Any]) -> dict[str, float]:
    return {e.step: e.at for e in events if e.type == "StepFailed" and e.data.get("cancelled")}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_runs_cancel_stops_every_running_step_and_starts_no_new_one(
    project: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    db = str(project / "s.db") if backend == "sqlite" else str(request.getfixturevalue("postgres_url"))
    proc = start_run(project, db)
    try:
        wait_for(project, proc, {"start a#1", "start b#1", "start c#1"})
        record, _ = stored(db)
        issued = time.monotonic()
        done = cli(project, "runs", "cancel", record.id, "--database-url", db)
        command_s = time.monotonic() - issued
        assert done.returncode == 0, done.stderr
        assert "cancellation requested" in done.stdout
        proc.wait(timeout=60)
        exit_s = time.monotonic() - issued
    finally:
        proc.kill()
        out, err = proc.communicate()
    assert proc.returncode == 1, err
    record, events = stored(db)
    assert record.status == "cancelled"
    assert record.cancelled_by is not None
    assert record.cancelled_by.startswith("legato runs cancel by ")
    assert record.cancel_requested_at is not None
    assert record.error is not None
    assert record.error.startswith(f"cancelled by {record.cancelled_by} at ")
    stopped = cancelled_steps(events)
    assert set(stopped) == {"a", "b", "c"}  # the sync step was abandoned and recorded too
    assert "start after#1" not in logged(project)
    assert not [e for e in events if e.type == "StepStarted" and e.step == "after"]
    assert "cancelled" in out
    latency = max(stopped.values()) - record.cancel_requested_at
    print(
        f"\n{backend}: cancel recorded -> last step stopped {latency * 1000:.0f} ms; "
        f"cancel command {command_s * 1000:.0f} ms; command start -> legato run exited {exit_s * 1000:.0f} ms"
    )


def test_ctrl_c_cancels_the_run_and_tells_how_to_resume_it(project: Path) -> None:
    db = str(project / "s.db")
    proc = start_run(project, db)
    try:
        wait_for(project, proc, {"start a#1", "start b#1", "start c#1"})
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)  # the blocking sync step does not hold the exit
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert proc.returncode == 130, err
    record, events = stored(db)
    assert record.status == "cancelled"
    assert f"legato runs resume {record.id} --force" in err
    assert record.cancelled_by is not None
    assert "Ctrl-C" in record.cancelled_by
    assert set(cancelled_steps(events)) == {"a", "b", "c"}  # the in-flight steps' events were stored
    assert events[-1].type == "RunFinished"

    # nothing orphaned: recovery leaves the run the user stopped alone
    recovered = cli(project, "runs", "recover", "--database-url", db)
    assert recovered.stdout.strip() == "no orphaned runs"
    # a cancelled run resumes only with --force
    refused = cli(project, "runs", "resume", record.id, "--database-url", db)
    assert refused.returncode == 1
    assert "is cancelled" in refused.stderr
    assert "--force" in refused.stderr
    assert stored(db)[0].status == "cancelled"

    (project / "go").touch()
    resumed = cli(project, "runs", "resume", record.id, "--force", "--json", "--database-url", db)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "succeeded"
    # the attempt numbers go on from the cancelled ones
    assert {"start a#1", "start b#1", "start c#1", "start after#1"} <= set(logged(project))

    async def attempts() -> list[tuple[str, int, str]]:
        async with RunStore(db) as store:
            return [(s.step, s.attempt, s.status) for s in await store.steps(record.id)]

    steps = anyio.run(attempts)
    for name in ("a", "b", "c"):
        assert [(n, a, s) for n, a, s in steps if n == name] == [(name, 1, "cancelled"), (name, 2, "succeeded")]


def test_a_second_ctrl_c_exits_at_once(project: Path) -> None:
    db = str(project / "s.db")
    proc = start_run(project, db, "stubborn.yaml")
    try:
        wait_for(project, proc, {"start s#1"})
        proc.send_signal(signal.SIGINT)
        wait_for(project, proc, {"start s#1", "cleanup s#1"})  # the step ignores the cancel for a minute
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert proc.returncode == 130
    assert "cancelling run" in err
    assert "exiting at once" in err
    record, _ = stored(db, "stubborn")
    assert record.status == "running"  # left for recovery, which the message names
    assert "legato runs recover" in err


def test_a_timed_out_sync_step_does_not_hold_the_command(project: Path) -> None:
    db = str(project / "s.db")
    proc = start_run(project, db, "timed.yaml")
    try:
        proc.wait(timeout=30)  # the step's thread sleeps for a minute; the command does not wait for it
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert proc.returncode == 1, err
    record, _ = stored(db, "timed")
    assert record.status == "failed"
    assert record.error is not None
    assert "DeadlineExceeded" in record.error


def test_ctrl_c_on_runs_resume_cancels_the_resumed_run(project: Path) -> None:
    db = str(project / "s.db")
    proc = start_run(project, db)
    wait_for(project, proc, {"start a#1", "start b#1", "start c#1"})
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    record, _ = stored(db)
    resumed = subprocess.Popen(
        [LEGATO, "runs", "resume", record.id, "--force", "--database-url", db],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(logged(project)) < 6:  # a, b and c started again
            assert resumed.poll() is None, resumed.communicate()
            assert time.monotonic() < deadline, logged(project)
            time.sleep(0.02)
        resumed.send_signal(signal.SIGINT)
        resumed.wait(timeout=60)
    finally:
        resumed.kill()
        _, err = resumed.communicate()
    assert resumed.returncode == 130, err
    assert f"legato runs resume {record.id} --force" in err
    record, _ = stored(db)
    assert record.status == "cancelled"
    assert record.cancelled_by is not None
    assert "Ctrl-C" in record.cancelled_by
