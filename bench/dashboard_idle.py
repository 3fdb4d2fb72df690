"""What an idle dashboard viewer costs the server.

Starts ``legato serve`` (SQLite, and PostgreSQL with ``--postgres``) over a store of
200 finished runs, then holds N live runs lists open (``/ui/live/runs``, the SSE
stream a runs page keeps) while nothing changes, and reads the server process's CPU
time (user + system, from ``/proc``) over a fixed window, with no viewer and with N.
The cost of one idle viewer is the difference divided by N and by the window, in
percent of one core. CPU time is what the server spent, so the figure holds on a
busy machine; the load average is printed next to it anyway.

    python bench/dashboard_idle.py [--viewers 10] [--window 20] [--postgres]

Prints a table and writes ``bench/results/dashboard-idle.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from legato.store import NewRun

sys.path.insert(0, str(Path(__file__).parent))

from _postgres import pg_database
from legato.store import RunStore

RESULTS = Path(__file__).parent / "results" / "dashboard-idle.json"
MASTER = "lg-bench-dashboard-master-key-0123"
RUNS = 200


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def seed(url: str) -> None:
    async with RunStore(url) as store:
        for i in range(RUNS):
            record, _ = await store.create_run(
                NewRun(pipeline="bench", version_hash="v", inputs={"i": i}, owner="seed")
            )
            await store.finish_run(record.id, "seed", status="succeeded", outputs={"i": i}, cost=i / 1000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(url: str, workdir: Path) -> Iterator[tuple[str, int]]:
    (workdir / "legato.yaml").write_text("server:\n  master_key: env:LEGATO_BENCH_MASTER\n")
    port = free_port()
    legato = Path(sys.executable).parent / "legato"
    cmd = [str(legato), "serve", "--config", str(workdir / "legato.yaml"), "--port", str(port), "--database-url", url]
    env = {**os.environ, "LEGATO_BENCH_MASTER": MASTER}
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError("legato serve did not start")
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def hold_viewers(base: str, count: int, stop: threading.Event, served: list[int]) -> list[threading.Thread]:
    """``count`` threads, each holding the live runs list open until ``stop``; each
    appends the number of rows of its first update to ``served``."""

    def view() -> None:
        headers = {"authorization": f"Bearer {MASTER}"}
        with (
            httpx.Client(base_url=base, headers=headers, timeout=None) as c,
            c.stream("GET", "/ui/live/runs", params={"limit": 50}) as response,
        ):
            for line in response.iter_lines():
                if line.startswith("data: ") and len(served) < count:
                    served.append(len(json.loads(line[6:])["rows"]["html"]))
                if stop.is_set():
                    return

    threads = [threading.Thread(target=view, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    return threads


def measure(url: str, viewers: int, window: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, server(url, Path(tmp)) as (base, pid):
        time.sleep(3)  # start-up work (migrations, recovery) settles
        before = cpu_seconds(pid)
        time.sleep(window)
        baseline = (cpu_seconds(pid) - before) / window
        stop, served = threading.Event(), []
        hold_viewers(base, viewers, stop, served)
        time.sleep(3)  # each viewer's first page of rows is sent
        if served != [50] * viewers:
            raise RuntimeError(f"the viewers were not served their rows: {served}")
        before = cpu_seconds(pid)
        time.sleep(window)
        loaded = (cpu_seconds(pid) - before) / window
        stop.set()
    per_viewer = max(0.0, loaded - baseline) / viewers
    return {"viewers": viewers, "window_s": window, "server_cpu_idle_pct": baseline * 100,
            "server_cpu_with_viewers_pct": loaded * 100, "per_viewer_pct_of_core": per_viewer * 100}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=10)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--postgres", action="store_true", help="also measure a PostgreSQL store (LISTEN/NOTIFY)")
    args = parser.parse_args()
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'legato.db'}"
        asyncio.run(seed(url))
        rows["sqlite"] = measure(url, args.viewers, args.window)
    if args.postgres:
        name = f"legato_bench_idle_{uuid.uuid4().hex[:8]}"
        asyncio.run(pg_database("create", name))
        try:
            url = f"postgresql://postgres@127.0.0.1:5432/{name}"
            asyncio.run(seed(url))
            rows["postgresql"] = measure(url, args.viewers, args.window)
        finally:
            asyncio.run(pg_database("drop", name))
    doc = {"runs": RUNS, "cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0], "results": rows}
    print(f"idle live runs list, {RUNS} runs, {args.viewers} viewers, {args.window:.0f} s windows "
          f"(load average {doc['load_average_1m']:.2f} on {doc['cpus']} cores)")  # fmt: skip
    print(f"{'store':<12}{'server idle':>14}{'with viewers':>14}{'per viewer':>14}")
    for label, row in rows.items():
        print(f"{label:<12}{row['server_cpu_idle_pct']:>13.2f}%{row['server_cpu_with_viewers_pct']:>13.2f}%"
              f"{row['per_viewer_pct_of_core']:>13.3f}%")  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
