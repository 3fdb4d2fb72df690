"""Fixtures: an open RunStore on SQLite (a fresh file) and on PostgreSQL (the session database)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from legato.store import RunStore


class FakeClock:
    """Epoch seconds that only move when told to (lease expiry in virtual time)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'legato.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store(database_url: str, clock: FakeClock) -> AsyncIterator[RunStore]:
    async with RunStore(database_url, clock=clock) as s:
        yield s


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[RunStore]:
    async with RunStore(tmp_path / "legato.db") as s:
        yield s
