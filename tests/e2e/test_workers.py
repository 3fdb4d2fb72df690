"""Real ``legato worker`` processes on PostgreSQL: every queued run completes exactly
once, a worker killed with SIGKILL mid-run has its run taken over and finished by
another, and a queue's global concurrency holds across the fleet. The fleet test puts
two ``legato serve --no-execute`` replicas in front of three workers: 1,000 runs
submitted over HTTP, a tenant's 10 runs served beside another's 990, a concurrency of
5 never exceeded, and a schedule ticking every second that fires once per tick."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa

from _serve import stop_served
from legato.config import LegatoConfig
from legato.spec import load_pipeline
from legato.store import NewRun, RunStore, StoredStatus, pipeline_version, queue_stats
from legato.store._schema import runs, schedule_ticks

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
                NewRun(
                    pipeline=pipeline.name,
                    version_hash=pipeline_version(pipeline),
                    inputs=values,
                    queue=queue,
                    source=str(project / file),
                )
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


FLEET = """\
queues:
  fleet-{suffix}: {{concurrency: 5, pipelines: [job]}}
  ticks-{suffix}: {{}}
pipelines:
  job: job.yaml
schedules:
  tick-{suffix}: {{pipeline: job, inputs: {{n: 7777, pause: 0}}, every: 1s, queue: ticks-{suffix}}}
server:
  master_key: env:FLEET_MASTER_KEY
