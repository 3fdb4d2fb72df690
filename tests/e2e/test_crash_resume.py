"""kill -9 at random points of a 20-step pipeline, then resume.

A fork server (crash_worker.py) runs each trial in a child process that the test
SIGKILLs at a random moment of its run. The test then retries the request with the
same idempotency key, as a client would, and checks: no step that was checkpointed
before the kill ran again (the steps count their own executions in a file), every
step ran, the outputs equal those of an uninterrupted run, and there is exactly
one run per key, all succeeded (no run lost).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from legato.store import DurableRunner, RunStore

WORKER = Path(__file__).with_name("crash_worker.py")
TRIALS = 50


def load_worker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("legato_crash_worker", WORKER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ForkServer:
    def __init__(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )

    async def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await anyio.to_thread.run_sync(self.proc.stdout.readline)
        if not line:
            raise AssertionError(f"the fork server exited (code {self.proc.poll()})")
        return dict(json.loads(line))

    async def read_until(self, key: str, pid: int) -> dict[str, Any]:
        while True:
            msg = await self.read()
            if msg.get(key) == pid:
                return msg

    def send(self, trial: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(trial) + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


@pytest.mark.slow
async def test_sigkill_at_random_points_then_resume(tmp_path: Path) -> None:
    worker = load_worker()
    db = str(tmp_path / "crash.db")
    rng = random.Random(20261124)
    server = ForkServer()
    kinds: Counter[str] = Counter()
    try:
        async with RunStore(db) as store:
            # One uninterrupted trial measures how long a run takes: the kill window.
            server.send({"db": db, "counter": str(tmp_path / "warm.txt"), "key": "warm", "seed": 0})
            pid = (await server.read())["pid"]
            await server.read_until("ready", pid)
            started = anyio.current_time()
            done = await server.read_until("done", pid)
            window = anyio.current_time() - started
            assert done["status"] == "succeeded"
            exited = await server.read_until("exited", pid)
            assert os.WIFEXITED(exited["status"])
            assert os.WEXITSTATUS(exited["status"]) == 0

            for t in range(TRIALS):
                seed = 1000 + t
                key = f"trial-{t}"
                counter = tmp_path / f"counter-{t}.txt"
                server.send({"db": db, "counter": str(counter), "key": key, "seed": seed})
                pid = (await server.read())["pid"]
                if rng.random() >= 0.1:  # 10% of kills land before the store is even open
                    await server.read_until("ready", pid)
                    await anyio.sleep(rng.uniform(0.0, window * 1.1))
                with contextlib.suppress(ProcessLookupError):  # the run may have finished already
                    os.kill(pid, signal.SIGKILL)
                exited = await server.read_until("exited", pid)
                status = exited["status"]
                assert os.WIFSIGNALED(status) or os.WEXITSTATUS(status) == 0, f"trial {t}: child failed ({status})"

                record = await store.find_by_idempotency_key(key)
                finished = set(await store.completed_steps(record.id)) if record is not None else set()
                kinds["before_run" if record is None else "mid_run" if record.status == "running" else "after_run"] += 1

                pipeline = worker.build_pipeline(str(counter))
                result = await DurableRunner(store, reflect=None).run(pipeline, {"seed": seed}, idempotency_key=key)
                assert result.ok, result.error

                counts = Counter(counter.read_text().split()) if counter.exists() else Counter()
                rerun = sorted(s for s in finished if counts[s] != 1)
                assert not rerun, f"trial {t}: checkpointed steps executed again: {rerun}"
                assert set(counts) == {f"s{i}" for i in range(worker.N_STEPS)}, f"trial {t}: steps never ran"
                assert all(n <= 2 for n in counts.values()), f"trial {t}: a step ran more than twice: {counts}"

                reference = await worker.build_pipeline(None, step_s=0).run({"seed": seed})
                assert result.outputs == reference.outputs, f"trial {t}: outputs differ from an uninterrupted run"

            runs = await store.list_runs(limit=TRIALS + 10)
            keys = Counter(r.idempotency_key for r in runs)
            assert len(runs) == TRIALS + 1
            assert all(n == 1 for n in keys.values())
            assert {r.status for r in runs} == {"succeeded"}
    finally:
        server.close()
    # The kills must really have landed inside runs, not only before or after them.
    assert kinds["mid_run"] >= TRIALS // 4, kinds


RUNBOOK_STEPS = """
import time
from pathlib import Path

HERE = Path(__file__).parent


def _log(name):
    with open(HERE / "calls.txt", "a") as f:
        f.write(name + "\\n")


async def prepare(text: str) -> str:
    _log("prepare")
    return text.strip()


def slow(prepare: str) -> str:
    _log("slow")
    while (HERE / "hold").exists():  # held open until the test has killed the process
        time.sleep(0.02)
    return prepare.upper()


async def finish(slow: str) -> str:
    _log("finish")
    return slow + "!"
"""

RUNBOOK_PIPELINE = """
name: runbook
inputs: {text: string}
steps:
  prepare: {uses: ./steps.py:prepare}
  slow: {uses: ./steps.py:slow}
  finish: {uses: ./steps.py:finish}
"""


@pytest.mark.slow
async def test_kill_9_then_legato_runs_resume_from_the_cli(tmp_path: Path) -> None:
    """The runbook of docs/durable-runs.md: `legato run`, kill -9, `legato runs resume RUN_ID`."""
    (tmp_path / "steps.py").write_text(RUNBOOK_STEPS)
    (tmp_path / "runbook.yaml").write_text(RUNBOOK_PIPELINE)
    (tmp_path / "hold").touch()
    db = str(tmp_path / "legato.db")
    cmd = [sys.executable, "-c", "from legato.cli import main; main()", "run", str(tmp_path / "runbook.yaml")]
    proc = subprocess.Popen([*cmd, "-i", "text= hello ", "--database-url", db], cwd=tmp_path)
    try:
        async with RunStore(db) as store:
            run_id = None
            with anyio.fail_after(60):
                while run_id is None:
                    await anyio.sleep(0.05)
                    runs = await store.list_runs() if (tmp_path / "legato.db").exists() else []
                    if runs and "prepare" in await store.completed_steps(runs[0].id):
                        run_id = runs[0].id
                while "slow" not in (tmp_path / "calls.txt").read_text():
                    await anyio.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert (await store.get_run(run_id)).status == "running"  # orphaned: its worker is gone
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (tmp_path / "hold").unlink()
    legato = [sys.executable, "-c", "from legato.cli import main; main()"]
    listed = await anyio.run_process([*legato, "runs", "list", "--database-url", db], cwd=tmp_path, check=False)
    assert "orphaned" in listed.stdout.decode()
    resume = [sys.executable, "-c", "from legato.cli import main; main()", "runs", "resume", run_id]
    result = await anyio.run_process([*resume, "--database-url", db, "--json"], cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["outputs"]["finish"] == "HELLO!"
    # prepare was checkpointed before the kill: not run again; slow was in flight: run again
    assert (tmp_path / "calls.txt").read_text().split() == ["prepare", "slow", "slow", "finish"]
