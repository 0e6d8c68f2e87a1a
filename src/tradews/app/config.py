"""Settings: command-line flags, ``TRADEWS_*`` environment variables, and one TOML file.

Every setting is an option of a command, declared once in ``app/cli.py`` with its type, default,
help and environment variable (``TRADEWS_`` + its name in capitals; :func:`name_settings` gives
one to each option of ``serve``, ``engine`` and ``gateway`` that has none). A setting's key in
the file is that variable's name without the prefix, in lower case: ``TRADEWS_DB`` is ``db``,
``TRADEWS_ADMIN_PORT`` is ``admin_port``. The file is read here, checked against the options'
types, and handed to the command line's parser as its defaults (click's ``default_map``), so
the precedence is the parser's own: a flag, then the environment, then the file, then the
option's default. The same file and variables therefore reach ``serve`` and every admin command
(``db`` and ``key_file`` above all), and there is no second schema to keep in step.
"""

from __future__ import annotations

import inspect
import os
import tomllib
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREFIX = "TRADEWS_"
CONFIG_ENV = "TRADEWS_CONFIG"
SERVER_COMMANDS = ("serve", "engine", "gateway")
# Settings whose value is a credential: shown masked, never in full.
SECRET_MARKERS = ("TOKEN", "SECRET", "PRIVATE_KEY", "PASSWORD")


class ConfigError(Exception):
    """A configuration problem, as one line."""


@dataclass(frozen=True)
class Setting:
    key: str  # its name in the file: port, admin_token
    envvar: str  # TRADEWS_PORT
    option: str  # --port
    default: Any
    help: str
    kind: type  # int, float, bool or str
    many: bool  # a list of them (a repeatable option)

    @property
    def secret(self) -> bool:
        return any(marker in self.envvar for marker in SECRET_MARKERS)


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name, command in getattr(group, "commands", {}).items():
        yield (*path, name), command
        yield from _commands(command, (*path, name))


def name_settings(root: Any) -> None:
    """Give every option of the server commands its ``TRADEWS_*`` environment variable."""
    for path, command in _commands(root):
        if path[-1] not in SERVER_COMMANDS or len(path) != 1:
            continue
        for param in command.params:
            if param.envvar is None and not getattr(param, "hidden", False) and param.name:
                param.envvar = PREFIX + param.name.upper()


def settings(root: Any) -> dict[str, Setting]:
    """Every setting of every command, by key (``serve``'s declaration first when several
    commands share one, as ``db`` is)."""
    found: dict[str, Setting] = {}
    ordered = sorted(_commands(root), key=lambda pc: pc[0] != ("serve",))
    for _, command in ordered:
        hints: dict[str, Any] | None = None  # the command's annotations, resolved once
        for param in command.params:
            envvar = param.envvar
            if not isinstance(envvar, str) or not envvar.startswith(PREFIX):
                continue
            key = envvar[len(PREFIX) :].lower()
            if key in found or envvar == CONFIG_ENV:
                continue
            option = max(param.opts, key=len) if param.opts else param.name
            if hints is None:
                hints = typing.get_type_hints(inspect.unwrap(command.callback))
            kind, many = _kind(hints.get(param.name, str))
            found[key] = Setting(key, envvar, option, param.default, param.help or "", kind, many)
    return found


def load(path: str, known: Mapping[str, Setting]) -> dict[str, Any]:
    """The settings in the TOML file at ``path``, checked: each a known key with a value its
    option takes. ConfigError (one line) otherwise."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    values = {}
    for key, value in raw.items():
        setting = known.get(key.replace("-", "_"))
        if setting is None:
            raise ConfigError(
                f"config file {path}: unknown setting {key!r} (`tradews config show` lists them)"
            )
        values[setting.key] = check(setting, value, f"config file {path}: {key}")
    return values


def check(setting: Setting, value: Any, where: str) -> Any:
    """``value`` as ``setting``'s option takes it; ConfigError naming ``where`` otherwise."""
    if setting.many:
        if not isinstance(value, list):
            raise ConfigError(f'{where} must be a list, e.g. ["a", "b"], got {value!r}')
        return [_one(setting.kind, v, where) for v in value]
    return _one(setting.kind, value, where)


