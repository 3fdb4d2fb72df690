"""The ray executor: unit behaviour, and a real two-node local Ray cluster.

The cluster tests start ``ray start --head`` and a second worker node on loopback,
run YAML pipelines through ``legato run`` (a separate driver process, as a user
would), kill the worker node mid-run, and check that the run completes with the
same outputs as the local executor.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from legato.errors import ConfigError, ExecutorError, WorkerLost

VENV_BIN = Path(sys.executable).parent
LEGATO = str(VENV_BIN / "legato")


# -- unit behaviour ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1024, 1024), ("2GiB", 2 * 1024**3), ("512MB", 512 * 1000**2), ("1.5Gi", int(1.5 * 1024**3)), ("100", 100)],
)
def test_parse_memory(value: int | str, expected: int) -> None:
    from legato.executors.ray import parse_memory

    assert parse_memory(value) == expected


@pytest.mark.parametrize("value", ["lots", "2 parsecs", -5, 0, ""])
def test_parse_memory_rejects_nonsense(value: int | str) -> None:
    from legato.executors.ray import parse_memory

    with pytest.raises(ConfigError, match="memory"):
        parse_memory(value)


def test_step_resources_become_ray_options() -> None:
    from legato.executors.ray import RayExecutor

    options = RayExecutor(max_retries=2)._options({"num_cpus": 2, "memory": "1GiB", "num_gpus": 0, "accelerator": 1})
    assert options == {
        "max_retries": 2,
        "retry_exceptions": False,
        "num_returns": 2,
        "num_cpus": 2.0,
        "num_gpus": 0.0,
        "memory": 1024**3,
        "resources": {"accelerator": 1.0},
    }


def test_ray_failures_become_legato_errors() -> None:
    import ray.exceptions as rex

    from legato.engine import StepCall
    from legato.executors.ray import _translate

    call = StepCall(fn=print, kwargs={}, step="ocr", run_id="r1", is_async=False)
    lost = _translate(rex.WorkerCrashedError(), call)
    assert isinstance(lost, WorkerLost)
    assert lost.retryable
    assert "ocr" in str(lost)
    cancelled = _translate(rex.TaskCancelledError(), call)
    assert isinstance(cancelled, ExecutorError)
    assert not cancelled.retryable
    original = ValueError("bad page")
    assert _translate(original, call) is original


def test_negative_retries_rejected() -> None:
    from legato.executors.ray import RayExecutor

    with pytest.raises(ConfigError, match="max_retries"):
        RayExecutor(max_retries=-1)


def test_import_legato_does_not_import_ray() -> None:
    code = "import legato, legato.engine, legato.executors, sys; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- a real local cluster ---------------------------------------------------------


@dataclass
class Cluster:
    address: str
    worker_raylet: int
    env: dict[str, str]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    env = dict(os.environ)
    env.update(
        RAY_AUTH_MODE="disabled",  # a loopback-only test cluster
        RAY_USAGE_STATS_ENABLED="0",
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # keep drivers on 127.0.0.1 too
        RAY_health_check_period_ms="500",
        RAY_health_check_timeout_ms="500",
        RAY_health_check_failure_threshold="4",
    )
    script = Path(__file__).with_name("ray_cluster.py")
    log_path = tmp_path_factory.mktemp("ray") / "cluster.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(script)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True
        )
    assert proc.stdout is not None
    assert proc.stdin is not None
    try:
        line = proc.stdout.readline()
        if not line:
            proc.wait(timeout=30)
            pytest.fail(f"the Ray test cluster did not start:\n{log_path.read_text()[-3000:]}")
        info = json.loads(line)
        yield Cluster(info["address"], int(info["worker_raylet"]), env)
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


STEPS = """
import os
import time
from pathlib import Path
from typing import Any


def items(n: int) -> list[int]:
    return list(range(n))


