"""The command line loads what a command uses when it runs: importing the CLI app (what
``pgvault --help`` and ``--version`` do) pulls in none of the domain's libraries."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "sqlalchemy",
    "pydantic_settings",
    "psycopg",
    "boto3",
    "apprise",
    "fastapi",
    "uvicorn",
    "prometheus_client",
    "apscheduler",
    "rich",
    "zstandard",
    "pgvault.catalog",
    "pgvault.backups",
    "pgvault.operations",
    "pgvault.config.settings",
)


def test_importing_the_cli_app_loads_no_domain_library() -> None:
    code = (
        "import json, sys; import pgvault.cli.app; "
        "print(json.dumps(sorted(m for m in sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(json.loads(done.stdout))
    assert "typer" in loaded  # the probe did import the app
    assert sorted(m for m in HEAVY if m in loaded) == []


def test_file_progress_off_a_terminal_imports_no_rich() -> None:
    # stderr is a pipe here: the transfer's progress is not drawn, so rich is not imported.
    code = (
        "import json, sys; from pgvault.cli.files import FilesProgress\n"
        "with FilesProgress() as progress: pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'rich')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == []
