"""Envelope encryption at rest: no plaintext in the database files or a pg_dump, key
rotation then resume of an interrupted run, wrong or missing keys named."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from legato.engine import Pipeline
from legato.errors import EncryptionKeyError
from legato.store import DurableRunner, EventRecord, Journal, NewRun, RunStore, StepRecord, pipeline_version
from legato.store._crypto import new_key_text
from legato.store._records import MapItemRecord
from protection.conftest import store_bytes

OWNER = "test:1:x"
LEGATO = str(Path(sys.executable).parent / "legato")


def _pipeline(broken: set[str], name: str) -> Pipeline:
    p = Pipeline(name)

    @p.step
    async def a(doc: str) -> dict[str, Any]:
        return {"summary": f"{doc} summarised", "words": doc.split()}

    @p.step
    async def b(a: dict[str, Any]) -> str:
        if "b" in broken:
            raise RuntimeError("b is not ready")
        return str(a["summary"]).upper()

    return p


async def test_no_payload_is_stored_in_plaintext(store_url: str, kek_env: str) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    async with RunStore(store_url, encryption_key=kek_env) as store:
        assert store.encrypted
        run, _ = await store.create_run(
            NewRun(pipeline="p", version_hash="v", inputs={"doc": canary}, owner=OWNER, lease_ttl=30)
        )
        await store.checkpoint(
            run.id,
            OWNER,
            attempts=[StepRecord(run.id, "a", "succeeded", output=[canary, (canary,)], meta={"note": canary})],
            new_events=[EventRecord(run.id, "StepProgress", 1.0, step="m", data={"turn": canary})],
            items=[MapItemRecord(run.id, "m", 0, output={"answer": canary})],
        )
        await store.finish_run(run.id, OWNER, status="succeeded", outputs={"b": canary})
        entry = await Journal(store).add("what the run learned", f"the document said {canary}", tags=["enc"])
        # transparent to readers
        record = await store.get_run(run.id)
        assert record.inputs == {"doc": canary}
        assert record.outputs == {"b": canary}
        [step] = await store.steps(run.id)
        assert step.output == [canary, (canary,)]
        assert step.meta == {"note": canary}
        assert (await store.map_items(run.id)) == {"m": {0: {"answer": canary}}}
        assert any(e.data == {"turn": canary} for e in await store.events(run.id))
        assert (await Journal(store).get(entry.id)).body == f"the document said {canary}"
        raw = store_bytes(store_url)  # the SQLite WAL is still there while the store is open
    assert canary.encode() not in raw
    assert canary.encode() not in store_bytes(store_url)


async def test_without_a_key_values_are_plain_and_stay_readable_once_encryption_is_on(
    store_url: str, kek_env: str
) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    async with RunStore(store_url) as store:
        assert not store.encrypted
        old, _ = await store.create_run(NewRun(pipeline="p", version_hash="v", inputs={"doc": canary}))
    assert canary.encode() in store_bytes(store_url)
    async with RunStore(store_url, encryption_key=kek_env) as store:
        assert (await store.get_run(old.id)).inputs == {"doc": canary}


async def test_rotation_then_resume_of_an_interrupted_run(
    store_url: str, kek_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    broken = {"b"}
    p = _pipeline(broken, f"enc-{uuid.uuid4().hex[:8]}")
    async with RunStore(store_url, encryption_key=kek_env) as store:
        failed = await DurableRunner(store).run(p, {"doc": canary})
        assert not failed.ok
    monkeypatch.setenv("LEGATO_TEST_NEW_KEK", new_key_text())
    env = {**os.environ, "LEGATO_STORE_KEY": kek_env}
    cli = [LEGATO, "store", "rotate-key", "--to", "env:LEGATO_TEST_NEW_KEK"]
    done = subprocess.run([*cli, "--database-url", store_url], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "re-wrapped 1 data key" in done.stdout
    # the old key no longer opens the store, and says which key the data is wrapped with
    with pytest.raises(EncryptionKeyError, match="LEGATO_TEST_NEW_KEK") as info:
        await RunStore(store_url, encryption_key=kek_env).open()
    assert info.value.ref == kek_env
    broken.clear()
    async with RunStore(store_url, encryption_key="env:LEGATO_TEST_NEW_KEK") as store:
        resumed = await DurableRunner(store).resume(p, failed.run_id)
        assert resumed.ok
        assert resumed.result["b"] == f"{canary} SUMMARISED".upper()
        assert [s.step for s in await store.steps(failed.run_id) if s.status == "succeeded"] == ["a", "b"]
        assert (await store.get_run(failed.run_id)).version_hash == pipeline_version(p)
    assert canary.encode() not in store_bytes(store_url)


async def test_a_missing_key_names_the_reference_instead_of_reading_garbage(store_url: str, kek_env: str) -> None:
    async with RunStore(store_url, encryption_key=kek_env) as store:
        run, _ = await store.create_run(NewRun(pipeline="p", version_hash="v", inputs={"doc": "secret"}))
    async with RunStore(store_url) as store:  # no key configured
        with pytest.raises(EncryptionKeyError, match=kek_env.removeprefix("env:")):
            await store.get_run(run.id)
    with pytest.raises(EncryptionKeyError, match="is not set"):
        await RunStore(store_url, encryption_key="env:LEGATO_TEST_UNSET_KEY").open()


async def test_a_key_that_is_not_32_bytes_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGATO_TEST_SHORT", "c2hvcnQ=")
    with pytest.raises(EncryptionKeyError, match="env:LEGATO_TEST_SHORT: expected 32 bytes"):
        await RunStore(tmp_path / "s.db", encryption_key="env:LEGATO_TEST_SHORT").open()
    key_file = tmp_path / "kek"
    key_file.write_text(new_key_text() + "\n")
    async with RunStore(tmp_path / "f.db", encryption_key=f"file:{key_file}") as store:
        assert store.encrypted
    with pytest.raises(EncryptionKeyError, match="cannot read"):
        await RunStore(tmp_path / "g.db", encryption_key=f"file:{tmp_path / 'absent'}").open()


async def test_the_cli_without_the_key_exits_2_naming_it(tmp_path: Path, kek_env: str) -> None:
    url = f"sqlite:///{tmp_path / 'legato.db'}"
    async with RunStore(url, encryption_key=kek_env) as store:
        run, _ = await store.create_run(NewRun(pipeline="p", version_hash="v", inputs={"doc": "secret"}))
    env = {k: v for k, v in os.environ.items() if k != "LEGATO_STORE_KEY"}
    done = subprocess.run(
        [LEGATO, "runs", "show", run.id, "--database-url", url], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert kek_env in done.stderr
    assert "Traceback" not in done.stderr
