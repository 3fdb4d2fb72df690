"""Long-lived serving processes migrate a new or older store in a child process
(``RunStore.open(migrate_in_child=True)``), so they never import alembic: the same
errors with the same messages reach the caller, concurrent opens of a new database
still migrate it once, and a cancelled open leaves no child behind."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import psutil
import pytest

from _postgres import throwaway_database
from _serve import ServeProcess, stop_served
from legato._store_upgrade import MODULE, migrate_in_child, outcome
from legato.errors import StoreCorrupt, StoreError, StoreNotFound
from legato.store import RunStore, resolve_url
from legato.store._database import newest_revision

# `-X importtime` in every process that inherits the environment: each module a process
# imports is one line of its stderr
IMPORT_TIMES = {"PYTHONPROFILEIMPORTTIME": "1"}


def imported(module: str, log: str) -> bool:
    return re.search(rf"^import time:.*\|\s+{re.escape(module)}\s*$", log, re.MULTILINE) is not None


def _heads(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]


# -- the serving commands --------------------------------------------------------


@pytest.mark.slow
def test_a_gateway_started_on_a_new_store_never_imports_alembic(tmp_path: Path) -> None:
    (tmp_path / "legato.yaml").write_text("server:\n  master_key: env:SECURITY_MASTER_KEY\n  drain_delay_s: 0\n")
    db = tmp_path / "new" / "gateway.db"
    served = ServeProcess(tmp_path / "legato.yaml", "--database-url", f"sqlite:///{db}", env=IMPORT_TIMES)
    try:
        served.wait_ready("/healthz")
        with served.client() as c:
            assert c.post("/v1/admin/keys", json={"name": "k", "scopes": ["chat"]}).status_code == 201
    finally:
        served.stop()
    log = served.log()
    assert imported("legato.server._app", log)  # the import times are there to be read
    assert not imported("alembic", log), "legato serve imported alembic"
    assert _heads(db) == [newest_revision()]


@pytest.mark.slow
def test_a_worker_started_on_a_new_store_never_imports_alembic(tmp_path: Path) -> None:
    db = tmp_path / "worker.db"
    command = [sys.executable, "-c", "from legato.cli import main; main()", "worker", "--queue", "default"]
    lines = []
    with subprocess.Popen(
        [*command, "--database-url", f"sqlite:///{db}", "--grace", "0"],
        cwd=tmp_path,
        env={**os.environ, **IMPORT_TIMES},
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None
        try:
            for line in proc.stderr:
                lines.append(line)
                if "serving default" in line:
                    break
        finally:
            stop_served(proc)  # type: ignore[arg-type]
            lines.append(proc.stderr.read())
    log = "".join(lines)
    assert "serving default" in log, log[-2000:]
    assert imported("legato.store._worker", log)
    assert not imported("alembic", log), "legato worker imported alembic"
    assert _heads(db) == [newest_revision()]


@pytest.mark.slow
def test_an_mcp_server_started_on_a_new_store_never_imports_alembic(tmp_path: Path) -> None:
    pytest.importorskip("mcp")
    db = tmp_path / "mcp.db"
    command = [sys.executable, "-c", "from legato.cli import main; main()", "mcp", "--database-url", f"sqlite:///{db}"]
    with subprocess.Popen(
        command,
        cwd=tmp_path,
        env={**os.environ, **IMPORT_TIMES},
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdin is not None
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if _heads(db) == [newest_revision()]:
                    break
            except sqlite3.Error:
                pass
            time.sleep(0.05)
        time.sleep(0.5)  # the server goes on to read its stdin
        proc.stdin.close()  # end of input: the stdio server stops
        log = proc.stderr.read()
        assert proc.wait(30) == 0, log[-2000:]
    assert _heads(db) == [newest_revision()]
    assert imported("legato.mcp", log)
    assert not imported("alembic", log), "legato mcp imported alembic"


# -- the same errors ---------------------------------------------------------------

# Opens each store in a process of its own, through a child, and reports what it raised.
OPEN_IN_CHILD = textwrap.dedent(
    """
    import json, sys
    import anyio
    from legato.store import RunStore

    async def main():
        out = []
        for url, create in json.loads(sys.argv[1]):
            try:
                await (await RunStore(url, create=create).open(migrate_in_child=True)).aclose()
                out.append(None)
            except Exception as exc:
                out.append([type(exc).__name__, str(exc)])
        print(json.dumps({"raised": out, "alembic": "alembic" in sys.modules}))

    anyio.run(main)
    """
)


async def _raised_in_process(url: str, create: bool) -> list[str] | None:
    try:
        await (await RunStore(url, create=create).open()).aclose()
    except Exception as exc:
        return [type(exc).__name__, str(exc)]
    return None


def _raised_through_children(cases: list[tuple[str, bool]], cwd: Path) -> list[list[str] | None]:
    done = subprocess.run(
        [sys.executable, "-c", OPEN_IN_CHILD, json.dumps(cases)], cwd=cwd, capture_output=True, text=True, check=True
    )
    report = json.loads(done.stdout)
    assert report["alembic"] is False, "the opening process imported alembic"
    return list(report["raised"])


@pytest.mark.slow
async def test_errors_from_the_child_are_the_same_classes_with_the_same_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with sqlite3.connect(tmp_path / "app.db") as conn:  # another application's database
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    async with RunStore(tmp_path / "newer.db"):
        pass
    with sqlite3.connect(tmp_path / "newer.db") as conn:  # written by a newer legato
        conn.execute("UPDATE alembic_version SET version_num = '9999_future'")
    with sqlite3.connect(tmp_path / "blank.db") as conn:  # a SQLite file that holds nothing yet
        conn.execute("PRAGMA user_version = 7")
    cases = [("sqlite:///app.db", True), ("sqlite:///newer.db", True), ("sqlite:///blank.db", False)]

    through_children = await anyio.to_thread.run_sync(_raised_through_children, cases, tmp_path)

    monkeypatch.chdir(tmp_path)  # the relative paths, as the other process saw them
    in_process = [await _raised_in_process(url, create) for url, create in cases]
    assert through_children == in_process
    classes, messages = zip(*[r or ["", ""] for r in through_children], strict=True)
    assert classes == ("StoreCorrupt", "StoreCorrupt", "StoreNotFound")
    assert "store 'app.db' is not a legato store: it has tables (customers)" in messages[0]
    assert "9999_future, which this legato does not know" in messages[1]
    with sqlite3.connect(tmp_path / "app.db") as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("customers",)]


@pytest.fixture
def empty_postgres(postgres_admin_dsn: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (dropped afterwards), its URL carrying a password
    (the test server trusts local connections, so any password is accepted)."""
    with throwaway_database(postgres_admin_dsn) as name:
        yield f"postgresql://postgres:s3cret-pw@127.0.0.1:5432/{name}"


