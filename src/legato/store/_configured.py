"""The store ``legato.yaml`` names: ``store: {url: ...}``.

One reading for every entry point: ``legato`` commands without ``--database-url``,
:class:`RunStore` without a URL, the gateway without ``server.database_url``, and
runs started from Python (``await pipeline.run()``), which the engine hands to
:func:`open_configured_store` through its recorder hook
(:mod:`legato.engine._recording`) so that they are recorded like ``legato run``'s.

``url`` is a SQLite path, ``sqlite:///PATH`` or ``postgresql://HOST/DB`` (or an
``env:NAME`` reference to one); a relative SQLite path is relative to the folder of
the ``legato.yaml`` that names it, as ``uses:`` paths are relative to their file.
``$LEGATO_DATABASE_URL`` still comes first, so one variable moves every entry point.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from legato.config import LegatoConfig, resolve_env
from legato.errors import ConfigError

__all__ = ["configured_url", "open_configured_store"]


def configured_url(config: LegatoConfig | None = None) -> str | None:
    """``store.url`` of ``config`` (default: the ``legato.yaml`` in use), relative
    SQLite paths made absolute against its folder; ``None`` when it names none."""
    try:
        config = config if config is not None else LegatoConfig.load()
    except ConfigError:
        return None  # the commands that read the config report it themselves
    raw = config.raw("store")
    url = raw.get("url") if isinstance(raw, dict) else None
    if url is None:
        return None
    where = f"{config.source or 'legato.yaml'}: store.url"
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{where}: write the database as a SQLite path or a postgresql:// URL")
    value = resolve_env(url)
    if value is None:
        raise ConfigError(f"{where}: the environment variable {url[4:]} is not set")
    return _beside(str(value), config.base_dir)


def _beside(url: str, base_dir: Path) -> str:
    for prefix in ("sqlite:///", "sqlite+aiosqlite:///"):
        if url.startswith(prefix):
            path = url[len(prefix) :]
            return prefix + str(base_dir / path) if path and not os.path.isabs(path) else url
    if "://" not in url and not os.path.isabs(url):
        return str(base_dir / url)
    return url


@asynccontextmanager
async def open_configured_store(config: LegatoConfig) -> AsyncIterator[object]:
    """The store ``config`` names, open for one run and closed after it (the
    recorder hook's target: the engine records a Python run in it)."""
    from legato.store._datakeys import key_reference
    from legato.store._runs import RunStore

    url = os.environ.get("LEGATO_DATABASE_URL") or configured_url(config)
    async with RunStore(url, encryption_key=key_reference(config=config)) as store:
        yield store
