"""Alembic environment of the legato store.

``RunStore.open`` runs the migrations itself, handing this module an open
connection in ``config.attributes["connection"]`` (inside the transaction that
also holds the migration lock). Run from the ``alembic`` command line instead,
it connects to ``sqlalchemy.url`` with the async driver given there.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import async_engine_from_config

from legato.store._schema import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_url() -> None:
    engine = async_engine_from_config(
        config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("legato store migrations run online only (RunStore.open or `alembic upgrade head`)")

_connection = config.attributes.get("connection")
if isinstance(_connection, Connection):
    _run(_connection)
else:
    asyncio.run(_run_from_url())
