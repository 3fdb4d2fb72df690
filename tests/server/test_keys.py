"""API keys in the store's database (SQLite and PostgreSQL), and the ``legato keys`` commands."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from legato.cli import app as cli
from legato.errors import InvalidAPIKey
from legato.server import KeyStore
from legato.store import RunStore


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'keys.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[RunStore]:
    async with RunStore(database_url) as s:
        yield s


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_create_authenticate_revoke(store: RunStore) -> None:
    keys = KeyStore(store.engine, cache_ttl_s=0)
    key, secret = await keys.create("ci", ["chat", "runs:read"], models=["gpt-fake"], rpm=60, budget_usd=5.0)
    assert secret.startswith("lg_")
    assert len(secret) == 43
    assert key.prefix == secret[:12]
    found = await keys.authenticate(secret)
    assert found.id == key.id
    assert found.scopes == frozenset({"chat", "runs:read"})
    assert found.models == frozenset({"gpt-fake"})
    assert (found.rpm, found.budget_usd, found.budget_period) == (60, 5.0, "month")
    # Only the hash is stored: the secret is nowhere in the table.
    async with store.engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT * FROM api_keys"))).all()
    assert rows
    assert secret not in json.dumps([list(map(str, r)) for r in rows])
    # A wrong secret with the right prefix is refused.
    with pytest.raises(InvalidAPIKey):
        await keys.authenticate(secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    for bad in ("", "lg_short", "sk-" + "x" * 40, secret + "x"):
        with pytest.raises(InvalidAPIKey):
            await keys.authenticate(bad)
    revoked = await keys.revoke(key.prefix)
    assert revoked is not None
    assert revoked.revoked
    with pytest.raises(InvalidAPIKey, match="revoked"):
        await keys.authenticate(secret)
    assert key.id not in [k.id for k in await keys.list()]
    assert key.id in [k.id for k in await keys.list(include_revoked=True)]
    assert await keys.revoke("lg_nonexistent") is None


async def test_scopes_are_checked(store: RunStore) -> None:
    keys = KeyStore(store.engine)
    with pytest.raises(ValueError, match="unknown scope"):
        await keys.create("x", ["chat", "sudo"])
    with pytest.raises(ValueError, match="at least one scope"):
        await keys.create("x", [])


async def test_revocation_reaches_other_replicas_within_the_cache_ttl(store: RunStore) -> None:
    clock = Clock()
    replica_a = KeyStore(store.engine, cache_ttl_s=5, clock=clock)
    replica_b = KeyStore(store.engine, cache_ttl_s=5, clock=clock)
    key, secret = await replica_a.create("shared", ["chat"])
    assert (await replica_b.authenticate(secret)).id == key.id
    await replica_a.revoke(key.id)
    with pytest.raises(InvalidAPIKey):
        await replica_a.authenticate(secret)  # immediate where it was revoked
    assert (await replica_b.authenticate(secret)).id == key.id  # B still trusts its cache...
    clock.now += 5.1
    with pytest.raises(InvalidAPIKey):
        await replica_b.authenticate(secret)  # ...for at most the TTL


def test_cli_create_list_revoke(tmp_path: Path) -> None:
    runner = CliRunner()
    db = ["--database-url", f"sqlite:///{tmp_path / 'cli.db'}"]
    made = runner.invoke(
        cli, ["keys", "create", "deploy-bot", "-s", "chat", "-s", "embed", "--rpm", "30", "--json", *db]
    )
    assert made.exit_code == 0, made.output
    created = json.loads(made.stdout)
    assert created["key"].startswith(created["prefix"])
    listed = runner.invoke(cli, ["keys", "list", "--json", *db])
    assert listed.exit_code == 0
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["scopes"], r["rpm"]) for r in rows] == [("deploy-bot", ["chat", "embed"], 30)]
    assert created["key"] not in listed.stdout
    revoked = runner.invoke(cli, ["keys", "revoke", created["prefix"], *db])
    assert revoked.exit_code == 0
    assert "revoked" in revoked.stdout
    assert json.loads(runner.invoke(cli, ["keys", "list", "--json", *db]).stdout) == []
    assert runner.invoke(cli, ["keys", "revoke", "lg_missing00", *db]).exit_code == 1
    bad = runner.invoke(cli, ["keys", "create", "x", "-s", "root", *db])
    assert bad.exit_code == 2
    assert "unknown scope" in bad.output
    table = runner.invoke(cli, ["keys", "create", "human", *db])
    assert table.exit_code == 0
    assert table.stdout.strip().startswith("lg_")


def test_cli_key_changes_are_audited_as_the_local_owner(tmp_path: Path) -> None:
    import anyio

    from legato.server import AuditLog, AuditRecord
    from legato.store import RunStore

    async def audit_records() -> list[AuditRecord]:
        async with RunStore(tmp_path / "audit.db") as store:
            return await AuditLog(store.engine).list()

    runner = CliRunner()
    db = ["--database-url", f"sqlite:///{tmp_path / 'audit.db'}"]
    made = runner.invoke(cli, ["keys", "create", "ops-bot", "-s", "chat", "--json", *db])
    assert made.exit_code == 0, made.output
    created = json.loads(made.stdout)
    assert runner.invoke(cli, ["keys", "revoke", created["prefix"], *db]).exit_code == 0
    records = anyio.run(audit_records)
    assert [(r.action, r.actor, r.target) for r in records] == [
        ("key_revoked", "local", created["id"]),
        ("key_created", "local", created["id"]),
    ]
    assert all(r.client is not None and r.client.startswith("cli ") for r in records)
    assert created["key"] not in str([r.public() for r in records])


async def test_an_expired_cache_entry_is_looked_up_once_for_every_caller_waiting_on_it(store: RunStore) -> None:
    """50 requests that find the same key expired share one query (not 50)."""
    clock = Clock()
    keys = KeyStore(store.engine, cache_ttl_s=5, clock=clock)
    _, secret = await keys.create("busy", ["chat"])
    await keys.authenticate(secret)
    clock.now += 5.1
    lookups: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "FROM api_keys" in statement:
            lookups.append(statement)

    sa.event.listen(store.engine.sync_engine, "before_cursor_execute", count)
    try:
        found: list[str] = []
        async with anyio.create_task_group() as tg:
            for _ in range(50):

                async def one() -> None:
                    found.append((await keys.authenticate(secret)).name)

                tg.start_soon(one)
    finally:
        sa.event.remove(store.engine.sync_engine, "before_cursor_execute", count)
    assert found == ["busy"] * 50
    assert len(lookups) == 1