"""
MASTER = "mk-fleet-0123456789"


class Gateway:
    """A ``legato serve --no-execute`` replica: accepts and enqueues runs, executes none."""

    def __init__(self, project: Path, url: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (project / f"gateway-{self.port}.log").open("wb")
        cmd = [*LEGATO, "serve", "--config", "fleet.yaml", "--port", str(self.port), "--database-url", url]
        env = {**os.environ, "FLEET_MASTER_KEY": MASTER}
        self.proc = subprocess.Popen([*cmd, "--no-execute"], cwd=project, env=env, stdout=self.log, stderr=self.log)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, Path(self.log.name).read_text(errors="replace")
            assert time.monotonic() < deadline, Path(self.log.name).read_text(errors="replace")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)

    def key(self) -> tuple[str, str]:
        """A new runs key: (its id, the tenant of its runs; its secret)."""
        body = {"name": "fleet", "scopes": ["runs:read", "runs:write"]}
        r = httpx.post(self.url + "/v1/admin/keys", json=body, headers={"Authorization": f"Bearer {MASTER}"})
        assert r.status_code == 201, r.text
        return str(r.json()["id"]), str(r.json()["key"])

    def stop(self) -> None:
        stop_served(self.proc)
        self.log.close()


@pytest.fixture
def gateways(project: Path, postgres_url: str) -> Iterator[list[Gateway]]:
    suffix = (project / "suffix").read_text()
    (project / "fleet.yaml").write_text(FLEET.format(suffix=suffix))
    first = Gateway(project, postgres_url)
    started = [first]
    try:
        first.wait_ready()  # the first one migrates the shared database
        started.append(Gateway(project, postgres_url))
        started[1].wait_ready()
        yield started
    finally:
        for g in started:
            g.stop()


async def submit(jobs: list[tuple[Gateway, str, int]]) -> list[str]:
    """POST one run per (replica, key secret, n), 16 at a time; returns the run ids in order."""
    ids: list[str] = [""] * len(jobs)
    limit = anyio.Semaphore(16)
    async with httpx.AsyncClient(timeout=60) as client:

        async def post(i: int, gateway: Gateway, secret: str, n: int) -> None:
            async with limit:
                r = await client.post(
                    f"{gateway.url}/v1/pipelines/job/runs",
                    json={"inputs": {"n": n, "pause": 0}},
                    headers={"Authorization": f"Bearer {secret}"},
                )
            assert r.status_code == 202, r.text
            assert r.json()["status"] == "queued"
            ids[i] = str(r.json()["id"])

        async with anyio.create_task_group() as tg:
            for i, (gateway, secret, n) in enumerate(jobs):
                tg.start_soon(post, i, gateway, secret, n)
    return ids


async def rows(url: str, where: Any, *columns: Any) -> list[Any]:
    async with RunStore(url) as store:
        return await store.run_sync(lambda conn: list(conn.execute(sa.select(*columns).where(where))), readonly=True)


async def drain_queue(url: str, queue: str, fleet: Fleet, *, ticks: str, at_least: int) -> int:
    """Wait until ``queue`` is empty and schedule ``ticks`` fired ``at_least`` ticks;
    returns the most runs of ``queue`` seen in flight (sampled from the store)."""
    most = 0
    async with RunStore(url) as store:
        with anyio.fail_after(480):  # about 75 s on a quiet machine; the bound is for a loaded one
            while True:
                [stats] = [s for s in await queue_stats(store) if s.queue == queue] or [None]
                most = max(most, stats.running if stats else 0)
                [(fired,)] = await rows(url, schedule_ticks.c.schedule == ticks, sa.func.count())
                if stats is None and fired >= at_least:
                    return most
                assert all(p.poll() is None for p in fleet.procs), [fleet.log(i) for i in range(len(fleet.procs))]
                await anyio.sleep(0.05)


def worker_metrics(gateway: Gateway, fleet: Fleet) -> str:
    """``/metrics`` of a replica once it reports the slots of every worker of ``fleet``."""
    deadline = time.monotonic() + 30
    while True:
        text = httpx.get(gateway.url + "/metrics").text
        if all(re.search(rf'legato_worker_slots{{worker="[^"]*:{p.pid}:[^"]*"}} 4\.0', text) for p in fleet.procs):
            return text
        assert time.monotonic() < deadline, text
        time.sleep(0.1)


@pytest.mark.timeout(600)
async def test_a_fleet_behind_two_no_execute_replicas(
    project: Path, fleet: Fleet, gateways: list[Gateway], postgres_url: str
) -> None:
    suffix = (project / "suffix").read_text()
    name, ticks, schedule = f"fleet-{suffix}", f"ticks-{suffix}", f"tick-{suffix}"
    (busy, busy_secret), (quiet, quiet_secret) = gateways[0].key(), gateways[1].key()
    # 990 runs of one tenant through both replicas, then 10 of another: all wait in the store
    busy_ids = await submit([(gateways[i % 2], busy_secret, i) for i in range(990)])
    quiet_ids = await submit([(gateways[i % 2], quiet_secret, 1000 + i) for i in range(10)])
    fleet.start(name, 3, "--queue", ticks, "--config", "fleet.yaml", "--concurrency", "4")
    assert "legato_worker_utilisation{" in worker_metrics(gateways[1], fleet)  # each worker's slots, busy or not
    most = await drain_queue(postgres_url, name, fleet, ticks=schedule, at_least=31)

    done = await rows(postgres_url, runs.c.queue == name, runs.c.id, runs.c.tenant, runs.c.status, runs.c.started_at)
    assert sorted(r.id for r in done) == sorted(busy_ids + quiet_ids)
    assert {r.status for r in done} == {"succeeded"}
    assert {r.tenant for r in done if r.id in quiet_ids} == {quiet}
    executed = [n for step, n, _ in calls(project) if step == "work" and n != 7777]
    assert sorted(executed) == [*range(990), *range(1000, 1010)]  # each run's side effect exactly once
    assert len({pid for _, _, pid in calls(project)}) >= 2  # the work was shared by the fleet
    assert 1 <= most <= 5  # the queue's global concurrency, sampled from the store

    # fairness: the quiet tenant's 10 runs, enqueued after the busy tenant's 990, are
    # served beside them (about half the slots each), not after them
    last_quiet = max(r.started_at for r in done if r.tenant == quiet)
    assert sum(1 for r in done if r.tenant == busy and r.started_at < last_quiet) <= 30

    # the schedule: exactly one run for each second of a 30 s window, whichever worker fired it
    fired = await rows(
        postgres_url, schedule_ticks.c.schedule == schedule, schedule_ticks.c.tick, schedule_ticks.c.run_id
    )
    first = min(f.tick for f in fired)
    window = sorted(f.tick for f in fired if f.tick < first + 30)
    assert window == list(range(first, first + 30))
    tick_runs = await rows(postgres_url, runs.c.queue == ticks, runs.c.id)
    assert sorted(r.id for r in tick_runs) == sorted(f.run_id for f in fired)  # no run without its tick
    logged = sum(fleet.log(i).count(f"schedule {schedule} fired") for i in range(3))
    assert logged == len(fired)
    assert fleet.stop() == [0, 0, 0]