def work(items: int, marker_dir: str, delay: float) -> dict:
    node = "local"
    try:
        import ray

        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()
    except ImportError:
        pass
    Path(marker_dir, f"{items}-{node}-{os.getpid()}-{time.time_ns()}").touch()  # one per execution
    time.sleep(delay)
    return {"item": items, "square": items * items}


def total(work: list[dict]) -> dict:
    return {"count": len(work), "sum": sum(w["square"] for w in work)}
"""


def _pipeline(tmp: Path, executor: str, address: str | None) -> Path:
    (tmp / "steps.py").write_text(STEPS)
    spec = textwrap.dedent(
        f"""\
        name: squares
        executor: {executor}
        inputs:
          n: {{type: integer, default: 6}}
          marker_dir: {{type: string}}
          delay: {{type: number, default: 0.0}}
        steps:
          items:
            uses: ./steps.py:items
          work:
            uses: ./steps.py:work
            map: items
            max_concurrency: 8
            resources: {{num_cpus: 1}}
          total:
            uses: ./steps.py:total
        """
    )
    if address:
        spec += f"executor_options: {{address: '{address}', max_retries: 3}}\n"
    path = tmp / f"squares_{executor}.yaml"
    path.write_text(spec)
    return path


def _run(path: Path, cwd: Path, env: dict[str, str], **inputs: object) -> subprocess.Popen[str]:
    args = [LEGATO, "run", str(path), "--json"]
    for key, value in inputs.items():
        args += ["--input", f"{key}={value}"]
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str], timeout: float = 240) -> dict[str, object]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"legato run failed ({proc.returncode}):\n{err[-3000:]}"
    assert out.strip(), f"legato run printed no result:\n{err[-3000:]}"
    result = json.loads(out)
    assert isinstance(result, dict)
    return result


@pytest.mark.ray
@pytest.mark.slow
def test_same_yaml_same_outputs_local_and_ray(ray_cluster: Cluster, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    local = _finish(_run(_pipeline(tmp_path, "local", None), tmp_path, ray_cluster.env, marker_dir=markers))
    on_ray = _finish(
        _run(_pipeline(tmp_path, "ray", ray_cluster.address), tmp_path, ray_cluster.env, marker_dir=markers)
    )
    assert local["status"] == on_ray["status"] == "succeeded"
    assert on_ray["outputs"] == local["outputs"]
    # The ray run really ran its map items in Ray workers, not in the driver.
    nodes = {m.name.split("-")[1] for m in markers.iterdir()}
    assert "local" in nodes
    assert len(nodes - {"local"}) >= 1


@pytest.mark.ray
@pytest.mark.slow
def test_worker_node_killed_mid_run_steps_retried_elsewhere(ray_cluster: Cluster, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    expected = _finish(_run(_pipeline(tmp_path, "local", None), tmp_path, ray_cluster.env, marker_dir=markers))
    for m in markers.iterdir():
        m.unlink()
    worker_node = _worker_node_id(ray_cluster)

    proc = _run(_pipeline(tmp_path, "ray", ray_cluster.address), tmp_path, ray_cluster.env, marker_dir=markers, delay=3)
    deadline = time.monotonic() + 120
    on_worker: set[str] = set()
    while time.monotonic() < deadline and not on_worker:
        on_worker = {m.name for m in markers.iterdir() if m.name.split("-")[1] == worker_node}
        time.sleep(0.2)
    assert on_worker, "no map item was scheduled on the worker node"
    killed_items = {name.split("-")[0] for name in on_worker}
    # Kill the worker node: its raylet and every worker process it started.
    children = subprocess.run(["pgrep", "-P", str(ray_cluster.worker_raylet)], capture_output=True, text=True)
    for pid in [ray_cluster.worker_raylet, *map(int, children.stdout.split())]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    result = _finish(proc)
    assert result["status"] == "succeeded"
    assert result["outputs"] == expected["outputs"]
    # The items that were running on the dead node ran again, elsewhere.
    rerun = {m.name.split("-")[0] for m in markers.iterdir() if m.name.split("-")[1] != worker_node}
    assert killed_items <= rerun


def _worker_node_id(cluster: Cluster) -> str:
    code = textwrap.dedent(
        f"""\
        import ray
        ray.init(address="{cluster.address}", log_to_driver=False)
        print([n["NodeID"] for n in ray.nodes() if n["Alive"] and "worker_node" in n["Resources"]][0])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], env=cluster.env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.local_models
