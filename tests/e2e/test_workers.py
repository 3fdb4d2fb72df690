"""Real ``legato worker`` processes on PostgreSQL: every queued run completes exactly
once, a worker killed with SIGKILL mid-run has its run taken over and finished by
another, and a queue's global concurrency holds across the fleet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from legato.config import LegatoConfig
from legato.spec import load_pipeline
from legato.store import RunStore, StoredStatus, pipeline_version

pytestmark = pytest.mark.postgres

LEGATO = [sys.executable, "-c", "from legato.cli import main; main()"]

STEPS = """
import json
import os
import time
from pathlib import Path

HERE = Path(__file__).parent


def note(name: str, n: int) -> None:
    with open(HERE / "calls.txt", "a") as f:  # one short O_APPEND write per call
        f.write(f"{name} {n} {os.getpid()}\\n")


def work(n: int, pause: float) -> int:
    note("work", n)
    time.sleep(pause)
    return n * 2


def first(n: int) -> int:
    note("first", n)
    return n + 1


def blocking(x: int) -> int:
    note("blocking", x)
    (HERE / f"started-{os.getpid()}").touch()
    while not (HERE / "release").exists():
        time.sleep(0.02)
    return x * 10
"""

JOB = """
name: job
inputs: {n: integer, pause: number}
steps:
  work: {uses: ./steps.py:work, with: {n: "${inputs.n}", pause: "${inputs.pause}"}}
"""

TWO = """
name: two
inputs: {n: integer}
steps:
  first: {uses: ./steps.py:first, with: {n: "${inputs.n}"}}
  blocking: {uses: ./steps.py:blocking, depends_on: [first], with: {x: "${steps.first}"}}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    suffix = uuid.uuid4().hex[:8]  # the session's PostgreSQL database is shared: queues of this test only
    (tmp_path / "steps.py").write_text(STEPS)
    (tmp_path / "job.yaml").write_text(textwrap.dedent(JOB).lstrip())
    (tmp_path / "two.yaml").write_text(textwrap.dedent(TWO).lstrip())
    (tmp_path / "legato.yaml").write_text(
        f"queues:\n  fast-{suffix}: {{}}\n  limited-{suffix}: {{concurrency: 2}}\n"
        "pipelines:\n  job: job.yaml\n  two: two.yaml\n"
    )
    (tmp_path / "suffix").write_text(suffix)
    return tmp_path


def queue(project: Path, kind: str) -> str:
    return f"{kind}-{(project / 'suffix').read_text()}"


async def enqueue(url: str, project: Path, file: str, queue: str, inputs: list[dict[str, object]]) -> list[str]:
    pipeline = load_pipeline(project / file, config=LegatoConfig.load(project / "legato.yaml"))
    async with RunStore(url) as store:
        ids = []
        for values in inputs:
            record, _ = await store.create_run(
                pipeline=pipeline.name,
                version_hash=pipeline_version(pipeline),
                inputs=values,
                queue=queue,
                source=str(project / file),
            )
            ids.append(record.id)
        return ids


