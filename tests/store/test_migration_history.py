"""The migration history is one line: every revision has one parent, and there is one head.

Two changes that each add a migration on the same parent give alembic two heads; a store
then upgrades to both and records two schema versions. This check needs no database.
"""

from __future__ import annotations

from alembic.config import Config
from alembic.script import ScriptDirectory

from legato.store._database import MIGRATIONS_DIR


def _script() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config)


def test_one_head() -> None:
    assert len(_script().get_heads()) == 1, _script().get_heads()


def test_no_branch_points_and_file_names_follow_revisions() -> None:
    script = _script()
    for rev in script.walk_revisions():
        assert len(rev.nextrev) <= 1, f"{rev.revision} has several children: {sorted(rev.nextrev)}"
        assert rev.module.__file__ is not None
        assert rev.module.__file__.endswith(f"{rev.revision}.py"), (rev.revision, rev.module.__file__)
