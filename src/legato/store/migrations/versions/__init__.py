"""Alembic revisions of the legato store, applied in order by ``down_revision``."""
