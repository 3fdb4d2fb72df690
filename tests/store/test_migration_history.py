"""The migration history is one line: every revision has one parent, and there is one head.

Two changes that each add a migration on the same parent give alembic two heads; a store
then upgrades to both and records two schema versions. These checks need no database,
but the last: a store already at the newest revision opens without loading alembic,
which relies on the newest file naming the head.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from legato.store._database import MIGRATIONS_DIR, newest_revision


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


def test_the_newest_file_names_the_head() -> None:
    assert [newest_revision()] == list(_script().get_heads())


OPEN_TWICE = """
import sys, anyio
from legato.store import RunStore

async def main(url):
    for _ in range(2):
        store = RunStore(url)
        await store.open()
        await store.aclose()
        print("alembic" in sys.modules)

anyio.run(main, sys.argv[1])
"""


def test_a_store_at_the_newest_revision_opens_without_alembic(tmp_path: Path) -> None:
    """One process creates (and migrates) the store; a second opens it with one query."""
    url = f"sqlite:///{tmp_path / 'legato.db'}"
    first = subprocess.run([sys.executable, "-c", OPEN_TWICE, url], capture_output=True, text=True, check=True)
    assert first.stdout.split() == ["True", "True"]
    again = subprocess.run([sys.executable, "-c", OPEN_TWICE, url], capture_output=True, text=True, check=True)
    assert again.stdout.split() == ["False", "False"]
