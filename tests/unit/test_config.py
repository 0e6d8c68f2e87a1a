"""The settings table in docs/operations.md is the settings `tradews config show` lists, with
their defaults; and `--config` is found wherever it is on the command line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer

from tradews.app import config
from tradews.app.cli import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def known() -> dict[str, config.Setting]:
    command = typer.main.get_command(app)
    config.name_settings(command)
    return config.settings(command)


def test_every_setting_is_documented_with_its_default() -> None:
    text = DOC.read_text()
    table = text[text.index("<!-- settings:") :].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| `([A-Z_]+)` \| `([^`]+)` \| `([^`]+)` \|", table,
                      flags=re.MULTILINE)  # fmt: skip
    expected = [
        (s.key, s.envvar, s.option, "none" if s.default is None else json.dumps(s.default))
        for _, s in sorted(known().items())
    ]
    assert rows == expected


def test_every_server_option_is_a_setting() -> None:
    command = typer.main.get_command(app)
    config.name_settings(command)
    settings = {s.envvar for s in config.settings(command).values()}
    for role in config.SERVER_COMMANDS:
        for param in command.commands[role].params:
            if not getattr(param, "hidden", False):
                assert param.envvar in settings, (role, param.name)


@pytest.mark.parametrize(
    ("argv", "rest", "path"),
    [
        (["serve", "--config", "a.toml", "--port", "1"], ["serve", "--port", "1"], "a.toml"),
        (["--config=b.toml", "account", "list"], ["account", "list"], "b.toml"),
        (["deposit", "x", "USD", "1", "--", "--config"], ["deposit", "x", "USD", "1", "--",
                                                          "--config"], None),
    ],
)  # fmt: skip
def test_config_is_found_anywhere_on_the_line(
    argv: list[str], rest: list[str], path: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(config.CONFIG_ENV, raising=False)
    assert config.config_path(argv) == (rest, path)


def test_config_without_a_path_is_refused() -> None:
    with pytest.raises(config.ConfigError, match="--config needs a path"):
        config.config_path(["serve", "--config"])
