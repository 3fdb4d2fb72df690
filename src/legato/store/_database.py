"""Connecting to the store's database and bringing its schema up to date.

SQLite (the default, ``./.legato/legato.db``) runs in WAL mode with
``synchronous=FULL``: a committed checkpoint survives a power cut, and readers
(``legato runs list``) never block the writer. Write transactions start with
``BEGIN IMMEDIATE`` so two processes never deadlock upgrading a read lock; a
busy database is waited for (``busy_timeout``), not reported as an error.

A new database file is created with mode 0600 (its WAL and shared-memory files
follow), and statement parameters never appear in logged database errors
(``hide_parameters``): they may hold key hashes or run inputs.

Opening never resets anything. A file that is not SQLite, a SQLite file of some
other application, or a store written by a newer legato raises
:class:`~legato.errors.StoreCorrupt` naming the file and what was found.

Commands that only read open with ``create=False``: a store that does not exist
raises :class:`~legato.errors.StoreNotFound` (a mistyped path is an error, not an
empty store), and a SQLite file that cannot be written (read-only file, directory
or file system) is opened read-only (``mode=ro``; ``immutable=1`` when even the WAL
index cannot be created, which on a read-only file system nobody else can change).
A full disk raises :class:`~legato.errors.StoreFull`: the transaction that failed
wrote nothing and everything committed before it is kept.

Migrations are alembic revisions shipped in ``legato/store/migrations`` and run
here, under a lock (the SQLite write lock, a PostgreSQL advisory lock), so many
processes opening a fresh database at once migrate it exactly once. A database
already at the newest revision is recognised with one query, without loading
alembic (with Mako and Pygments, about 10 MB a process keeps): the history is one
line and each file is named after its revision (``rNNNN_name.py``), so the newest
file names the head (``tests/store/test_migration_history.py`` checks both).

A new or older database needs alembic, once. A process that serves for long
(``legato serve``, ``legato worker``, ``legato mcp``: ``RunStore.open(migrate_in_child=True)``)
leaves that once to a short-lived child process (``migrate(..., in_child=True)``):
the child runs this same :func:`migrate`, so it takes the same lock and raises the
same errors, which reach the caller as the same classes with the same messages
(:mod:`legato._store_upgrade` has the protocol), and the server never imports
alembic. The child is opt-in (decision 0050): a program using the library, a test
or a short command migrates in its own process, as before: the child costs about
1.1 s of CPU against 0.35 s for importing alembic and migrating in process, and a
process that ends soon gains nothing from the 10 MB. An in-memory
SQLite database, private to its connection, is always migrated in process.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import anyio
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool

from legato.errors import ConfigError, StoreCorrupt, StoreError, StoreFull, StoreNotFound

__all__ = [
    "DEFAULT_DATABASE_URL",
    "connect",
    "connect_sqlite_sync",
    "migrate",
    "prepare",
    "resolve_url",
    "sqlite_path",
    "translate_error",
]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///.legato/legato.db"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_APPLICATION_ID = 0x4C47544F  # "LGTO", set by revision 0001_runs
_SQLITE_MAGIC = b"SQLite format 3\x00"
_PG_MIGRATION_LOCK = 0x4C47544F  # pg_advisory_xact_lock key held while migrating
READONLY = {"legato_readonly": True}  # execution option: plain BEGIN instead of BEGIN IMMEDIATE


def resolve_url(url: str | None = None) -> str:
    """The SQLAlchemy async URL for ``url``: ``None`` -> ``$LEGATO_DATABASE_URL``, the
    ``store.url`` of ``legato.yaml`` or ``./.legato/legato.db``; ``postgresql://`` -> asyncpg; ``sqlite:///`` and a bare
    file path -> aiosqlite."""
    if not url:
        from legato.store._configured import configured_url

        url = os.environ.get("LEGATO_DATABASE_URL") or configured_url() or DEFAULT_DATABASE_URL
    if "://" not in url:
        url = f"sqlite+aiosqlite:///{url}"
    for prefix, driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(prefix):
            url = driver + url[len(prefix) :]
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"invalid database URL {url!r}: {exc}") from exc
    if parsed.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise ConfigError(
            f"unsupported database URL scheme {parsed.drivername!r}: use sqlite:///PATH or postgresql://HOST/DB"
        )
    return url


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


async def prepare(url: str, *, create: bool) -> tuple[str, bool]:
    """The URL to connect to for ``url`` and whether it is read-only.

    ``create=False`` (commands that only read): a SQLite file that does not exist
    raises :class:`StoreNotFound`; one that cannot be written is opened read-only.
    """
    path = sqlite_path(url)
    if path is None or create:
        return url, False
    return await anyio.to_thread.run_sync(_prepare_existing, url, path)


def _prepare_existing(url: str, path: Path) -> tuple[str, bool]:
    if not path.is_file() or path.stat().st_size == 0:
        shown = repr(str(path)) + ("" if path.is_absolute() else f" ({path.absolute()})")
        raise StoreNotFound(
            f"no store at {shown}: nothing has run with this database yet. "
            "Check the path (--database-url or $LEGATO_DATABASE_URL); `legato run` and `legato serve` create a store"
        )
    if _writable(path):
        return url, False
    target = f"file:{quote(str(path.absolute()))}"
    mode = "mode=ro"
    try:  # a WAL database needs its -shm index; where it cannot be created, nobody can write either
        probe = sqlite3.connect(f"{target}?{mode}", uri=True)
        try:
            probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            probe.close()
    except sqlite3.OperationalError:
        mode = "mode=ro&immutable=1"
    return str(make_url(url).set(database=target)) + f"?{mode}&uri=true", True


def _writable(path: Path) -> bool:
    if not os.access(path, os.W_OK):
        return False
    shm = path.with_name(path.name + "-shm")
    return os.access(path.parent, os.W_OK) or (shm.exists() and os.access(shm, os.W_OK))


def connect(url: str, *, echo: bool = False, readonly: bool = False) -> AsyncEngine:
    """An engine for ``url`` (see :func:`resolve_url` and :func:`prepare`). Connects lazily."""
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_async_engine(url, echo=echo, hide_parameters=True, connect_args={"timeout": 30.0})
        _configure_sqlite(engine.sync_engine, readonly=readonly)
        return engine
    return create_async_engine(url, echo=echo, hide_parameters=True, pool_pre_ping=True, pool_size=10, max_overflow=20)


def connect_sqlite_sync(url: str, *, echo: bool = False, readonly: bool = False) -> Engine:
    """A synchronous (pysqlite) engine on the SQLite file of ``url``, configured like
    :func:`connect`. The store runs whole transactions on it in a worker thread: one
    thread hop per transaction instead of one per statement (aiosqlite)."""
    parsed = make_url(url).set(drivername="sqlite+pysqlite")
    engine = sa.create_engine(
        parsed,
        echo=echo,
        hide_parameters=True,
        connect_args={"timeout": 30.0, "check_same_thread": False},
        poolclass=QueuePool,
    )
    _configure_sqlite(engine, readonly=readonly)
    return engine


def _configure_sqlite(engine: Engine, *, readonly: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA busy_timeout = 30000")
            if not readonly:  # the journal mode is the writer's to set
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        plain = readonly or conn.get_execution_options().get("legato_readonly")
        conn.exec_driver_sql("BEGIN" if plain else "BEGIN IMMEDIATE")


def translate_error(exc: BaseException, url: str) -> StoreError:
    """The store error for a database exception (damaged file -> StoreCorrupt, full disk -> StoreFull)."""
    text = str(getattr(exc, "orig", None) or exc)
    where = _describe(url)
    if any(s in text for s in ("file is not a database", "malformed", "not a database")):
        return StoreCorrupt(f"{where} is damaged or is not a SQLite database ({text}); it was left untouched")
    if "disk is full" in text or "No space left" in text or ("disk I/O error" in text and _disk_full(url)):
        return StoreFull(
            f"{where}: the disk is full{_free_space(url)}; the failed write was not made and everything "
            "committed before it is kept"
        )
    if "readonly database" in text or "read-only file system" in text or _cannot_write(url, text):
        return StoreError(f"{where} is read-only (the file, its directory or its file system cannot be written)")
    return StoreError(f"{where}: {text}")


def _cannot_write(url: str, text: str) -> bool:
    """SQLite says only "unable to open database file" when a writer cannot create its WAL files."""
    path = sqlite_path(url)
    return "unable to open database file" in text and path is not None and path.exists() and not _writable(path)


def _disk_full(url: str) -> bool:
    """SQLite reports a full disk while growing its WAL index as an I/O error: check the space."""
    path = sqlite_path(url)
    try:
        return path is not None and shutil.disk_usage(path.absolute().parent).free < 256 * 1024
    except OSError:
        return False


def _free_space(url: str) -> str:
    path = sqlite_path(url)
    if path is None:
        return ""
    try:
        free = shutil.disk_usage(path.absolute().parent).free
    except OSError:
        return ""
    return f" ({free // 1024} KiB free on the file system of {str(path.absolute().parent)!r})"


def _describe(url: str) -> str:
    path = sqlite_path(url)
    if path is not None:
        return f"store {str(path)!r}"
    return f"store {make_url(url).render_as_string(hide_password=True)!r}"


async def _check_sqlite_file(path: Path) -> None:
    def read_header() -> bytes | None:
        if not path.exists() or path.stat().st_size == 0:
            return None
        with path.open("rb") as f:
            return f.read(len(_SQLITE_MAGIC))

    header = await anyio.to_thread.run_sync(read_header)
    if header is not None and header != _SQLITE_MAGIC:
        raise StoreCorrupt(
            f"store {str(path)!r} is not a SQLite database (it starts with {header[:16]!r}); "
            "it was left untouched: point --database-url at another file or move this one away"
        )


def _create_private(path: Path) -> None:
    """Create a new database file readable and writable by its owner only (0600);
    SQLite gives the ``-wal``, ``-shm`` and ``-journal`` files the mode of the database.
    An existing file keeps the mode its owner chose."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # unwritable directory or file system: SQLite's own open fails next and is reported
    os.close(fd)


