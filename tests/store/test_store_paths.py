"""Where the store lives: readers never create one, reads work on read-only media, a full disk is one line.

The read-only and full-disk cases mount a real tmpfs (root only); elsewhere they are skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legato.cli import app
from legato.errors import StoreNotFound
from legato.store import RunStore

LEGATO = [sys.executable, "-c", "from legato.cli import main; main()"]

STEPS = """
import os
from pathlib import Path


async def upper(text: str) -> str:
    return text.upper()


async def hog(upper: str) -> str:
    # fill the file system the store lives on, then return more than fits
    target = Path(os.environ["FILL_DIR"]) / "fill"
    try:
        with target.open("wb") as f:
            while True:
                f.write(b"0" * 65536)
    except OSError:
        pass
    return upper * 50_000
"""

PIPELINE = """
name: hoard
inputs: {text: string}
steps:
  upper: {uses: ./steps.py:upper}
  hog: {uses: ./steps.py:hog}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "steps.py").write_text(STEPS)
    (tmp_path / "hoard.yaml").write_text(textwrap.dedent(PIPELINE).lstrip())
    return tmp_path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


READERS = [
    ["runs", "list"],
    ["runs", "show", "01a2"],
    ["runs", "cancel", "01a2"],
    ["runs", "recover"],
    ["journal", "recent"],
    ["journal", "search", "anything"],
    ["analyze", "hoard"],
    ["keys", "list"],
]


@pytest.mark.parametrize("command", READERS, ids=lambda c: " ".join(c[:2]))
def test_readers_refuse_a_store_that_does_not_exist(tmp_path: Path, command: list[str]) -> None:
    typo = tmp_path / "stoer.db"
    code, out, err = invoke(*command, "--database-url", str(typo))
    assert code == 2, out + err
    assert f"no store at '{typo}'" in err.replace("\n", "")
    assert not typo.exists()
    assert list(tmp_path.iterdir()) == []


def test_run_creates_the_store_and_readers_then_see_it(project: Path) -> None:
    db = project / "new" / "s.db"
    code, out, _ = invoke("run", str(project / "hoard.yaml"), "-i", "text=hi", "--database-url", str(db), "--json")
    assert code == 1  # the hog step fails without FILL_DIR; the run is stored anyway
    run_id = json.loads(out)["run_id"]
    code, out, _ = invoke("runs", "list", "--json", "--database-url", str(db))
    assert code == 0
    assert [r["id"] for r in json.loads(out)] == [run_id]


async def test_reading_store_refuses_an_empty_postgres_database(postgres_admin_dsn: str) -> None:
    import asyncpg

    name = f"legato_empty_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_admin_dsn, user=os.environ.get("PGUSER", "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = postgres_admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql://postgres@") + f"/{name}"
        with pytest.raises(StoreNotFound, match="holds no legato store"):
            await RunStore(url, create=False).open()
        async with RunStore(url) as store:  # a writer creates it
            assert await store.list_runs() == []
        async with RunStore(url, create=False) as store:
            assert await store.list_runs() == []
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for this test (needs root and mount(8))."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    point = tmp_path / "mnt"
    point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_reads_work_on_a_read_only_file_system(project: Path, tmpfs: Path) -> None:
    db = tmpfs / "s.db"
    code, out, _ = invoke("run", str(project / "hoard.yaml"), "-i", "text=hi", "--database-url", str(db), "--json")
    run_id = json.loads(out)["run_id"]
    invoke("journal", "add", "a note", "--body", "kept", "--database-url", str(db))
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    before = sorted(p.name for p in tmpfs.iterdir())
    code, out, err = invoke("runs", "list", "--json", "--database-url", str(db))
    assert code == 0, err
    assert [r["id"] for r in json.loads(out)] == [run_id]
    code, out, err = invoke("runs", "show", run_id, "--json", "--database-url", str(db))
    assert code == 0, err
    assert json.loads(out)["steps"][0]["output"] == "HI"
    code, out, err = invoke("journal", "recent", "--json", "--database-url", str(db))
    assert code == 0, err
    assert any(e["title"] == "a note" for e in json.loads(out))
    code, out, err = invoke("keys", "list", "--database-url", str(db))
    assert code == 0, err
    code, out, err = invoke("runs", "list", "--database-url", str(db))  # the table: short ids are read too
    assert code == 0, err
    assert run_id[:8] in out
    code, out, err = invoke("analyze", "hoard", "--database-url", str(db))
    assert code == 0, err
    assert "not written to the journal" in err
    code, out, err = invoke("run", str(project / "hoard.yaml"), "-i", "text=x", "--database-url", str(db))
    assert code == 1
    assert "is read-only" in err
    assert "Traceback" not in out + err
    assert sorted(p.name for p in tmpfs.iterdir()) == before


def test_a_full_disk_is_one_line_and_keeps_what_was_committed(project: Path, tmpfs: Path) -> None:
    db = tmpfs / "s.db"
    env = {**os.environ, "FILL_DIR": str(tmpfs), "COLUMNS": "400"}
    cmd = [*LEGATO, "run", str(project / "hoard.yaml"), "-i", "text=hi", "--database-url", str(db), "--json"]
    done = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in (done.stderr + done.stdout).splitlines() if "disk is full" in line]
    assert lines, done.stderr + done.stdout
    assert "committed before it is kept" in lines[0]
    assert len(done.stderr.strip().splitlines()) <= 1, done.stderr
    (tmpfs / "fill").unlink()
    code, out, err = invoke("runs", "list", "--json", "--database-url", str(db))
    assert code == 0, err
    (run,) = json.loads(out)
    code, out, err = invoke("runs", "show", run["id"], "--json", "--database-url", str(db))
    steps = {s["step"]: s["status"] for s in json.loads(out)["steps"]}
    assert steps["upper"] == "succeeded"  # committed before the disk filled: kept
