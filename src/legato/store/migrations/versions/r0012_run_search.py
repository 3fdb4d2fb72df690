"""Runs carry tags, and a full-text index over their inputs, outputs and errors.

The index is kept by the database itself (triggers), in the same transaction as
the run row, so it can never disagree with the runs table:

- SQLite: ``run_text`` holds the words of each run (the string and number values
  of its inputs and outputs, read with ``json_tree``, and its error and dead-letter
  reason); ``run_text_fts`` is an FTS5 external-content index over it
  (``unicode61``, diacritics folded, no stemming: inputs are in any language).
- PostgreSQL: a ``search`` ``tsvector`` column on ``runs`` ('simple' configuration,
  string and number values through ``jsonb_to_tsvector``) with a GIN index.

Sealed values (encryption at rest, ``legato:enc:...``) are not JSON and are never
indexed: with encryption on, only errors are searchable (decision 0040).

Revision ID: r0012_run_search
Revises: r0011_key_guardrail
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "r0012_run_search"
down_revision: str | None = "r0011_key_guardrail"
branch_labels: str | None = None
depends_on: str | None = None

# At most this many characters of a run's words are indexed (a run over a whole book
# is found by its first 100,000 characters).
_MAX = 100_000


def _sqlite_words(column: str) -> str:
    values = (
        f"(SELECT group_concat(value, ' ') FROM json_tree({column}) "
        "WHERE type IN ('text', 'integer', 'real') AND key NOT IN ('__legato__', 'b64'))"
    )
    return f"(CASE WHEN json_valid({column}) THEN coalesce({values}, '') ELSE '' END)"


_SQLITE_PAYLOAD = f"substr({_sqlite_words('new.inputs')} || ' ' || {_sqlite_words('new.outputs')}, 1, {_MAX})"
_SQLITE_ERROR = f"substr(coalesce(new.error, '') || ' ' || coalesce(new.dead_reason, ''), 1, {_MAX})"

_SQLITE = [
    """CREATE TABLE run_text (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id VARCHAR(64) NOT NULL UNIQUE,
        payload TEXT NOT NULL,
        error TEXT NOT NULL
    )""",
    """CREATE VIRTUAL TABLE run_text_fts USING fts5(
        payload, error, content='run_text', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
    )""",
    """CREATE TRIGGER run_text_fts_ai AFTER INSERT ON run_text BEGIN
        INSERT INTO run_text_fts(rowid, payload, error) VALUES (new.id, new.payload, new.error);
    END""",
    """CREATE TRIGGER run_text_fts_ad AFTER DELETE ON run_text BEGIN
        INSERT INTO run_text_fts(run_text_fts, rowid, payload, error) VALUES ('delete', old.id, old.payload, old.error);
    END""",
    """CREATE TRIGGER run_text_fts_au AFTER UPDATE ON run_text BEGIN
        INSERT INTO run_text_fts(run_text_fts, rowid, payload, error) VALUES ('delete', old.id, old.payload, old.error);
        INSERT INTO run_text_fts(rowid, payload, error) VALUES (new.id, new.payload, new.error);
    END""",
    f"""CREATE TRIGGER runs_text_ai AFTER INSERT ON runs BEGIN
        INSERT INTO run_text(run_id, payload, error) VALUES (new.id, {_SQLITE_PAYLOAD}, {_SQLITE_ERROR});
    END""",
    f"""CREATE TRIGGER runs_text_au AFTER UPDATE OF inputs, outputs, error, dead_reason ON runs BEGIN
        UPDATE run_text SET payload = {_SQLITE_PAYLOAD}, error = {_SQLITE_ERROR} WHERE run_id = new.id;
    END""",
    """CREATE TRIGGER runs_text_ad AFTER DELETE ON runs BEGIN
        DELETE FROM run_text WHERE run_id = old.id;
    END""",
    f"""INSERT INTO run_text(run_id, payload, error)
        SELECT id, {_SQLITE_PAYLOAD.replace("new.", "")}, {_SQLITE_ERROR.replace("new.", "")} FROM runs""",
]

_POSTGRES = [
    f"""CREATE FUNCTION legato_json_words(doc text) RETURNS tsvector LANGUAGE plpgsql IMMUTABLE AS $$
    BEGIN
        IF doc IS NULL OR doc LIKE 'legato:enc:%' THEN
            RETURN ''::tsvector;
        END IF;
        RETURN jsonb_to_tsvector('simple', doc::jsonb, '["string", "numeric"]');
    EXCEPTION WHEN others THEN  -- not JSON PostgreSQL accepts, or too many words: the text itself, bounded
        RETURN to_tsvector('simple', left(doc, {_MAX}));
    END $$""",
    f"""CREATE FUNCTION legato_runs_search() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.search := legato_json_words(NEW.inputs) || legato_json_words(NEW.outputs)
            || to_tsvector('simple', left(coalesce(NEW.error, '') || ' ' || coalesce(NEW.dead_reason, ''), {_MAX}));
        RETURN NEW;
    END $$""",
    "ALTER TABLE runs ADD COLUMN search tsvector",
    """CREATE TRIGGER runs_search BEFORE INSERT OR UPDATE OF inputs, outputs, error, dead_reason ON runs
        FOR EACH ROW EXECUTE FUNCTION legato_runs_search()""",
    "UPDATE runs SET error = error",  # fills the column for the runs already stored
    "CREATE INDEX ix_runs_search ON runs USING gin (search)",
]


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("tags", sa.String(1000), nullable=True))
    dialect = op.get_bind().dialect.name
    for statement in _SQLITE if dialect == "sqlite" else _POSTGRES if dialect == "postgresql" else []:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for trigger in ("runs_text_ai", "runs_text_au", "runs_text_ad"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS run_text_fts")
        op.execute("DROP TABLE IF EXISTS run_text")
    elif dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS runs_search ON runs")
        op.execute("ALTER TABLE runs DROP COLUMN IF EXISTS search")
        op.execute("DROP FUNCTION IF EXISTS legato_runs_search()")
        op.execute("DROP FUNCTION IF EXISTS legato_json_words(text)")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("tags")