_TOML_TYPES: dict[type, tuple[type, ...]] = {int: (int,), float: (int, float), bool: (bool,)}
_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _one(kind: type, value: Any, where: str) -> Any:
    wanted = _TOML_TYPES.get(kind, (str,))
    if not isinstance(value, wanted) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(f"{where} must be {_TYPE_WORDS.get(kind, 'a string')}, got {value!r}")
    return value


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def from_text(setting: Setting, text: str) -> Any:
    """An environment variable's value as its setting's type (what the command line's parser
    makes of it); ConfigError naming the variable otherwise."""
    if setting.many:
        return text.split()
    try:
        if setting.kind is bool:
            if text.strip().lower() not in (*_TRUE, *_FALSE):
                raise ValueError(text)
            return text.strip().lower() in _TRUE
        if setting.kind in (int, float):
            return setting.kind(text)
    except ValueError:
        raise ConfigError(
            f"{setting.envvar} must be {_TYPE_WORDS[setting.kind]}, got {text!r}"
        ) from None
    return text


def _kind(hint: Any) -> tuple[type, bool]:
    """The Python type of a command's parameter, from its annotation (``hint``) with None and
    list taken off, and whether it is a list."""
    many = False
    while True:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        origin = typing.get_origin(hint)
        if origin is list:
            many = True
        if not args:
            break
        hint = args[0]
    return (hint if hint in (int, float, bool) else str), many


def default_map(root: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """The file's values as click's ``default_map``: for each command (nested under its group),
    the values of the settings it has, by its parameters' names."""
    out: dict[str, Any] = {}
    for path, command in _commands(root):
        mine = {}
        for param in getattr(command, "params", []):
            envvar = param.envvar
            if isinstance(envvar, str) and envvar.startswith(PREFIX):
                key = envvar[len(PREFIX) :].lower()
                if key in values:
                    mine[param.name] = values[key]
        if mine:
            node = out
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node.setdefault(path[-1], {}).update(mine)
    return out


def config_path(argv: list[str]) -> tuple[list[str], str | None]:
    """``--config PATH`` (or ``--config=PATH``), wherever it is on the command line, taken out
    of ``argv``; else ``TRADEWS_CONFIG``; else None."""
    rest: list[str] = []
    path = None
    args = iter(argv)
    for arg in args:
        if arg == "--":
            rest.append(arg)
            rest.extend(args)
            break
        if arg == "--config":
            path = next(args, None)
            if path is None:
                raise ConfigError("--config needs a path: --config tradews.toml")
        elif arg.startswith("--config="):
            path = arg.partition("=")[2]
        else:
            rest.append(arg)
    if path is None:
        path = os.environ.get(CONFIG_ENV) or None
    return rest, path


@dataclass(frozen=True)
class Effective:
    key: str
    envvar: str
    value: Any
    source: str  # env, file, default


def effective(
    known: Mapping[str, Setting], values: Mapping[str, Any], environ: Mapping[str, str]
) -> list[Effective]:
    """Each setting's value and where it comes from (no flags: those are per command)."""
    out = []
    for key in sorted(known):
        setting = known[key]
        if setting.envvar in environ:
            value = from_text(setting, environ[setting.envvar])
            out.append(Effective(key, setting.envvar, value, "env"))
        elif key in values:
            out.append(Effective(key, setting.envvar, values[key], "file"))
        else:
            out.append(Effective(key, setting.envvar, setting.default, "default"))
    return out


def shown(setting: Setting, value: Any) -> Any:
    """A value as ``config show`` prints it: secrets masked, a database URL's password too."""
    if value is None:
        return None
    if setting.secret:
        return "***"
    if setting.key == "db" and isinstance(value, str):
        from tradews.adapters.registry import parse_db_url

        try:
            return parse_db_url(value).shown
        except ValueError:
            return value
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return value
