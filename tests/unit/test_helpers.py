"""The test suite's waiting helper must fail loudly, or the tests that use it cannot fail."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tests.helpers import eventually
from tradews.testing import run_cli, run_cli_many


async def test_eventually_returns_the_value_that_satisfied_it() -> None:
    counter = itertools.count()

    async def probe() -> int:
        return next(counter)

    assert await eventually(probe, lambda n: n >= 3, what="three", interval=0) == 3


async def test_eventually_fails_with_the_last_value_seen() -> None:
    counter = itertools.count()

    async def probe() -> dict[str, int]:
        return {"tradews_connections": next(counter) % 2 + 1}

    with pytest.raises(AssertionError, match=r"no connections: not reached within 0.2 s; "
                                             r"last seen: \{'tradews_connections': [12]\}"):  # fmt: skip
        await eventually(probe, lambda seen: not seen["tradews_connections"],
                         what="no connections", timeout=0.2, interval=0.01)  # fmt: skip


def test_commands_run_in_one_process_answer_as_each_alone_and_stop_at_a_failure(
    tmp_path: Path,
) -> None:
    """``run_cli_many`` (the suite's set-up of accounts) gives what separate ``tradews`` runs
    would: each command's own output and exit status, and the first failure raised."""
    db = tmp_path / "t.db"
    created, listed, plain = run_cli_many(
        ("account", "create", "alice", "--json"),
        ("account", "list", "--json"),
        ("account", "create", "bob"),
        db=db,
    )
    assert created["name"] == "alice"
    assert [a["name"] for a in listed] == ["alice"]  # the first had made it
    assert plain.returncode == 0 and "bob" in plain.stdout
    with pytest.raises(RuntimeError, match="alice") as failed:
        run_cli_many(("account", "list"), ("account", "create", "alice"),
                     ("account", "create", "carol"), db=db)  # fmt: skip
    assert "account create alice failed (1)" in str(failed.value)
    names = [a["name"] for a in run_cli("account", "list", "--json", db=db)]
    assert "carol" not in names  # nothing ran after the failure
