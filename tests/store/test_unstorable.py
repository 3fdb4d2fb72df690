"""Step outputs the store cannot hold by reference, or at all.

A class defined in a pipeline's own ``./steps.py`` is not importable by name in
another process, so its instances are stored by value (cloudpickle): the run
succeeds, ``legato runs show`` in a fresh process reads the output, and a resume in
a fresh process hands it to the next step. A value nothing can serialise (a lock)
fails the step that returned it, naming the step, the type and the fix; the run
records that step as failed instead of failing in the store with ``failed_step`` null.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from legato.engine import Pipeline
from legato.errors import OutputNotStorable
from legato.store import DurableRunner, RunStore

STEPS = """
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent


@dataclass
class Point:
    x: int
    y: int

    def norm1(self) -> int:
        return abs(self.x) + abs(self.y)


async def make(x: int) -> Point:
    return Point(x, -2 * x)


async def use(make: Point) -> int:
    if (HERE / "fail-once").exists():
        (HERE / "fail-once").unlink()
        raise RuntimeError("the first attempt of use fails")
    return make.norm1()
"""

PIPELINE = """
name: points
inputs: {x: integer}
steps:
  make: {uses: ./steps.py:make, with: {x: "${inputs.x}"}}
  use: {uses: ./steps.py:use}
outputs:
  norm: ${steps.use}
"""

LEGATO = [sys.executable, "-c", "from legato.cli import main; main()"]


def legato(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LEGATO, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "steps.py").write_text(STEPS)
    (tmp_path / "points.yaml").write_text(PIPELINE)
    return tmp_path


def test_instance_of_a_spec_local_class_is_stored_and_read_back_in_another_process(project: Path) -> None:
    db = str(project / "legato.db")
    ran = legato("run", "points.yaml", "-i", "x=3", "--database-url", db, "--json", cwd=project)
    assert ran.returncode == 0, ran.stderr
    doc = json.loads(ran.stdout)
    assert doc["status"] == "succeeded"
    assert doc.get("failed_step") is None
    assert doc["outputs"]["norm"] == 9
    shown = legato("runs", "show", doc["run_id"], "--database-url", db, "--json", cwd=project)
    assert shown.returncode == 0, shown.stderr
    assert "Point(x=3, y=-6)" in shown.stdout


def test_a_resume_in_another_process_gets_the_stored_instance(project: Path) -> None:
    db = str(project / "legato.db")
    (project / "fail-once").touch()
    ran = legato("run", "points.yaml", "-i", "x=4", "--database-url", db, "--json", cwd=project)
    doc = json.loads(ran.stdout)
    assert doc["status"] == "failed"
    assert doc["failed_step"] == "use"
    resumed = legato("runs", "resume", doc["run_id"], "--database-url", db, "--json", cwd=project)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["outputs"]["norm"] == 12


def lock_pipeline() -> Pipeline:
    p = Pipeline("locks")

    @p.step
    async def make() -> threading.Lock:
        return threading.Lock()

    @p.step
    async def after(make: threading.Lock) -> str:
        return "never"

    @p.step(map="items", max_concurrency=1)
    async def per_item(items: list[int]) -> object:
        return threading.Lock() if items == 3 else items

    @p.step
    async def items() -> list[int]:
        return list(range(6))

    return p


async def test_a_value_nothing_can_store_fails_that_step(store: RunStore) -> None:
    p = lock_pipeline()
    p.failure_policy = "continue"
    result = await DurableRunner(store, reflect=None).run(p)
    assert result.status == "failed"
    assert result.failed_step in {"make", "per_item"}
    assert result.timings["make"].status == "failed"
    assert result.timings["after"].status == "skipped"
    assert result.timings["per_item"].status == "failed"
    assert result.timings["items"].status == "succeeded"
    record = await store.get_run(result.run_id)
    assert record.status == "failed"
    assert record.failed_step == result.failed_step
    rows = {s.step: s for s in await store.steps(result.run_id)}
    assert rows["make"].error_type == "OutputNotStorable"
    assert "step 'make' returned a _thread.lock that cannot be stored" in (rows["make"].error or "")
    assert "inside the step that uses them" in (rows["make"].error or "")
    assert rows["per_item"].error_type == "OutputNotStorable"
    assert "item 3 of map step 'per_item' returned a _thread.lock" in (rows["per_item"].error or "")
    assert rows["after"].status == "skipped"
    # the items before the bad one were checkpointed: a resume would not redo them
    assert sorted((await store.map_items(result.run_id))["per_item"]) == [0, 1, 2]


async def test_the_step_error_carries_the_typed_cause(sqlite_store: RunStore) -> None:
    p = lock_pipeline()
    result = await DurableRunner(sqlite_store, reflect=None).run(p)
    assert result.status == "failed"
    assert result.failed_step in {"make", "per_item"}
    cause = result.exception.__cause__ if result.exception is not None else None
    assert isinstance(cause, OutputNotStorable)
    assert cause.step == result.failed_step
    assert cause.type_name == "_thread.lock"