async def migrate(
    engine: AsyncEngine, url: str, *, create: bool = True, readonly: bool = False, in_child: bool = False
) -> bool:
    """Check that the database is a legato store (or empty) and upgrade it to the
    newest revision. Raises :class:`StoreCorrupt` for foreign or damaged databases,
    :class:`StoreNotFound` for a database without a store when ``create`` is false.
    A ``readonly`` store is checked, never upgraded. Returns whether the schema was
    created or upgraded (by this call).

    ``in_child``: a database that is not at the newest revision is checked and
    upgraded by a short-lived child process (:mod:`legato._store_upgrade`), so this
    process never imports alembic; its errors arrive here as the same classes with the
    same messages. An in-memory SQLite database, which a child cannot see, is
    migrated here as without ``in_child``."""
    path = sqlite_path(url)
    if path is not None and not readonly:
        if create:
            await anyio.to_thread.run_sync(lambda: path.parent.mkdir(parents=True, exist_ok=True))
            await anyio.to_thread.run_sync(_create_private, path)
        await _check_sqlite_file(path)
    in_child = in_child and _child_can_migrate(url)
    try:
        async with engine.begin() as conn:
            state = await conn.run_sync(_migrate_sync, _describe(url), create, readonly, not in_child)
    except StoreError:
        raise
    except DBAPIError as exc:
        raise translate_error(exc, url) from exc
    except OSError as exc:
        raise StoreError(f"{_describe(url)}: cannot open: {exc}") from exc
    if state == "pending":  # the lock is released: the child takes it (and checks again) under its own
        from legato._store_upgrade import migrate_in_child

        return await migrate_in_child(
            engine.url.render_as_string(hide_password=False), url, create=create, readonly=readonly
        )
    return state == "upgraded"


