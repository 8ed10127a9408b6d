"""The catalog's HEAD_REVISION constant names Alembic's newest migration."""

from __future__ import annotations

from alembic.config import Config
from alembic.script import ScriptDirectory

from pgvault.catalog import HEAD_REVISION, MIGRATIONS


def test_head_revision_matches_the_migration_scripts() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD_REVISION]
