"""A 20-step pipeline and a fork server for kill -9 trials (used by test_crash_resume).

``python crash_worker.py`` imports everything once, then reads one JSON trial per
line on stdin and forks a child that runs it (so a trial costs a fork, not an
interpreter start). It prints ``{"pid": N}`` for each child, the child prints
``{"ready": N}`` when its store is open and ``{"done": N}`` when the run finished,
and the server prints ``{"exited": N, "status": S}`` once it reaped the child.

Every step appends its name to the trial's counter file when it finishes, so the
test can count how many times each step really executed.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

import anyio

from legato.engine import Pipeline
from legato.store import DurableRunner, RunStore

N_STEPS = 20
STEP_S = 0.01


def deps_of(i: int) -> list[int]:
    """Two interleaved chains (evens and odds) that join at the last step."""
    if i == 0:
        return []
    if i == 1:
        return [0]
    if i == N_STEPS - 1:
        return [i - 2, i - 1]
    return [i - 2]


def build_pipeline(counter_file: str | None = None, step_s: float = STEP_S) -> Pipeline:
    p = Pipeline("crash20", inputs={"seed": int})

    async def work(name: str, i: int, seed: int, parents: list[int]) -> int:
        await anyio.sleep(step_s)
        value = (seed * 31 + i * 7 + sum(parents) * 13) % 1_000_003
        if counter_file is not None:
            fd = os.open(counter_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{name}\n".encode())
            finally:
                os.close(fd)
        return value

    for i in range(N_STEPS):
        params = ["seed", *(f"s{d}" for d in deps_of(i))]
        parents = "[" + ", ".join(f"s{d}" for d in deps_of(i)) + "]"
        source = f"async def s{i}({', '.join(params)}):\n    return await work('s{i}', {i}, seed, {parents})\n"
        namespace: dict[str, Any] = {"work": work}
        exec(source, namespace)
        p.add_step(namespace[f"s{i}"], name=f"s{i}")
    return p


async def run_trial(trial: dict[str, Any]) -> None:
    pipeline = build_pipeline(trial["counter"])
    async with RunStore(trial["db"]) as store:
        print(json.dumps({"ready": os.getpid()}), flush=True)
        result = await DurableRunner(store, reflect=None).run(
            pipeline, {"seed": trial["seed"]}, idempotency_key=trial["key"]
        )
    print(json.dumps({"done": os.getpid(), "status": str(result.status)}), flush=True)


def preload() -> None:
    """Import what opening a store imports lazily, so forked children start warm
    (plain imports: no thread may exist in the process that forks)."""
    import alembic.command
    import alembic.config
    import alembic.runtime.migration
    import alembic.script  # noqa: F401
    import sqlalchemy.dialects.sqlite.aiosqlite
    import sqlalchemy.dialects.sqlite.pysqlite  # noqa: F401


def serve() -> None:
    preload()
    for line in sys.stdin:
        trial = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                anyio.run(run_trial, trial)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"exited": pid, "status": status}), flush=True)


if __name__ == "__main__":
    serve()
