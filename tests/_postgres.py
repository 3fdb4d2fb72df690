"""A throwaway PostgreSQL database for a test: created on the test server, dropped
(with its connections) afterwards."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def throwaway_database(admin_dsn: str) -> Iterator[str]:
    """The name of a new, empty database on the server ``admin_dsn`` points at."""
    import asyncpg

    name = f"legato_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn, user=os.environ.get("PGUSER", "postgres"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
