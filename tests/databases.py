"""Databases for tests: a SQLite file, or a fresh PostgreSQL database made for one test.

PostgreSQL is the one at ``TRADEWS_TEST_PG`` (a URL of its maintenance database; default
``postgresql://postgres@127.0.0.1:5432/postgres``). Each fresh database is created there and
dropped after its test, whatever the test left connected to it. When the server is unreachable
the test is skipped, or fails under ``TRADEWS_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

from tests.conftest import require

MAINTENANCE_URL = os.environ.get("TRADEWS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@functools.cache
def pg_problem() -> str | None:
    """Why PostgreSQL cannot be used for tests, or None."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[dev]')"
    try:
        psycopg.connect(MAINTENANCE_URL, connect_timeout=3, autocommit=True).close()
    except psycopg.Error as exc:
        return f"PostgreSQL at {MAINTENANCE_URL} is unreachable: {str(exc).strip()}"
    return None


def require_pg() -> None:
    problem = pg_problem()
    require(problem is None, problem or "")


def url_of(name: str) -> str:
    """The URL of database ``name`` on the test server."""
    return urlunsplit(urlsplit(MAINTENANCE_URL)._replace(path=f"/{name}"))


@contextlib.contextmanager
def fresh_pg_database(*, upgraded: bool = True) -> Iterator[str]:
    """A new, empty PostgreSQL database (at this release's schema if ``upgraded``); its URL."""
    require_pg()
    import psycopg

    from tradews.adapters.registry import upgrade_database

    name = f"tradews_test_{secrets.token_hex(6)}"
    with psycopg.connect(MAINTENANCE_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        url = url_of(name)
        if upgraded:
            upgrade_database(url)
        yield url
    finally:
        with psycopg.connect(MAINTENANCE_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
