"""``legato bench``: an open-loop load test in-process and through a real ``legato serve``.

The pipeline is the one of the simulator's tests (Python steps that sleep for draws
from known distributions, one failing 15% of the time), so runs take tens of
milliseconds and the error rate is known."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from _serve import MASTER, ServeProcess, free_port
from legato.cli import app

HERE = Path(__file__).parent


def _pipeline(tmp: Path) -> Path:
    shutil.copy(HERE / "steps.py", tmp / "steps.py")
    shutil.copy(HERE / "spec.yaml", tmp / "spec.yaml")
    (tmp / "inputs.jsonl").write_text('{"n": 6, "request": 1}\n\n{"n": 4, "request": 2}\n')
    return tmp / "spec.yaml"


def _bench(*args: str) -> tuple[int, str]:
    out = CliRunner().invoke(app, ["bench", *args])
    return out.exit_code, out.output


def test_in_process_report_with_slos_capacity_options_and_plot(tmp_path: Path) -> None:
    spec = _pipeline(tmp_path)
    plot = tmp_path / "plots" / "bench.svg"
    code, output = _bench(
        str(spec),
        "--rate",
        "40/s",
        "--duration",
        "1.5s",
        "--inputs",
        str(tmp_path / "inputs.jsonl"),
        "--slo",
        "p95=60s",
        "--slo",
        "errors=1%",
        "--target",
        "100/s",
        "--json",
        "--plot",
        str(plot),
    )
    assert code == 1, output  # the error-rate objective fails: `score` fails 15% of the time
    report: dict[str, Any] = json.loads(output)  # only the results: no progress bar off a terminal
    assert report["runs"] == 60
    assert report["succeeded"] + round(report["error_rate"] * 60) == 60
    assert 0.02 <= report["error_rate"] <= 0.4
    assert set(report["errors"]) == {"StepError"}
    assert 0 < report["p50_s"] <= report["p95_s"] <= report["p99_s"] <= report["max_s"]
    assert [(s["name"], s["passed"]) for s in report["slos"]] == [("p95", True), ("errors", False)]
    assert report["slo_passed"] is False
    capacity = report["capacity"]
    assert capacity["basis"] in {"saturated", "cpu", "lower bound"}
    assert capacity["replicas"] == math.ceil(100 / capacity["per_worker"])
    assert report["timeline"]
    assert sum(w["runs"] for w in report["timeline"]) == 60
    kinds = {o["kind"] for o in report["options"]}  # analyze --options over the test's own runs
    assert {"retries", "cache"} <= kinds
    svg = plot.read_text()
    assert svg.startswith("<svg")
    assert svg.count("<polyline") == 3  # p50, p95 and p99 over the test
    assert "retry `score`" in svg


def test_latency_counts_from_the_intended_start_so_a_stall_shows_as_queueing(tmp_path: Path) -> None:
    (tmp_path / "stall.py").write_text(
        "import time\n\ncalls = 0\n\n\n"
        "async def work(x: int) -> int:\n"
        "    global calls\n"
        "    calls += 1\n"
        "    if calls == 2:  # the first run after the warm-up blocks the whole process for half a second\n"
        "        time.sleep(0.5)\n"
        "    return x\n"
    )
    (tmp_path / "stall.yaml").write_text(
        "name: stall\ninputs:\n  x: {type: integer, default: 1}\nsteps:\n  work:\n    uses: ./stall.py:work\n"
    )
    (tmp_path / "legato.yaml").write_text("pipelines:\n  stall: stall.yaml\n")
    config = str(tmp_path / "legato.yaml")  # the pipeline by its name under pipelines:
    code, output = _bench("stall", "--config", config, "--rate", "50/s", "--duration", "1s", "--json")
    assert code == 0, output
    report = json.loads(output)
    assert report["runs"] == 50
    # Every run each takes milliseconds once started, but the ~25 runs due during the stall started late:
    # a closed-loop tester would not have sent them; here they wait, and the wait is their latency.
    assert report["start_lag_p99_s"] >= 0.3
    assert report["p95_s"] >= 0.3
    assert report["max_s"] >= 0.5
    first = report["timeline"][0]
    assert first["p95_s"] >= 0.3


def test_bad_arguments_exit_2_with_a_clear_message(tmp_path: Path) -> None:
    spec = _pipeline(tmp_path)
    cases = {
        ("--rate", "0"): "rate '0': expected a positive number of runs",
        ("--rate", "abc"): "rate 'abc': expected a positive number of runs",
        ("--rate", "5", "--duration", "-1s"): "duration '-1s'",
        ("--rate", "5", "--slo", "p97=2s"): "SLO 'p97=2s'",
        ("--rate", "5", "--inputs", str(tmp_path / "missing.jsonl")): "--inputs",
    }
    for args, message in cases.items():
        code, output = _bench(str(spec), *args)
        assert code == 2, (args, output)
        assert message in output, (args, output)
        assert "Traceback" not in output
    code, output = _bench(str(tmp_path / "nope.yaml"), "--rate", "5")
    assert code == 2
    assert "pipeline not found" in output
    (tmp_path / "bad.jsonl").write_text('{"n": 1}\n[1, 2]\n')
    code, output = _bench(str(spec), "--rate", "5", "--inputs", str(tmp_path / "bad.jsonl"))
    assert code == 2
    assert "bad.jsonl:2: expected a JSON object" in output
    (tmp_path / "wrong.jsonl").write_text('{"question": "why?"}\n')
    code, output = _bench(str(spec), "--rate", "5", "--inputs", str(tmp_path / "wrong.jsonl"))
    assert code == 2
    assert "the pipeline refused the inputs" in output
    unreachable = f"http://127.0.0.1:{free_port()}"
    code, output = _bench("known_distributions", "--rate", "5", "--url", unreachable, "--key", "k")
    assert code == 2
    assert f"cannot reach the gateway at {unreachable}" in output
    assert "Traceback" not in output


def test_through_a_real_gateway(tmp_path: Path) -> None:
    _pipeline(tmp_path)
    config = tmp_path / "legato.yaml"
    database = tmp_path / "gateway.db"
    config.write_text(
        f"pipelines:\n  known_distributions: spec.yaml\nserver:\n  database_url: sqlite:///{database}\n"
        "  master_key: env:SECURITY_MASTER_KEY\n  key_cache_ttl_s: 0\n"
    )
    server = ServeProcess(config)
    try:
        server.wait_ready()
        refused, output = _bench("known_distributions", "--rate", "5", "--url", server.url, "--key", "wrong")
        assert refused == 2, output
        assert "the gateway refused the warm-up run: HTTP 401" in output
        code, output = _bench(
            str(tmp_path / "spec.yaml"),
            "--rate",
            "10/s",
            "--duration",
            "1s",
            "--url",
            server.url,
            "--key",
            MASTER,
            "--inputs",
            str(tmp_path / "inputs.jsonl"),
            "--json",
            "--database-url",
            f"sqlite:///{database}",
        )
    finally:
        server.stop()
    assert code == 0, output + server.log()
    report = json.loads(output)
    assert report["target"] == server.url
    assert report["runs"] == 10
    assert report["succeeded"] >= 5
    assert set(report["errors"]) <= {"run failed"}
    assert 0 < report["p50_s"] <= report["p99_s"]
    assert report["options"]  # the gateway's store holds the runs just made
    assert report["capacity"]["cpu_per_run_s"] > 0  # from the gateway's process_cpu_seconds_total


def test_capacity_is_what_was_sustained_when_the_runs_fell_behind() -> None:
    from legato.observe import Sample, parse_slos, summarize

    # Offered 20/s for 5 s; the system serves one run every 0.1 s (10/s), so each run waits longer.
    behind = [Sample(i / 20, i / 20, 0.1 * (i + 1), True) for i in range(100)]
    slow = summarize(behind, pipeline="p", target="t", rate=20, duration=5, target_rate=45, slos=parse_slos(["p99=1s"]))
    assert abs(slow.throughput - 10) < 1e-9
    assert slow.capacity.basis == "saturated"
    assert slow.capacity.replicas == 5  # ceil(45 / 10)
    assert slow.p99_s > 4  # the last runs waited for everything before them
    assert [s.passed for s in slow.slos] == [False]
    # Offered 10/s and served on time, half the runs refused (not served): the refusals are errors,
    # but neither throughput nor capacity counts them.
    kept = [Sample(i / 10, i / 10, i / 10 + 0.05, ok=i % 2 == 0, served=i % 2 == 0, error=(None, "HTTP 429")[i % 2])
            for i in range(40)]  # fmt: skip
    fine = summarize(kept, pipeline="p", target="t", rate=10, duration=4, cpu_s=0.4)
    assert fine.error_rate == 0.5
    assert fine.errors == {"HTTP 429": 20}
    assert abs(fine.throughput - 5) < 1e-9  # the served runs, 0.2 s apart
    assert fine.capacity.basis == "saturated"  # half the offered load was not served
    on_time = [Sample(i / 10, i / 10, i / 10 + 0.05, True) for i in range(40)]
    cpu = summarize(on_time, pipeline="p", target="t", rate=10, duration=4, cpu_s=0.4, target_rate=1000)
    assert cpu.capacity.basis == "cpu"
    assert cpu.capacity.per_worker == 100  # 40 runs in 0.4 CPU-seconds
    assert cpu.capacity.cpu_per_run_s == 0.01
    assert cpu.capacity.replicas == 10
    assert summarize(on_time, pipeline="p", target="t", rate=10, duration=4).capacity.basis == "lower bound"


def test_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    spec = _pipeline(tmp_path)
    leader, follower = pty.openpty()
    legato = str(Path(sys.executable).parent / "legato")
    args = [
        legato,
        "bench",
        str(spec),
        "--rate",
        "20/s",
        "--duration",
        "0.5s",
        "--inputs",
        str(tmp_path / "inputs.jsonl"),
    ]
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100"}
    with subprocess.Popen(args, stdout=follower, stderr=follower, env=env, cwd=tmp_path) as proc:
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: the process is done
                break
            if not chunk:
                break
            seen += chunk
        proc.wait(60)
    os.close(leader)
    text = seen.decode(errors="replace")
    assert "10/10" in text  # the bar's count of finished runs
    assert "(in-process): 10 runs at 20/s" in text  # and the report after it
