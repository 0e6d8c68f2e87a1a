"""Every command's --help renders (option help is rich markup: a stray bracket breaks it), and
`tradews engine` / `tradews gateway` take serve's options with their environment variables."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tradews.app.cli import app


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        path = (*prefix, name)
        found.append(path)
        if hasattr(command, "commands"):  # a group of its own
            found.extend(_commands(command, path))
    return found


COMMANDS = _commands(typer.main.get_command(app))


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_renders(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize("role", ["engine", "gateway"])
def test_the_roles_take_serves_options_and_environment(role: str) -> None:
    serve = typer.main.get_command(app).commands["serve"]
    command = typer.main.get_command(app).commands[role]
    options = {p.name: p for p in serve.params if p.name != "role"}
    mine = {p.name: p for p in command.params}
    assert mine.keys() == options.keys()
    for name, option in options.items():
        assert mine[name].envvar == option.envvar, name
        assert mine[name].default == option.default, name
    assert mine["db"].envvar == "TRADEWS_DB" and mine["bus"].envvar == "TRADEWS_BUS"