@pytest.mark.postgres
async def test_postgres_errors_from_the_child_keep_their_class_and_hide_the_password(empty_postgres: str) -> None:
    with pytest.raises(StoreNotFound, match="holds no legato store") as info:
        await RunStore(empty_postgres, create=False).open(migrate_in_child=True)
    assert ["StoreNotFound", str(info.value)] == await _raised_in_process(empty_postgres, False)
    assert "s3cret-pw" not in str(info.value)
    assert "postgres:***@127.0.0.1" in str(info.value)

    async with RunStore(empty_postgres) as store:
        await store.run_sync(lambda conn: conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_x'"))
    expected = await _raised_in_process(empty_postgres, True)
    with pytest.raises(StoreCorrupt) as newer:
        await RunStore(empty_postgres).open(migrate_in_child=True)
    assert ["StoreCorrupt", str(newer.value)] == expected
    assert "9999_x, which this legato does not know" in str(newer.value)
    assert "s3cret-pw" not in str(newer.value)


async def test_a_child_that_cannot_start_is_a_store_error_naming_its_status_and_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONHOME", str(tmp_path / "no-python-here"))  # the child's interpreter cannot start
    with pytest.raises(StoreError) as info:
        await RunStore(tmp_path / "legato.db").open(migrate_in_child=True)
    assert type(info.value) is StoreError
    message = str(info.value)
    assert message.startswith(f"store {str(tmp_path / 'legato.db')!r}: checking and upgrading its schema")
    assert "(exit status 1); its stderr ends:" in message
    assert "no-python-here" in message or "Fatal Python error" in message


async def test_a_child_that_cannot_be_started_is_a_store_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))  # an embedding with no interpreter to run
    with pytest.raises(StoreError, match="cannot start a child process to check and upgrade its schema") as info:
        await RunStore(tmp_path / "legato.db").open(migrate_in_child=True)
    assert type(info.value) is StoreError


