"""``legato keys create|list|revoke|spend``: gateway API keys, straight in the store's database.

The secret of a new key is printed once; only its hash is stored.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.markup import escape

from legato.cli._app import app
from legato.cli._console import fail, new_console, new_table
from legato.cli._loop import run_loop

keys_app = typer.Typer(help="Gateway API keys: create, list, revoke, spend.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

T = TypeVar("T")

_CONFIG = typer.Option(None, "--config", "-c", help="legato.yaml (its server.database_url is used).")
_DB = typer.Option(None, "--database-url", help="sqlite:///PATH or postgresql://HOST/DB (overrides the config).")


def _with_store(
    config: Path | None, database_url: str | None, action: Callable[[Any], Awaitable[T]], *, create: bool = False
) -> T:
    """Run ``action`` on the key store; only ``keys create`` (``create=True``) may create the database."""

    from legato.config import LegatoConfig
    from legato.errors import ConfigError, StoreCorrupt, StoreError, StoreNotFound
    from legato.server._keys import KeyStore
    from legato.server._settings import load_settings
    from legato.store._database import connect, migrate, prepare, resolve_url

    async def main() -> T:
        cfg = LegatoConfig.load(config)
        settings = load_settings(cfg, database_url=database_url)
        url = resolve_url(settings.database_url or settings.store_url(cfg.base_dir))
        target, readonly = await prepare(url, create=create)
        engine = connect(target, readonly=readonly)
        try:
            await migrate(engine, url, create=create, readonly=readonly)
            return await action(KeyStore(engine, cache_ttl_s=0))
        finally:
            await engine.dispose()

    try:
        return run_loop(main)
    except (ConfigError, StoreNotFound, StoreCorrupt) as exc:
        raise fail(str(exc), 2) from None
    except (StoreError, ValueError) as exc:
        raise fail(str(exc), 1) from None


async def _audit(store: Any, action: str, key: Any, **detail: Any) -> None:
    """An audit record of a key change made here: the actor is the local owner, the
    client the operating-system user and host that ran the command."""
    import getpass
    import socket

    from legato.server._audit import AuditAction, AuditLog

    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without a passwd entry)
        user = "unknown"
    await AuditLog(store.engine).record(
        AuditAction(action), actor="local", actor_prefix="local", target=key.id,
        client=f"cli {user}@{socket.gethostname()}", detail={"prefix": key.prefix, **detail},
    )  # fmt: skip


@keys_app.command("create")
def create(
    name: str = typer.Argument(..., help="Who or what the key is for."),
    scope: list[str] = typer.Option(["chat"], "--scope", "-s", help="chat, embed, runs:read, runs:write, admin."),
    model: list[str] | None = typer.Option(None, "--model", "-m", help="Allowed model (repeat); default all."),
    rpm: int | None = typer.Option(None, min=0, help="Requests per minute."),
    tpm: int | None = typer.Option(None, min=0, help="Tokens per minute."),
    budget: float | None = typer.Option(None, min=0, help="Budget in USD per period."),
    period: str = typer.Option("month", help="Budget period: day, month or total."),
    guardrail: str | None = typer.Option(
        None,
        "--guardrail",
        help="A guardrail on every call of this key: pii-mask, pii-redact, pii-block, or pii-mask-patterns...",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    config: Path | None = _CONFIG,
    database_url: str | None = _DB,
) -> None:
    """Create a key. Its secret is shown once: store it now."""
    if period not in ("day", "month", "total"):
        raise fail(f"--period must be day, month or total, got {period!r}", 2)

    async def action(store: Any) -> tuple[Any, str]:
        result: tuple[Any, str] = await store.create(
            name,
            scope,
            models=model or None,
            rpm=rpm,
            tpm=tpm,
            budget_usd=budget,
            budget_period=period,
            guardrail=guardrail,
        )
        await _audit(store, "key_created", result[0], name=name, scopes=sorted(result[0].scopes))
        return result

    try:
        from legato.server._keys import SCOPES

        unknown = sorted(set(scope) - set(SCOPES))
        if unknown:
            raise ValueError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}")
        if guardrail is not None:
            from legato.guardrails import names

            if guardrail not in names():
                raise ValueError(f"unknown guardrail {guardrail!r}; known: {', '.join(names())}")
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    key, secret = _with_store(config, database_url, action, create=True)
    if as_json:
        typer.echo(json.dumps({**key.public(), "key": secret}))
        return
    typer.echo(secret)
    typer.echo(
        f"created {key.prefix}... ({key.name}; scopes {', '.join(sorted(key.scopes))}). "
        "The key is shown only now: store it in your secret manager.",
        err=True,
    )


@keys_app.command("list")
def list_keys(
    include_revoked: bool = typer.Option(False, "--all", help="Include revoked keys."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    config: Path | None = _CONFIG,
    database_url: str | None = _DB,
) -> None:
    """List keys (prefix, name, scopes, limits; never the secret)."""

    async def action(store: Any) -> list[Any]:
        result: list[Any] = await store.list(include_revoked=include_revoked)
        return result

    keys = _with_store(config, database_url, action)
    if as_json:
        typer.echo(json.dumps([k.public() for k in keys]))
        return

    table = new_table("prefix", "name", "scopes", "models", "rpm", "tpm", "budget", "status")
    for k in keys:
        budget = f"${k.budget_usd:g}/{k.budget_period}" if k.budget_usd is not None else "-"
        table.add_row(
            k.prefix + "...",
            escape(k.name),
            ",".join(sorted(k.scopes)),
            ",".join(sorted(k.models)) if k.models is not None else "all",
            str(k.rpm) if k.rpm is not None else "-",
            str(k.tpm) if k.tpm is not None else "-",
            budget,
            "revoked" if k.revoked else "active",
        )
    new_console().print(table)


@keys_app.command("revoke")
def revoke(
    key: str = typer.Argument(..., help="Key id or prefix (lg_XXXXXXXXX)."),
    config: Path | None = _CONFIG,
    database_url: str | None = _DB,
    redis_url: str | None = typer.Option(
        None, "--redis-url", help="Redis of the replicas, to tell them at once (default: server.redis_url)."
    ),
) -> None:
    """Revoke a key. Replicas sharing Redis stop accepting it at once; others within server.key_cache_ttl_s."""
    from legato.config import LegatoConfig
    from legato.server._revocation import announce
    from legato.server._settings import load_settings

    announced: list[bool] = []

    async def action(store: Any) -> Any:
        found = await store.revoke(key.removesuffix("..."))
        if found is not None:
            await _audit(store, "key_revoked", found)
            settings = load_settings(LegatoConfig.load(config), redis_url=redis_url)
            if settings.redis_url:
                announced.append(await announce(settings.redis_url, settings.redis_prefix, found.id))
        return found

    found = _with_store(config, database_url, action)
    if found is None:
        raise fail(f"no API key {key!r}", 1)
    typer.echo(f"revoked {found.prefix}... ({found.name})")
    if announced == [False]:
        typer.echo(
            "warning: Redis unreachable; replicas stop accepting the key within server.key_cache_ttl_s", err=True
        )


@keys_app.command("spend")
def spend(
    key: str | None = typer.Option(None, "--key", help="Only this key (id or prefix)."),
    since: str | None = typer.Option(None, help="First day, YYYY-MM-DD."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    config: Path | None = _CONFIG,
    database_url: str | None = _DB,
) -> None:
    """Spend per key, day and model."""

    async def action(store: Any) -> list[dict[str, Any]]:
        key_id = None
        if key is not None:
            found = await store.get(key.removesuffix("..."))
            if found is None:
                raise ValueError(f"no API key {key!r}")
            key_id = found.id
        rows: list[dict[str, Any]] = await store.spend_report(key_id=key_id, since_day=since)
        return rows

    rows = _with_store(config, database_url, action)
    if as_json:
        typer.echo(json.dumps(rows))
        return

    table = new_table("day", "key", "model", "requests", "input tokens", "output tokens", "cost (USD)")
    for r in rows:
        table.add_row(
            r["day"],
            r["prefix"] + "...",
            r["model"],
            str(r["requests"]),
            str(r["input_tokens"]),
            str(r["output_tokens"]),
            f"{r['cost']:.6f}",
        )
    new_console().print(table)
