"""A PostgreSQL connection that was lost is replaced on its next use: reads go on, a write
transaction caught by the loss says its outcome is unknown, and nothing needs restarting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.databases import fresh_pg_database
from tradews.adapters.registry import connect, open_store
from tradews.adapters.sql import Database, DatabaseUnavailable


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_pg_database() as url:
        yield url


def terminate(url: str, victim: Database) -> None:
    """End ``victim``'s session from the server side, as a restart of the server would."""
    pid = victim.connection.info.backend_pid
    admin = connect(url, purpose="test")
    try:
        assert admin.scalar("SELECT pg_terminate_backend(?)", (pid,)) is True
    finally:
        admin.close()


def test_a_read_on_a_lost_connection_reconnects_and_answers(pg_url: str, tmp_path: Path) -> None:
    store = open_store(pg_url, key_file=tmp_path / "k.key")
    store.create_account("acme", "enterprise", 1)
    terminate(pg_url, store.db)
    assert store.get_account("acme") is not None  # one retry, on a new connection
    store.close()


def test_a_write_caught_by_the_loss_is_unavailable_then_the_next_one_works(
    pg_url: str, tmp_path: Path
) -> None:
    store = open_store(pg_url, key_file=tmp_path / "k.key")
    terminate(pg_url, store.db)
    with pytest.raises(DatabaseUnavailable) as lost:
        store.create_account("acme", "enterprise", 1)
    assert str(lost.value) == "the database is unreachable" and lost.value.detail
    store.create_account("acme", "enterprise", 1)
    assert [a.name for a in store.list_accounts()] == ["acme"]
    store.close()


def test_an_unreachable_server_is_said_at_once() -> None:
    with pytest.raises(DatabaseUnavailable) as down:
        connect("postgresql://postgres@127.0.0.1:1/none", purpose="test")
    assert "127.0.0.1" in down.value.detail