def test_document_pipeline_on_the_cluster_matches_local(ray_cluster: Cluster, tmp_path: Path) -> None:
    """The document example (OCR, NER, sentiment, zero-shot topic, embeddings and
    summaries, with models hosted in Ray actors) gives the same reports on Ray."""
    spec = EXAMPLES / "document_insights.yaml"
    local = _finish(_run(spec, tmp_path, ray_cluster.env), timeout=400)
    args = [
        LEGATO,
        "run",
        str(spec),
        "--json",
        "--executor",
        "ray",
        "--executor-option",
        f"address={ray_cluster.address}",
    ]
    proc = subprocess.Popen(
        args, cwd=tmp_path, env=ray_cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    on_ray = _finish(proc, timeout=400)
    assert local["status"] == on_ray["status"] == "succeeded"
    assert on_ray["outputs"] == local["outputs"]


@pytest.mark.ray
@pytest.mark.slow
async def test_driver_killed_mid_map_resume_runs_only_uncommitted_items(ray_cluster: Cluster, tmp_path: Path) -> None:
    """Per-item checkpoints on Ray: the driver (`legato run`) is SIGKILLed in the middle
    of a map whose items run as Ray tasks; `legato runs resume` runs only the items
    that were not committed (each item leaves one marker per execution)."""
    from legato.store import RunStore

    markers = tmp_path / "markers"
    markers.mkdir()
    db = tmp_path / "legato.db"
    spec = _pipeline(tmp_path, "ray", ray_cluster.address)
    inputs = {"n": 24, "marker_dir": markers, "delay": 0.3}
    args = [LEGATO, "run", str(spec), "--json", "--database-url", str(db)]
    for key, value in inputs.items():
        args += ["--input", f"{key}={value}"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=ray_cluster.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        async with RunStore(db) as store:
            committed: set[int] = set()
            deadline = time.monotonic() + 180
            while len(committed) < 8:
                assert proc.poll() is None, f"legato run exited early ({proc.returncode})"
                assert time.monotonic() < deadline, "no map items were committed in time"
                await anyio.sleep(0.1)
                runs = await store.list_runs() if db.exists() else []
                committed = set((await store.map_items(runs[0].id)).get("work", {})) if runs else set()
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            run_id = runs[0].id
            committed = set((await store.map_items(run_id)).get("work", {}))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    assert len(committed) < 24, "the run finished before the kill"

    resume = [LEGATO, "runs", "resume", run_id, "--database-url", str(db), "--json"]
    resumed = subprocess.run(resume, cwd=tmp_path, env=ray_cluster.env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout)["outputs"]["total"] == {"count": 24, "sum": sum(i * i for i in range(24))}
    runs_of: dict[int, int] = {}
    for m in markers.iterdir():
        item = int(m.name.split("-")[0])
        runs_of[item] = runs_of.get(item, 0) + 1
    assert set(runs_of) == set(range(24))
    assert all(runs_of[i] == 1 for i in committed), "a committed item ran again"
    assert sum(1 for n in runs_of.values() if n > 1) <= 8  # at most max_concurrency items were in flight


CYCLE_STEPS = """
import os


def draft(topic: str, previous: dict | None) -> dict:
    text = topic if previous is None else previous["draft"]["text"] + "+"
    return {"text": text, "pid": os.getpid()}


def critique(draft: dict) -> dict:
    return {"score": len(draft["text"]), "pid": os.getpid()}
"""

CYCLE_DRIVER = """
import asyncio
import json
import os
import sys

from legato.engine import Pipeline
from legato.executors.ray import RayExecutor

import steps

until_pids = []


def good(critique: dict) -> bool:
    until_pids.append(os.getpid())  # where `until` is evaluated: the cycle step's process
    return critique["score"] >= 5


body = Pipeline("refine")
body.add_step(steps.draft)
body.add_step(steps.critique)
p = Pipeline("essay")
p.cycle("refine", body, max_iterations=5, until=good)


async def main() -> None:
    executor = RayExecutor(address=sys.argv[1], max_retries=1)
    try:
        result = await p.run({"topic": "tea"}, executor=executor)
    finally:
        executor.shutdown()
    inner = result.outputs["refine"]
    print(json.dumps({
        "status": str(result.status),
        "text": inner["draft"]["text"],
        "driver": os.getpid(),
        "until": until_pids,
        "steps": [inner["draft"]["pid"], inner["critique"]["pid"]],
    }))


asyncio.run(main())
"""


@pytest.mark.ray
@pytest.mark.slow
def test_a_cycle_body_runs_its_steps_on_the_executor(ray_cluster: Cluster, tmp_path: Path) -> None:
    """The cycle step stays in the driver (``until`` is evaluated there) while each
    step of its body is a Ray task, as the steps outside the cycle are."""
    (tmp_path / "steps.py").write_text(CYCLE_STEPS)
    (tmp_path / "driver.py").write_text(CYCLE_DRIVER)
    done = subprocess.run(
        [sys.executable, "driver.py", ray_cluster.address],
        cwd=tmp_path,
        env=ray_cluster.env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert (out["status"], out["text"]) == ("succeeded", "tea++")
    assert out["until"] == [out["driver"]] * 3  # three iterations, each judged in the driver
    assert out["driver"] not in out["steps"]  # the body's steps ran in Ray workers


@pytest.mark.ray
@pytest.mark.slow
def test_model_calls_made_in_workers_are_recorded_with_the_run(ray_cluster: Cluster, tmp_path: Path) -> None:
    """An ``llm:`` map runs its calls in Ray workers; each call reaches the run store's
    model-call view (model, tokens, prompt, answer) under its step and item, as it does
    on the local executor."""
    from legato.store import RunStore, run_calls
    from legato.testing import FakeProvider

    with FakeProvider(seed=0).in_thread() as fake:  # answers each prompt with its own words
        (tmp_path / "legato.yaml").write_text(
            f"models:\n  labeler:\n    provider: openai\n    model: gpt-4o-mini\n"
            f"    base_url: {fake.openai_base_url}\n    api_key: env:RAY_TEST_FAKE_KEY\n"
        )
        (tmp_path / "labels.yaml").write_text(
            textwrap.dedent(
                f"""\
                name: labels
                executor: ray
                executor_options:
                  address: '{ray_cluster.address}'
                  runtime_env: {{env_vars: {{RAY_TEST_FAKE_KEY: sk-fake}}}}  # the workers' copy of the secret
                inputs:
                  texts: {{type: array}}
                steps:
                  label:
                    llm: labeler
                    prompt: ${{inputs.texts}}
                    map: prompt
                """
            )
        )
        db = f"sqlite:///{tmp_path / 'runs.db'}"
        done = subprocess.run(
            [LEGATO, "run", "labels.yaml", "--json", "--database-url", db, "--input", 'texts=["a", "b", "c"]'],
            cwd=tmp_path, env={**ray_cluster.env, "RAY_TEST_FAKE_KEY": "sk-fake"}, capture_output=True, text=True,
            timeout=240,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        run_id = json.loads(done.stdout)["run_id"]

    async def calls() -> list[Any]:
        async with RunStore(db) as store:
            return await run_calls(store, run_id)

    rows = anyio.run(calls)
    assert sorted(r.item for r in rows) == [0, 1, 2]
    assert {(r.step, r.model, r.ok) for r in rows} == {("label", "labeler", True)}
    assert all(r.input_tokens and r.output_tokens for r in rows)
    assert sorted(r.detail["answer"] for r in rows) == ["a", "b", "c"]
