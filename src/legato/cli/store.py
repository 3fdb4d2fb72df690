"""``legato store``: the run store's encryption keys (new-key, rotate-key, status)."""

from __future__ import annotations

import typer

from legato.cli._app import app
from legato.cli._console import fail, new_console
from legato.cli._loop import run_loop
from legato.cli.runs import DATABASE_URL_HELP, open_store

__all__ = ["store_app"]

store_app = typer.Typer(name="store", help="The run store: encryption keys.", no_args_is_help=True)
app.add_typer(store_app)

_DB = typer.Option(None, "--database-url", help=DATABASE_URL_HELP)


@store_app.command("new-key")
def new_key() -> None:
    """Print a fresh 32-byte key-encryption key (base64). Keep it in a secret store and
    name it in legato.yaml as store.encryption.key: env:NAME or file:PATH."""
    from legato.store._crypto import new_key_text

    typer.echo(new_key_text())


@store_app.command("rotate-key")
def rotate_key(
    to: str = typer.Option(..., "--to", help="The new key's reference: env:NAME or file:PATH."),
    key: str | None = typer.Option(
        None, "--key", help="The current key's reference (default: $LEGATO_STORE_KEY or store.encryption.key)."
    ),
    database_url: str | None = _DB,
) -> None:
    """Re-wrap the store's data keys with a new key-encryption key. Stored values are not
    rewritten; afterwards point store.encryption.key (or $LEGATO_STORE_KEY) at the new key."""
    from legato.errors import ConfigError, EncryptionKeyError, StoreError

    async def rotate() -> int:
        async with open_store(database_url, encryption_key=key) as store:
            return await store.rotate_key(to)

    try:
        count = run_loop(rotate)
    except (ConfigError, EncryptionKeyError) as exc:
        raise fail(str(exc), 2) from None
    except StoreError as exc:
        raise fail(str(exc), 1) from None
    new_console().print(f"re-wrapped {count} data key{'s' if count != 1 else ''} with {to}")


@store_app.command("status")
def status(
    key: str | None = typer.Option(None, "--key", help="The key's reference (default: the configured one)."),
    database_url: str | None = _DB,
) -> None:
    """Whether the store encrypts what it writes, and with which key reference."""

    async def read() -> str | None:
        async with open_store(database_url, encryption_key=key) as store:
            return store.encryption_key if store.encrypted else None

    ref = run_loop(read)
    new_console().print(f"encryption: on ({ref})" if ref else "encryption: off")
