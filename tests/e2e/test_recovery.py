"""Recovery without collateral damage, and lease owners across PID namespaces, with
real ``legato`` processes.

* One run whose step kills its own worker (SIGKILL) and three ordinary orphans
  (``legato run`` killed with SIGKILL mid-step); ``legato runs recover`` is then
  run again and again, as cron would. The healthy runs finish, charged only with
  the death that orphaned them; the poisonous one is dead-lettered, alone, with
  a reason that is true.
* A ``legato runs resume`` started in another PID namespace (``unshare --pid
  --fork``, as a sidecar or cron container on the same host would be) cannot
  tell whether the run's worker is alive, so it does not take the live run over.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from legato.store import RunRecord, RunStore

pytestmark = pytest.mark.slow

LEGATO = str(Path(sys.executable).parent / "legato")

STEPS = """
import os
import signal
from pathlib import Path

import anyio

from legato.engine import current_step

HERE = Path(__file__).parent


def _log(what: str) -> None:
    ctx = current_step()
    with open(HERE / "calls.txt", "a") as f:
        f.write(f"{what} {ctx.run_id if ctx else '?'}\\n")


async def wait_for_go(n: int) -> int:
    _log("start")
    while not (HERE / "go").exists():
        await anyio.sleep(0.05)
    _log("done")
    return n * 2


async def kill_my_worker(n: int) -> int:
    _log("poison")
    os.kill(os.getpid(), signal.SIGKILL)
    return n
"""

STEADY = """
name: steady
inputs: {n: integer}
steps:
  work: {uses: ./steps.py:wait_for_go, with: {n: "${inputs.n}"}}
"""

POISON = """
name: poison
inputs: {n: integer}
steps:
  boom: {uses: ./steps.py:kill_my_worker, with: {n: "${inputs.n}"}}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "steps.py").write_text(STEPS)
    (tmp_path / "steady.yaml").write_text(STEADY.lstrip())
    (tmp_path / "poison.yaml").write_text(POISON.lstrip())
    return tmp_path


def logged(project: Path) -> list[str]:
    path = project / "calls.txt"
    return path.read_text().splitlines() if path.exists() else []


def legato(project: Path, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, LEGATO, *args], cwd=project, capture_output=True, text=True, timeout=120)


def start(project: Path, db: str, pipeline: str, n: int) -> subprocess.Popen[str]:
    cmd = [LEGATO, "run", pipeline, "-i", f"n={n}", "--database-url", db]
    return subprocess.Popen(cmd, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_logged(project: Path, count: int, what: str) -> None:
    deadline = time.monotonic() + 60
    while sum(1 for line in logged(project) if line.startswith(what)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {count} x {what!r}: {logged(project)}")
        time.sleep(0.02)


def runs(db: str) -> dict[str, RunRecord]:
    async def read() -> dict[str, RunRecord]:
        async with RunStore(db) as store:
            return {r.id: r for r in await store.list_runs(limit=100)}

    return anyio.run(read)


def test_a_run_that_kills_its_worker_is_dead_lettered_alone(project: Path) -> None:
    db = str(project / "s.db")
    # the poisonous run first: the oldest orphan, so the first recovery meets it first
    poison = start(project, db, "poison.yaml", 0)
    poison.communicate(timeout=60)
    assert poison.returncode == -signal.SIGKILL
    healthy = [start(project, db, "steady.yaml", n) for n in (1, 2, 3)]
    wait_logged(project, 3, "start")
    for proc in healthy:  # three ordinary orphans: their workers were killed mid-step
        proc.kill()
        proc.communicate(timeout=60)
    (project / "go").touch()
    assert {r.status for r in runs(db).values()} == {"running"}

    exits: list[int] = []
    for _ in range(8):  # cron: `legato runs recover` every few minutes
        done = legato(project, "runs", "recover", "--database-url", db)
        exits.append(done.returncode)
        if done.stdout.strip() == "no orphaned runs":
            break
    else:
        raise AssertionError(f"recovery did not settle: exits {exits}, runs {runs(db)}")

    final = runs(db)
    (dead,) = [r for r in final.values() if r.pipeline == "poison"]
    steady = [r for r in final.values() if r.pipeline == "steady"]
    assert [r.status for r in steady] == ["succeeded"] * 3
    assert sorted(r.outputs["work"] if r.outputs else None for r in steady) == [2, 4, 6]
    assert [r.recoveries for r in steady] == [1, 1, 1]  # only the kill that orphaned each
    assert dead.status == "dead"
    assert dead.dead_reason is not None
    assert dead.dead_reason.startswith("its worker died 4 times while executing it with no other run in flight")
    # every death of a recovery worker happened with the poisonous run alone in flight
    assert exits.count(-signal.SIGKILL) == 3
    assert sum(1 for line in logged(project) if line.startswith("poison")) == 4


def _unshare_works() -> str | None:
    if shutil.which("unshare") is None:
        return "the unshare command is not installed"
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare --pid --fork is not permitted here: {probe.stderr.strip()}"
    return None


@pytest.mark.skipif(sys.platform != "linux", reason="PID namespaces are a Linux feature")
def test_a_resume_from_another_pid_namespace_does_not_take_a_live_run(project: Path) -> None:
    reason = _unshare_works()
    if reason is not None:
        pytest.skip(reason)
    db = str(project / "s.db")
    worker = start(project, db, "steady.yaml", 5)
    try:
        wait_logged(project, 1, "start")
        (record,) = runs(db).values()
        other_namespace = ("unshare", "--pid", "--fork")
        refused = legato(project, "runs", "resume", record.id, "--database-url", db, prefix=other_namespace)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "cannot be checked from here" in refused.stderr
        assert "--force" in refused.stderr
        recovered = legato(project, "runs", "recover", "--database-url", db, prefix=other_namespace)
        assert recovered.stdout.strip() == "no orphaned runs"
        assert runs(db)[record.id].lease_owner == record.lease_owner  # still the original worker's
        (project / "go").touch()
        worker.communicate(timeout=60)
    finally:
        worker.kill()
        worker.communicate()
    assert worker.returncode == 0
    final = runs(db)[record.id]
    assert final.status == "succeeded"
    assert final.recoveries == 0
    assert [line.split()[0] for line in logged(project)] == ["start", "done"]  # the step ran once