def test_what_the_childs_exit_means() -> None:
    url = "postgresql+asyncpg://legato:pa55word@db.internal/legato"
    assert outcome(url, 0, b'{"upgraded": true}\n', b"") is True
    assert outcome(url, 0, b'noise from a library\n{"upgraded": false}\n', b"") is False
    with pytest.raises(StoreCorrupt, match=r"^what the child said$"):
        outcome(url, 1, b'{"error": "StoreCorrupt", "message": "what the child said"}\n', b"")
    cases = [
        (-signal.SIGKILL, b"", b"", "(killed by SIGKILL); it wrote nothing on stderr"),
        (1, b"", b"Traceback ...\nasyncpg: password pa55word rejected\n", "exit status 1"),
        (1, b'{"error": "KeyError", "message": "x"}\n', b"", "exit status 1"),  # not a class it may send
        (0, b'{"error": "StoreCorrupt", "message": "x"}\n', b"", "exit status 0"),  # an error with status 0
        (0, b"not json\n", b"", "exit status 0"),
    ]
    for status, out, err, said in cases:
        with pytest.raises(StoreError) as info:
            outcome(url, status, out, err)
        assert type(info.value) is StoreError
        assert said in str(info.value)
        assert "pa55word" not in str(info.value)
        assert str(info.value).startswith("store 'postgresql+asyncpg://legato:***@db.internal/legato': ")
    with pytest.raises(StoreError, match=r"asyncpg: password \*\*\* rejected$"):
        outcome(url, 1, b"", b"asyncpg: password pa55word rejected\n")


async def test_an_in_memory_store_is_migrated_in_process() -> None:
    async with RunStore("sqlite:///:memory:") as _:
        pass
    store = await RunStore("sqlite:///:memory:").open(migrate_in_child=True)
    try:
        heads = await store.run_sync(lambda c: c.exec_driver_sql("SELECT version_num FROM alembic_version").all())
        assert [h[0] for h in heads] == [newest_revision()]
    finally:
        await store.aclose()


# -- concurrency and cancellation ----------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database nothing has opened yet: a SQLite path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sub' / 'fresh.db'}"
        return
    yield request.getfixturevalue("empty_postgres")


@pytest.mark.slow
async def test_children_migrating_a_new_database_at_once_migrate_it_once(new_database: str) -> None:
    url = resolve_url(new_database)
    upgraded: list[bool] = []

    async def one() -> None:
        upgraded.append(await migrate_in_child(url, url, create=True, readonly=False))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one)
    assert sorted(upgraded) == [False, False, False, False, True]  # one took the lock first; the rest found it done

    async with anyio.create_task_group() as tg:  # and opens of a store at the newest revision start no child
        for _ in range(3):
            tg.start_soon(_open_and_close, new_database)
    async with RunStore(new_database) as store:
        heads = await store.run_sync(lambda c: c.exec_driver_sql("SELECT version_num FROM alembic_version").all())
    assert [h[0] for h in heads] == [newest_revision()]


async def _open_and_close(url: str) -> None:
    await (await RunStore(url).open(migrate_in_child=True)).aclose()


@pytest.mark.slow
async def test_opens_of_a_new_database_at_once_through_children_all_succeed(new_database: str) -> None:
    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(_open_and_close, new_database)
    async with RunStore(new_database) as store:
        heads = await store.run_sync(lambda c: c.exec_driver_sql("SELECT version_num FROM alembic_version").all())
    assert [h[0] for h in heads] == [newest_revision()]


def _children() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children():
        try:
            if MODULE in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


async def test_a_cancelled_open_kills_and_waits_for_its_child(tmp_path: Path) -> None:
    path = tmp_path / "legato.db"
    seen: list[psutil.Process] = []
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_open_and_close, f"sqlite:///{path}")
            deadline = time.monotonic() + 30
            while not seen and time.monotonic() < deadline:
                seen = _children()
                await anyio.sleep(0.005)
            scope.cancel()
    assert scope.cancelled_caught
    assert len(seen) == 1, "no child was seen starting"
    assert not psutil.pid_exists(seen[0].pid), "the child outlived the cancelled open"  # killed and reaped
    async with RunStore(path):  # nothing half-done: the next open migrates it
        pass
    assert _heads(path) == [newest_revision()]
