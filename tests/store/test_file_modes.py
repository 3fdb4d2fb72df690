"""A new SQLite store and its WAL and shared-memory files are readable by their owner
only (0600): run inputs, outputs, journal entries and key hashes live there."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from legato.store import RunStore

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_database_wal_and_shm_are_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "legato.db"
    previous = os.umask(0o002)
    try:
        async with RunStore(db):  # migrating writes through the WAL
            files = [db, db.with_name("legato.db-wal"), db.with_name("legato.db-shm")]
            assert all(f.exists() for f in files)
            assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        os.umask(previous)


async def test_an_existing_database_keeps_the_mode_its_owner_chose(tmp_path: Path) -> None:
    db = tmp_path / "legato.db"
    async with RunStore(db):
        pass
    db.chmod(0o640)
    async with RunStore(db):
        pass
    assert mode(db) == 0o640
