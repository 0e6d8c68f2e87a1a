"""Database URLs, and what the default install loads: SQLite never brings psycopg in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tradews.adapters.registry import POSTGRESQL, SQLITE, parse_db_url


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("tradews.db", "tradews.db"),
        ("/srv/tradews/tradews.db", "/srv/tradews/tradews.db"),
        ("./data/x.db", "data/x.db"),
        ("sqlite:///srv/tradews.db", "/srv/tradews.db"),
        ("sqlite:////srv/tradews.db", "/srv/tradews.db"),
        ("sqlite:data/tradews.db", "data/tradews.db"),
        ("SQLite:x.db", "x.db"),
    ],
)
def test_sqlite_paths_and_urls(text: str, path: str) -> None:
    url = parse_db_url(text)
    assert (url.scheme, url.path, url.text, url.shown) == (SQLITE, Path(path), text, text)


@pytest.mark.parametrize(
    "text", ["postgresql://tradews@db.internal:5432/tradews", "postgres://localhost/tw"]
)
def test_postgresql_urls(text: str) -> None:
    url = parse_db_url(text)
    assert (url.scheme, url.path, url.text, url.shown) == (POSTGRESQL, None, text, text)


def test_a_password_is_not_shown() -> None:
    url = parse_db_url("postgresql://tw:s3cret@db:5432/tradews?sslmode=require")
    assert url.shown == "postgresql://tw:***@db:5432/tradews?sslmode=require"
    assert "s3cret" in url.text  # kept to connect with


@pytest.mark.parametrize(
    "text",
    ["", "  ", "mysql://db/x", "memory://", "nats://localhost:4222", "sqlite://host/x.db",
     "sqlite:", "sqlite:///", "postgresql:tradews", "http://x/y"],
)  # fmt: skip
def test_anything_else_is_refused_in_one_line(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_db_url(text)
    message = str(info.value)
    assert "\n" not in message and "postgresql://" in message


def test_the_cli_and_a_sqlite_store_do_not_import_psycopg(tmp_path: Path) -> None:
    """psycopg is an optional extra: the default install and `serve --demo` never load it."""
    code = (
        "import sys\n"
        "import tradews.app.cli\n"
        "from tradews.adapters.registry import open_archive, open_journal, open_lease, open_store\n"
        f"url = {str(tmp_path / 'x.db')!r}\n"
        "store = open_store(url)\n"
        "open_journal(store.url).last_seq(); open_archive(store.url); open_lease(store.url)\n"
        "import tradews.app.server, tradews.app.funds\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'asyncpg'))\n"
        "assert not loaded, loaded\n"
        "assert 'tradews.adapters.postgres' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
