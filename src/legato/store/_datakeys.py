"""The store's data keys: loaded (and unwrapped) when a store opens, created on the
first encrypted write, re-wrapped by ``legato store rotate-key``. See
:mod:`legato.store._crypto` for the scheme."""

from __future__ import annotations

import os
import secrets
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from legato.config import LegatoConfig
from legato.errors import ConfigError, EncryptionKeyError
from legato.store._crypto import Kek, Sealer, load_kek, register, unwrap, wrap
from legato.store._schema import data_keys

__all__ = ["ENV_KEY", "kek_for", "key_reference", "load_data_keys", "rotate_data_keys"]

ENV_KEY = "LEGATO_STORE_KEY"


def key_reference(explicit: str | None = None, *, config: LegatoConfig | None = None) -> str | None:
    """The KEK reference a store uses: the one given, else ``$LEGATO_STORE_KEY``, else
    ``store.encryption.key`` of ``config`` (default: the ``legato.yaml`` in use);
    ``None``: no encryption."""
    if explicit:
        return explicit
    if os.environ.get(ENV_KEY):
        return os.environ[ENV_KEY]
    try:
        raw = (config or LegatoConfig.load()).raw("store")
    except ConfigError:
        return None  # the commands that need the config report it themselves
    if not isinstance(raw, dict):
        return None
    encryption = raw.get("encryption")
    if isinstance(encryption, dict):
        encryption = encryption.get("key")
    if encryption is None or encryption is False:
        return None
    if not isinstance(encryption, str):
        raise ConfigError("store.encryption.key: write the key reference as env:NAME or file:PATH")
    return encryption


def _rows(conn: Connection) -> list[Any]:
    query = sa.select(data_keys).order_by(data_keys.c.created_at, data_keys.c.id)
    return list(conn.execute(query).mappings().all())


def load_data_keys(conn: Connection, kek: Kek | None, now: float, *, writable: bool, held: list[str]) -> Sealer | None:
    """Register every data key this process can unwrap (their ids are appended to
    ``held``, to release when the store closes); return the one to write with (created
    when ``kek`` is set and none is wrapped by it yet). Without a ``kek`` the store's
    keys are recorded as locked so that reading a sealed value names the key."""
    current: Sealer | None = None
    rows = _rows(conn)
    if kek is not None:
        _check_wrapped_by(kek, rows)
    for row in rows:
        if kek is None:
            register(row["id"], None, reason=_missing(row))
            continue
        current = register(row["id"], unwrap(kek, row["id"], row["wrapped"]))
        held.append(row["id"])
    if kek is None or current is not None or not writable:
        return current
    dek_id, dek = secrets.token_hex(8), secrets.token_bytes(32)
    conn.execute(
        data_keys.insert().values(
            id=dek_id, kek_id=kek.id, kek_ref=kek.ref, wrapped=wrap(kek, dek_id, dek), created_at=now
        )
    )
    held.append(dek_id)
    return register(dek_id, dek)


def _check_wrapped_by(kek: Kek, rows: list[Any]) -> None:
    for row in rows:
        if row["kek_id"] != kek.id:
            raise EncryptionKeyError(
                f"store encryption key {kek.ref} (id {kek.id}) is not the key the store's data key {row['id']} "
                f"is wrapped with ({row['kek_ref']}, id {row['kek_id']}); use that key, or rotate to this one "
                "with `legato store rotate-key`",
                ref=kek.ref,
            )


def _missing(row: Any) -> str:
    return (
        f"the store is encrypted with data key {row['id']}, wrapped by {row['kek_ref']} (id {row['kek_id']}); "
        f"set store.encryption.key in legato.yaml or ${ENV_KEY} to that key reference"
    )


def rotate_data_keys(conn: Connection, old: Kek, new: Kek, now: float) -> int:
    """Re-wrap every data key from ``old`` to ``new`` in one transaction; payloads are
    untouched. Keys already wrapped by ``new`` are left alone (a repeated rotation is a no-op)."""
    count = 0
    for row in _rows(conn):
        if row["kek_id"] == new.id:
            continue
        if row["kek_id"] != old.id:
            raise EncryptionKeyError(
                f"data key {row['id']} is wrapped by {row['kek_ref']} (id {row['kek_id']}), not by {old.ref} "
                f"(id {old.id}): give the key it was written with",
                ref=old.ref,
            )
        dek = unwrap(old, row["id"], row["wrapped"])
        conn.execute(
            data_keys.update()
            .where(data_keys.c.id == row["id"])
            .values(kek_id=new.id, kek_ref=new.ref, wrapped=wrap(new, row["id"], dek), rotated_at=now)
        )
        count += 1
    return count


def kek_for(ref: str | None) -> Kek | None:
    return None if ref is None else load_kek(ref)
