"""Opening the store: migrations, SQLite settings, and refusing foreign or damaged databases."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa

from _postgres import throwaway_database
from legato.errors import ConfigError, StoreCorrupt
from legato.store import NewRun, RunStore, resolve_url


def test_resolve_url() -> None:
    assert resolve_url("x/legato.db") == "sqlite+aiosqlite:///x/legato.db"
    assert resolve_url("sqlite:///a.db") == "sqlite+aiosqlite:///a.db"
    assert resolve_url("postgresql://h/db") == "postgresql+asyncpg://h/db"
    with pytest.raises(ConfigError, match="unsupported database URL scheme 'mysql'"):
        resolve_url("mysql://h/db")


async def test_default_location_wal_and_synchronous_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LEGATO_DATABASE_URL", raising=False)
    async with RunStore() as store:
        modes = await store.run_sync(
            lambda conn: (
                conn.exec_driver_sql("PRAGMA journal_mode").scalar(),
                conn.exec_driver_sql("PRAGMA synchronous").scalar(),
            )
        )
        tables = await store.run_sync(lambda conn: set(sa.inspect(conn).get_table_names()), readonly=True)
    assert (tmp_path / ".legato" / "legato.db").exists()
    assert modes == ("wal", 2)  # 2 = FULL
    assert {"runs", "step_attempts", "run_events", "journal_entries", "alembic_version"} <= tables


async def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "legato.db"
    path.write_bytes(b"definitely not a database" * 100)
    with pytest.raises(StoreCorrupt, match="is not a SQLite database") as info:
        await RunStore(path).open()
    assert "left untouched" in str(info.value)
    assert path.read_bytes() == b"definitely not a database" * 100


async def test_a_damaged_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "legato.db"
    async with RunStore(path) as store:
        await store.create_run(NewRun(pipeline="p", version_hash="v", inputs={"x": "y" * 5000}))
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # smash the schema page, keep the header
    path.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with pytest.raises(StoreCorrupt, match="damaged"):
        await RunStore(path).open()


async def test_a_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    with pytest.raises(StoreCorrupt, match=r"is not a legato store: it has tables \(customers\)"):
        await RunStore(path).open()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("customers",)]


async def test_another_applications_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA application_id = 12345")
    with pytest.raises(StoreCorrupt, match="belongs to another application"):
        await RunStore(path).open()


async def test_a_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "legato.db"
    async with RunStore(path):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_future'")
    with pytest.raises(StoreCorrupt, match="9999_future, which this legato does not know"):
        await RunStore(path).open()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a new SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with throwaway_database(request.getfixturevalue("postgres_admin_dsn")) as name:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


async def test_concurrent_opens_of_a_fresh_database_migrate_once(fresh_url: str) -> None:
    stores = [RunStore(fresh_url) for _ in range(6)]
    async with anyio.create_task_group() as tg:
        for s in stores:
            tg.start_soon(s.open)
    try:
        heads = await stores[0].run_sync(
            lambda conn: conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all(),
            readonly=True,
        )
        assert len(heads) == 1
        record, _ = await stores[1].create_run(NewRun(pipeline="p", version_hash="v", inputs={}))
        assert (await stores[2].get_run(record.id)).id == record.id
    finally:
        for s in stores:
            await s.aclose()
