"""The storage contract: every test here runs on each backend URL the registry opens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.databases import fresh_pg_database
from tradews.adapters.registry import upgrade_database

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database at this release's schema: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/contract.db"
        upgrade_database(url)
        yield url
        return
    with fresh_pg_database() as url:
        yield url


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """Where the store's master key goes: beside the test, whichever the backend."""
    return tmp_path / "master.key"
