"""The console script builds only the command a command line names
(:func:`pgvault.cli.app.command_for`): after any global options, each command's click
object has the same parameters, help and behaviour as in the whole app; with no command
named, ``--help``, ``--version`` or an unknown name, the whole app answers (every command
listed, click's own message for a mistyped one).
"""

from __future__ import annotations

from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from pgvault import __version__
from pgvault.cli.app import app, command_for

WHOLE = typer.main.get_command(app)
NAMES = sorted(WHOLE.commands)  # type: ignore[attr-defined]


def _shape(command: Any) -> Any:
    """What a user sees of a click command: its help, options and subcommands."""
    params = [
        (p.name, tuple(p.opts), tuple(p.secondary_opts), p.required, getattr(p, "help", None))
        for p in command.params
    ]
    subcommands = getattr(command, "commands", {})
    return command.help, params, {n: _shape(c) for n, c in sorted(subcommands.items())}


def test_the_app_has_its_commands_and_groups() -> None:
    assert {"backup", "restore", "list", "files", "wal", "catalog", "users"} <= set(NAMES)
    assert len(NAMES) > 20


@pytest.mark.parametrize("name", NAMES)
def test_each_command_alone_is_the_same_command(name: str) -> None:
    alone = typer.main.get_command(command_for(["-vv", "--config", "list", name, "--help"]))
    assert sorted(alone.commands) == [name]  # type: ignore[attr-defined]
    assert _shape(alone.commands[name]) == _shape(WHOLE.commands[name])  # type: ignore[attr-defined]
    assert _shape(alone)[:2] == _shape(WHOLE)[:2]  # the main command's own options


@pytest.mark.parametrize(
    "argv",
    [[], ["--help"], ["--version"], ["-v", "--help"], ["lst"], ["-x", "list"], ["--config"]],
)
def test_no_command_named_gives_the_whole_app(argv: list[str]) -> None:
    assert command_for(argv) is app


def test_global_options_are_skipped_before_the_name() -> None:
    for argv in (["--config=x.toml", "show", "id"], ["--verbose", "-v", "show"], ["show"]):
        assert sorted(typer.main.get_command(command_for(argv)).commands) == ["show"]  # type: ignore[attr-defined]


def test_help_version_and_mistyped_names_answer_as_the_whole_app() -> None:
    runner = CliRunner()
    listed = runner.invoke(command_for(["--help"]), ["--help"])
    assert listed.exit_code == 0
    assert all(name in listed.output for name in NAMES)
    version = runner.invoke(command_for(["--version"]), ["--version"])
    assert version.exit_code == 0 and version.output == f"pgvault {__version__}\n"
    typo = runner.invoke(command_for(["lst"]), ["lst"])
    assert typo.exit_code == 2 and "No such command 'lst'" in typo.output
    alone = runner.invoke(command_for(["list", "--help"]), ["list", "--help"])
    whole = runner.invoke(app, ["list", "--help"])
    assert alone.exit_code == whole.exit_code == 0 and alone.output == whole.output
