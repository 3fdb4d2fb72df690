"""Erasure and retention from the outside: DELETE /v1/subjects/{id} (admin scope,
audited), a subject given on the runs API or named by an input, `legato runs erase`
and `legato runs prune --dry-run` through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.server.conftest import Running, catalog_for, gateway_settings, pipeline_config, serve_in_thread

from legato.config import LegatoConfig
from legato.server import create_app
from legato.store import DurableRunner, RetentionConfig, RunStore, subject_key
from legato.testing import FakeProvider

LEGATO = str(Path(sys.executable).parent / "legato")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("erasure")
    base = pipeline_config(tmp)
    config = LegatoConfig({**base.data, "retention": {"pipelines": {"shout": {"subject": "text"}}}}, source=base.source)
    with FakeProvider(seed=0).in_thread() as fake:
        app = create_app(gateway_settings(tmp), catalog=catalog_for(fake), config=config)
        with serve_in_thread(app) as url:
            yield Running(url, app, fake)


def _finished(c: httpx.Client, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run = c.get(f"/v1/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed"):
            return dict(run)
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish")


def test_delete_subject_erases_their_runs_and_is_audited(gateway: Running) -> None:
    ann, bob = f"ann-{uuid.uuid4().hex}", f"bob-{uuid.uuid4().hex}"
    writer = gateway.create_key(["runs:write", "runs:read"])
    with gateway.client(writer) as c:
        by_input = c.post("/v1/pipelines/shout/runs", json={"inputs": {"text": ann}}).json()["id"]
        by_api = c.post("/v1/pipelines/shout/runs", json={"inputs": {"text": "about a"}, "subject": ann}).json()["id"]
        other = c.post("/v1/pipelines/shout/runs", json={"inputs": {"text": bob}}).json()["id"]
        for run_id in (by_input, by_api, other):
            assert _finished(c, run_id)["status"] == "succeeded"
        refused = c.delete(f"/v1/subjects/{ann}")
        assert refused.status_code == 403
    with gateway.admin() as admin:
        r = admin.delete(f"/v1/subjects/{ann}")
        assert r.status_code == 200, r.text
        assert r.json() == {"object": "erasure", "runs": 2, "journal_entries": 0, "cache_entries": 0}
        audit = admin.get("/v1/admin/audit", params={"action": "subject_erased"}).json()["data"]
        assert audit[0]["target"] == subject_key(ann)[:32]
        assert ann not in str(audit)
    with gateway.client(writer) as c:
        for run_id in (by_input, by_api):
            run = c.get(f"/v1/runs/{run_id}").json()
            assert (run["payloads"], run["inputs"], run["outputs"], run["status"]) == ("erased", {}, None, "succeeded")
            assert all(s["output"] is None for s in run["steps"])
        assert c.get(f"/v1/runs/{other}").json()["inputs"] == {"text": bob}


def _legato(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LEGATO_CONFIG", "LEGATO_STORE_KEY")}
    return subprocess.run([LEGATO, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


async def test_the_cli_prunes_by_the_retention_rules_and_erases_a_subject(tmp_path: Path) -> None:
    from legato.engine import Pipeline

    url = f"sqlite:///{tmp_path / 'legato.db'}"
    (tmp_path / "legato.yaml").write_text(
        "retention:\n  default: {keep_payloads_days: 1}\n  pipelines:\n    tickets: {subject: customer}\n"
    )
    p = Pipeline("tickets")

    @p.step
    async def reply(customer: str) -> str:
        return f"hello {customer}"

    old = time.time() - 3 * 86_400
    rules = RetentionConfig.load(LegatoConfig.load(tmp_path / "legato.yaml"))
    async with RunStore(url, clock=lambda: old, retention=rules) as store:
        await DurableRunner(store, reflect=None).run(p, {"customer": "cust-1"})
    async with RunStore(url, retention=rules) as store:
        fresh = await DurableRunner(store, reflect=None).run(p, {"customer": "cust-2"})
    dry = _legato("runs", "prune", "--dry-run", "--database-url", url, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip() == "would delete 0 runs; would reduce 1 to metadata (payloads removed)"
    done = _legato("runs", "prune", "--database-url", url, cwd=tmp_path)
    assert done.stdout.strip() == "deleted 0 runs; reduced 1 to metadata (payloads removed)"
    assert b"cust-1" not in b"".join(p.read_bytes() for p in tmp_path.glob("legato.db*"))
    erased = _legato("runs", "erase", "--subject", "cust-2", "--database-url", url, cwd=tmp_path)
    assert erased.returncode == 0, erased.stderr
    assert erased.stdout.strip() == "erased the payloads of 1 run, 0 journal entries and 0 cache entries"
    shown = _legato("runs", "show", fresh.run_id, "--database-url", url, cwd=tmp_path)
    assert "erased at the request of its data subject" in shown.stdout
    assert b"cust-2" not in b"".join(p.read_bytes() for p in tmp_path.glob("legato.db*"))


async def test_legato_serve_applies_retention_in_the_background(tmp_path: Path) -> None:
    from legato.engine import Pipeline
    from legato.server import ServerSettings

    url = f"sqlite:///{tmp_path / 'legato.db'}"
    rules = {"default": {"keep_runs_days": 30, "keep_payloads_days": 1}}
    p = Pipeline("tickets")

    @p.step
    async def reply(text: str) -> str:
        return text.upper()

    async with RunStore(url, clock=lambda: time.time() - 40 * 86_400) as store:
        ancient = await DurableRunner(store, reflect=None).run(p, {"text": "ancient"})
    async with RunStore(url, clock=lambda: time.time() - 2 * 86_400) as store:
        old = await DurableRunner(store, reflect=None).run(p, {"text": "old"})
    async with RunStore(url) as store:
        fresh = await DurableRunner(store, reflect=None).run(p, {"text": "fresh"})
    settings = ServerSettings.model_validate({"database_url": url, "master_key": "mk-test-master-key-0123456789"})
    app = create_app(settings, config=LegatoConfig({"retention": rules}, source=str(tmp_path / "legato.yaml")))
    with serve_in_thread(app):
        deadline = time.monotonic() + 30
        while True:  # the first pass runs when the gateway starts
            async with RunStore(url, create=False) as store:
                ids = {r.id: r.payloads for r in await store.list_runs()}
            if ancient.run_id not in ids or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert ids == {old.run_id: "expired", fresh.run_id: None}


def test_gateway_calls_tagged_with_a_subject_leave_the_cache_on_erasure(tmp_path: Path) -> None:
    from legato.testing import Reply

    with FakeProvider(seed=0).in_thread() as fake:
        model = {"provider": "openai", "model": "gpt-4o-mini", "base_url": fake.openai_base_url, "api_key": "env:PATH"}
        config = LegatoConfig(
            {"models": {"m": model}, "cache": {"backend": "sqlite", "path": str(tmp_path / "cache.db")}},
            source=str(tmp_path / "legato.yaml"),
        )
        app = create_app(gateway_settings(tmp_path), config=config)
        fake.script(Reply(text="for ann"), Reply(text="for ann again"))
        body = {"model": "m", "messages": [{"role": "user", "content": "my order?"}]}
        with serve_in_thread(app) as url:
            running = Running(url, app, fake)
            key = running.create_key(["chat"])
            with running.client(key, **{"X-Legato-Subject": "cust-ann"}) as c:
                assert c.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"] == "for ann"
                c.post("/v1/chat/completions", json=body)  # answered from the cache
                assert len(fake.requests) == 1
                too_long = c.post("/v1/chat/completions", json=body, headers={"X-Legato-Subject": "x" * 256})
                assert too_long.status_code == 400
            with running.admin() as admin:
                erased = admin.delete("/v1/subjects/cust-ann").json()
            assert erased["cache_entries"] == 1
            with running.client(key) as c:
                again = c.post("/v1/chat/completions", json=body).json()
            assert again["choices"][0]["message"]["content"] == "for ann again"
            assert len(fake.requests) == 2


def test_prune_older_than_keeps_its_answer_and_previews_with_dry_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'legato.db'}"
    (tmp_path / "steps.py").write_text("def size(x: str) -> int:\n    return len(x)\n")
    spec = "name: p\ninputs:\n  x: {type: string}\nsteps:\n  s:\n    uses: ./steps.py:size\n"
    (tmp_path / "p.yaml").write_text(spec + "    with: {x: '${inputs.x}'}\n")
    ran = _legato("run", str(tmp_path / "p.yaml"), "-i", "x=abc", "--database-url", url, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    preview = _legato("runs", "prune", "--older-than", "0s", "--dry-run", "--database-url", url, cwd=tmp_path)
    assert preview.stdout.strip() == "would delete 1 run; would reduce 0 to metadata (payloads removed)"
    done = _legato("runs", "prune", "--older-than", "0s", "--database-url", url, cwd=tmp_path)
    assert done.stdout.strip() == "pruned 1 run finished more than 0s ago"