class Fleet:
    def __init__(self, project: Path, url: str) -> None:
        self.project, self.url = project, url
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Any] = []

    def start(self, queue: str, n: int, *extra: str) -> None:
        for i in range(len(self.procs), len(self.procs) + n):
            log = (self.project / f"worker-{i}.log").open("wb")
            self.logs.append(log)
            cmd = [*LEGATO, "worker", "--queue", queue, "--database-url", self.url, *extra]
            self.procs.append(subprocess.Popen(cmd, cwd=self.project, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 60
        for i in range(len(self.procs)):
            while b"serving" not in (self.project / f"worker-{i}.log").read_bytes():
                assert self.procs[i].poll() is None, self.log(i)
                assert time.monotonic() < deadline, self.log(i)
                time.sleep(0.05)

    def log(self, i: int) -> str:
        return (self.project / f"worker-{i}.log").read_text(errors="replace")

    def stop(self) -> list[int | None]:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = []
        for p in self.procs:
            try:
                codes.append(p.wait(timeout=60))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(None)
        for log in self.logs:
            log.close()
        return codes


@pytest.fixture
def fleet(project: Path, postgres_url: str) -> Iterator[Fleet]:
    f = Fleet(project, postgres_url)
    yield f
    f.stop()


async def statuses(url: str, ids: list[str]) -> dict[str, StoredStatus]:
    async with RunStore(url) as store:
        return {i: (await store.get_run(i)).status for i in ids}


async def wait_finished(url: str, ids: list[str], fleet: Fleet, sample: str | None = None) -> int:
    """Poll until every run is finished; returns the most runs of queue ``sample`` seen in flight."""
    most = 0
    async with RunStore(url) as store:
        with anyio.fail_after(90):
            while True:
                if sample is not None:
                    flying = await store.list_runs(status="running", limit=500)
                    most = max(most, sum(1 for r in flying if r.queue == sample))
                done = [(await store.get_run(i)).terminal for i in ids]
                if all(done):
                    return most
                alive = [p.poll() is None or p.returncode == -signal.SIGKILL for p in fleet.procs]
                assert all(alive), [fleet.log(i) for i in range(len(fleet.procs))]
                await anyio.sleep(0.05)


def calls(project: Path) -> list[tuple[str, int, int]]:
    path = project / "calls.txt"
    lines = path.read_text().split("\n") if path.exists() else []
    return [(a, int(b), int(c)) for a, b, c in (line.split() for line in lines if line)]


async def test_every_queued_run_completes_exactly_once(project: Path, fleet: Fleet, postgres_url: str) -> None:
    name = queue(project, "fast")
    fleet.start(name, 3, "--concurrency", "4")
    ids = await enqueue(postgres_url, project, "job.yaml", name, [{"n": i, "pause": 0.05} for i in range(30)])
    await wait_finished(postgres_url, ids, fleet)
    assert set((await statuses(postgres_url, ids)).values()) == {StoredStatus.SUCCEEDED}
    done = calls(project)
    assert sorted(n for _, n, _ in done) == list(range(30))  # each run's side effect exactly once
    assert len({pid for _, _, pid in done}) >= 2  # the work was shared by the fleet
    assert fleet.stop() == [0, 0, 0]


async def test_a_queue_limit_holds_across_workers(project: Path, fleet: Fleet, postgres_url: str) -> None:
    name = queue(project, "limited")
    fleet.start(name, 3, "--concurrency", "4")
    ids = await enqueue(postgres_url, project, "job.yaml", name, [{"n": i, "pause": 0.2} for i in range(12)])
    most = await wait_finished(postgres_url, ids, fleet, sample=name)
    assert 1 <= most <= 2
    assert sorted(n for _, n, _ in calls(project)) == list(range(12))


async def test_a_killed_worker_s_run_is_taken_over(project: Path, fleet: Fleet, postgres_url: str) -> None:
    name = queue(project, "fast")
    fleet.start(name, 2, "--lease-ttl", "2")
    [run_id] = await enqueue(postgres_url, project, "two.yaml", name, [{"n": 4}])
    with anyio.fail_after(60):
        while not list(project.glob("started-*")):
            await anyio.sleep(0.05)
    [started] = list(project.glob("started-*"))
    [victim] = [p for p in fleet.procs if started.name == f"started-{p.pid}"]  # steps run in the worker process
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    (project / "release").touch()
    await wait_finished(postgres_url, [run_id], fleet)
    async with RunStore(postgres_url) as store:
        record = await store.get_run(run_id)
    assert record.status is StoredStatus.SUCCEEDED
    assert record.outputs == {"first": 5, "blocking": 50}
    steps = [step for step, _, _ in calls(project)]
    assert steps.count("first") == 1  # checkpointed before the kill: not repeated
    assert steps.count("blocking") == 2  # in flight when the worker died: run again by the other


def test_a_drained_worker_puts_its_run_back_and_the_submitter_gets_the_result(
    project: Path, fleet: Fleet, postgres_url: str
) -> None:
    name = queue(project, "fast")
    fleet.start(name, 1, "--grace", "0.2")
    cmd = [*LEGATO, "run", str(project / "two.yaml"), "-i", "n=1", "--queue", name, "--json"]
    submitter = subprocess.Popen(
        [*cmd, "--database-url", postgres_url], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not list(project.glob("started-*")):
        assert time.monotonic() < deadline, fleet.log(0)
        time.sleep(0.05)
    first = fleet.procs[0]
    first.send_signal(signal.SIGTERM)  # drains: the blocked run outlives the grace and goes back on the queue
    assert first.wait(timeout=60) == 0, fleet.log(0)
    assert "put back on its queue" in fleet.log(0)
    (project / "release").touch()
    fleet.start(name, 1)
    out, err = submitter.communicate(timeout=90)
    assert submitter.returncode == 0, err
    assert "queued on" in err
    doc = json.loads(out)
    assert (doc["status"], doc["outputs"]) == ("succeeded", {"first": 2, "blocking": 20})
    steps = [step for step, _, _ in calls(project)]
    assert steps.count("first") == 1  # checkpointed before the drain: the next worker resumed after it
