"""``legato schedules list|pause|resume`` and ``legato run --queue --priority`` through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from typer.testing import CliRunner

from legato.cli import app
from legato.store import RunStore

PIPELINE = """\
name: ping
inputs: {target: string}
steps:
  ping: {uses: ./steps.py:ping, with: {target: "${inputs.target}"}}
"""

CONFIG = """\
queues:
  probes: {rate: 10/m, pipelines: [ping]}
pipelines:
  ping: ping.yaml
schedules:
  nightly: {pipeline: ping, inputs: {target: db}, cron: "0 3 * * *", timezone: Europe/Paris}
  heartbeat: {pipeline: ping, inputs: {target: api}, every: 30s}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "steps.py").write_text("def ping(target: str) -> str:\n    return 'pong ' + target\n")
    (tmp_path / "ping.yaml").write_text(PIPELINE)
    (tmp_path / "legato.yaml").write_text(CONFIG)
    return tmp_path


def invoke(project: Path, *args: str) -> tuple[int, str, str]:
    where = ["--config", str(project / "legato.yaml"), "--database-url", str(project / "s.db")]
    result = CliRunner().invoke(app, [*args, *where])
    return result.exit_code, result.stdout, result.stderr


def test_list_pause_and_resume(project: Path) -> None:
    code, _, err = invoke(project, "schedules", "list")
    assert code == 2  # a reader does not create the store
    assert invoke(project, "schedules", "pause", "nightly")[:2] == (0, "schedule nightly paused\n")
    code, out, _ = invoke(project, "schedules", "list", "--json")
    assert code == 0
    views = {v["name"]: v for v in json.loads(out)}
    nightly = views["nightly"]
    assert (nightly["paused"], nightly["next_tick"], nightly["queue"]) == (True, None, "probes")
    assert nightly["paused_by"].startswith("legato schedules by ")
    assert (views["heartbeat"]["paused"], views["heartbeat"]["rule"]) == (False, "every 30s")
    code, out, _ = invoke(project, "schedules", "list")
    assert "cron 0 3 * * * (Europe/Paris)" in out
    assert "paused by legato schedules by" in out.replace("\n", " ")
    assert invoke(project, "schedules", "resume", "nightly")[0] == 0
    assert json.loads(invoke(project, "schedules", "list", "--json")[1])[1]["paused"] is False
    code, _, err = invoke(project, "schedules", "pause", "nightlly")
    assert code == 1
    assert "no schedule 'nightlly'" in err
    assert "heartbeat, nightly" in err


def test_an_invalid_schedule_exits_2_naming_it(project: Path) -> None:
    (project / "legato.yaml").write_text(CONFIG.replace('cron: "0 3 * * *"', 'cron: "0 25 * * *"'))
    code, _, err = invoke(project, "schedules", "list")
    assert code == 2
    assert "schedules.nightly" in err
    assert "Bad hour" in err


async def priority_of(project: Path, run_id: str) -> int:
    async with RunStore(project / "s.db") as store:
        return (await store.get_run(run_id)).priority


def test_run_enqueues_with_a_priority(project: Path) -> None:
    ping = str(project / "ping.yaml")
    code, out, _ = invoke(project, "run", ping, "-i", "target=db", "--priority", "7", "--no-wait", "--json")
    assert code == 0, out
    assert (json.loads(out)["status"], json.loads(out)["queue"]) == ("queued", "probes")
    assert anyio.run(priority_of, project, json.loads(out)["run_id"]) == 7
    (project / "legato.yaml").write_text("pipelines:\n  ping: ping.yaml\n")  # no queue for the pipeline now
    code, _, err = invoke(project, "run", ping, "-i", "target=db", "--priority", "7")
    assert code == 2
    assert "--priority orders queued runs" in err


def test_a_worker_refuses_a_schedule_of_an_unknown_pipeline(project: Path) -> None:
    (project / "legato.yaml").write_text(CONFIG.replace("{pipeline: ping, inputs: {target: api}", "{pipeline: pong"))
    code, _, err = invoke(project, "worker", "--queue", "probes")
    assert code == 2
    assert "schedules.heartbeat.pipeline: no pipeline 'pong'" in err
