"""Alembic migrations of the legato store (run programmatically by ``RunStore.open``).

See ``README.md`` in this directory for how to add a revision.
"""