def _child_can_migrate(url: str) -> bool:
    """Whether a child process can open the database of ``url``: not an in-memory
    SQLite database (private to its connection), and this interpreter can be started again."""
    return bool(sys.executable) and (make_url(url).get_backend_name() != "sqlite" or sqlite_path(url) is not None)


def newest_revision() -> str:
    """The head of the migration history: the newest ``rNNNN_*.py`` file's name."""
    return max(p.stem for p in (MIGRATIONS_DIR / "versions").glob("r[0-9][0-9][0-9][0-9]_*.py"))


def _at_newest(conn: Connection) -> bool:
    """Whether the database records exactly the newest revision (one plain query)."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return False
    versions = {row[0] for row in conn.execute(sa.text("SELECT version_num FROM alembic_version"))}
    return versions == {newest_revision()}


MigrationState = Literal["current", "upgraded", "pending"]


def _migrate_sync(conn: Connection, where: str, create: bool, readonly: bool, upgrade: bool) -> MigrationState:
    """Under the migration lock: "current" (at the newest revision), "upgraded" (checked
    and upgraded here), or, when ``upgrade`` is false, "pending" (the check and upgrade,
    which load alembic, are left to the caller)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
    elif dialect == "sqlite":
        app_id = conn.exec_driver_sql("PRAGMA application_id").scalar()
        if app_id not in (0, SQLITE_APPLICATION_ID, None):
            raise StoreCorrupt(
                f"{where} belongs to another application (SQLite application_id {app_id:#x}); it was left untouched"
            )
    if _at_newest(conn):
        return "current"
    if not upgrade:
        return "pending"
    return "upgraded" if _check_and_upgrade(conn, where, create, readonly) else "current"


def _check_and_upgrade(conn: Connection, where: str, create: bool, readonly: bool) -> bool:
    """Check what the database holds and upgrade it; whether it was upgraded."""
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(config)
    tables = set(sa.inspect(conn).get_table_names())
    if not tables and not create:
        raise StoreNotFound(
            f"{where} holds no legato store: nothing has run with this database yet. Check --database-url "
            "or $LEGATO_DATABASE_URL; `legato run` and `legato serve` create a store"
        )
    current = set(MigrationContext.configure(conn).get_current_heads())
    if tables and "alembic_version" not in tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreCorrupt(
            f"{where} is not a legato store: it has tables ({shown}) but no schema version; it was left untouched"
        )
    known = {rev.revision for rev in script.walk_revisions()}
    unknown = current - known
    if unknown:
        raise StoreCorrupt(
            f"{where} has schema revision {', '.join(sorted(unknown))}, which this legato does not know "
            "(written by a newer version?); upgrade legato or use another database"
        )
    if current == set(script.get_heads()):
        return False
    if readonly:
        raise StoreError(
            f"{where} was written by an older legato and needs a schema upgrade, which a read-only store "
            "cannot get: run any command that writes (e.g. `legato runs recover`) once with write access"
        )
    from alembic import command

    config.attributes["connection"] = conn
    command.upgrade(config, "heads")
    return True
