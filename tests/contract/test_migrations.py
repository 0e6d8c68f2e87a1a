"""Schema migrations: SQLite migrates itself on open; PostgreSQL is checked at every start and
upgraded only by ``tradews db upgrade``; both upgrades are idempotent."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.databases import fresh_pg_database
from tradews.adapters.registry import open_store, upgrade_database
from tradews.adapters.sql import StoreError
from tradews.adapters.sql_schema import VERSION, statements


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "empty.db")
        return
    with fresh_pg_database(upgraded=False) as url:
        yield url


def test_an_empty_database_is_refused_or_migrated_then_upgrades_once(empty_url: str) -> None:
    if empty_url.startswith("postgresql"):
        with pytest.raises(StoreError) as info:
            open_store(empty_url)
        assert str(info.value) == (
            f"the database at {empty_url} is at schema v0, this tradews needs v{VERSION}: "
            f"run `tradews db upgrade --db {empty_url}`"
        )
        assert upgrade_database(empty_url) == (0, list(range(1, VERSION + 1)))
    store = open_store(empty_url)  # SQLite: migrated on open
    store.create_account("acme", "standard", 1)
    store.close()
    assert upgrade_database(empty_url) == (VERSION, [])
    again = open_store(empty_url)
    assert [a.name for a in again.list_accounts()] == ["acme"]
    again.close()


def test_a_database_behind_is_refused_or_migrated_keeping_its_rows(empty_url: str) -> None:
    """A database at the previous release's schema, with rows in it."""
    if empty_url.startswith("postgresql"):
        import psycopg

        from tradews.adapters.postgres import POSTGRESQL

        with psycopg.connect(empty_url, autocommit=True) as db:
            db.execute(
                "CREATE TABLE schema_version (version BIGINT PRIMARY KEY, applied_at BIGINT)"
            )
            for number in range(1, VERSION):
                for statement in statements(number, "postgresql", dict(POSTGRESQL.types)):
                    db.execute(statement.encode())
                db.execute("INSERT INTO schema_version VALUES (%s, 0)", (number,))
            db.execute("INSERT INTO accounts(name, tier, created_at) VALUES ('old', 'standard', 1)")
        with pytest.raises(StoreError, match=f"is at schema v{VERSION - 1}, this tradews needs"):
            open_store(empty_url)
        assert upgrade_database(empty_url) == (VERSION - 1, [VERSION])
    else:
        from tradews.adapters.sql import SQLITE

        with sqlite3.connect(empty_url) as db:
            for number in range(1, VERSION):
                for statement in statements(number, "sqlite", dict(SQLITE.types)):
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {VERSION - 1}")
            db.execute("INSERT INTO accounts(name, tier, created_at) VALUES ('old', 'standard', 1)")
    store = open_store(empty_url)
    assert [a.name for a in store.list_accounts()] == ["old"]
    store.close()
    assert upgrade_database(empty_url) == (VERSION, [])


def test_a_newer_schema_is_refused(db_url: str) -> None:
    store = open_store(db_url)
    with store.db.transaction() as db:
        if db.dialect.name == "sqlite":
            db.execute(f"PRAGMA user_version = {VERSION + 1}")
        else:
            db.execute("INSERT INTO schema_version VALUES (?, 0)", (VERSION + 1,))
    store.close()
    with pytest.raises(StoreError, match="newer than this tradews supports"):
        open_store(db_url)
    with pytest.raises(StoreError, match="newer than this tradews supports"):
        upgrade_database(db_url)
