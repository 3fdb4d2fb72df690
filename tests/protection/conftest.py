"""Fixtures: a fresh store URL per test on SQLite and on its own PostgreSQL database
(a store has one key-encryption key, so tests with different keys must not share one)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from legato.store._crypto import new_key_text
from legato.testing.pytest_plugin import fake_provider  # noqa: F401 - the fixture


async def _admin(dsn: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, user=os.environ.get("PGUSER", "postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'legato.db'}"
        return
    admin_dsn = str(request.getfixturevalue("postgres_admin_dsn"))
    name = f"legato_protect_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(admin_dsn, f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@{admin_dsn.split('//')[1].split('/')[0]}/{name}"
    finally:
        asyncio.run(_admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def kek_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh key-encryption key in the environment; returns its reference."""
    name = f"LEGATO_TEST_KEK_{uuid.uuid4().hex[:8].upper()}"
    monkeypatch.setenv(name, new_key_text())
    return f"env:{name}"
