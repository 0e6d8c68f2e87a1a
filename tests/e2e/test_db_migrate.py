"""``tradews db migrate``: a SQLite installation that has traded moves into PostgreSQL whole,
and a server started on the copy is the same engine, with the same keys (sealed secrets and
all)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.databases import fresh_pg_database
from tests.helpers import eventually, funded_accounts
from tradews.adapters.registry import open_lease, open_store
from tradews.client import Client
from tradews.testing import ServerProcess, run_cli


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_pg_database(upgraded=False) as url:
        yield url


def state(server: ServerProcess) -> dict[str, Any]:
    return dict(json.loads(server.admin("/state?check=1")))


def migrate(source: Path, target: str, to_key: Path) -> Any:
    # run_cli adds ``--db source`` too: the source's other name.
    return run_cli(
        "db", "migrate", "--from", f"sqlite:///{source}", "--to", target,
        "--to-key-file", str(to_key), db=source, check=False,
    )  # fmt: skip


async def trade(server: ServerProcess, keys: dict[str, dict[str, str]]) -> None:
    async with await Client.connect(server.url) as alice, await Client.connect(server.url) as bob:
        await alice.login(keys["alice"]["apiKey"], keys["alice"]["apiSecret"])
        await bob.login(keys["bob"]["apiKey"], keys["bob"]["apiSecret"])
        await alice.subscribe("orders")  # so that account_events has rows for alice
        for n in range(12):
            await alice.place_order("ETH_USD", "sell", "1.000", price=f"{3000 + n}.00")
        await bob.place_order("ETH_USD", "buy", "5.500", price="3004.00")


async def test_a_sqlite_installation_moves_to_postgresql(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "tradews.db"
    to_key = tmp_path / "pg.key"
    keys = funded_accounts(db, ["alice", "bob"])
    run_cli("price", "set", "ETH_USD", "3001", db=db)
    with ServerProcess.start(db, demo=False, args=("--snapshot-every", "5")) as server:
        await trade(server, keys)
        refused = migrate(db, pg_url, to_key)
        assert refused.returncode == 1
        assert "a tradews server is running" in refused.stderr and "stop it first" in refused.stderr
        before = await eventually(
            lambda: asyncio.to_thread(state, server), lambda s: s["durable"], what="durable"
        )
    done = migrate(db, pg_url, to_key)
    assert done.returncode == 0, done.stderr
    counts = dict(re.findall(r"^\s+(\w+)\s+([\d,]+) rows$", done.stdout, flags=re.MULTILINE))
    assert counts["journal"] == str(before["seq"]) and int(counts["snapshots"]) >= 1
    assert int(counts["trades"]) == 5 and int(counts["account_events"]) > 0
    assert counts["accounts"] == "4"  # alice, bob, house, fees
    assert f"verified: seq {before['seq']}, state hash {before['stateHash']}" in done.stdout
    assert to_key.read_bytes() == Path(f"{db}.key").read_bytes()  # noqa: ASYNC240

    again = migrate(db, pg_url, to_key)  # the target is no longer empty
    assert again.returncode == 1 and "the target database is not empty" in again.stderr

    monkeypatch.setenv("TRADEWS_KEY_FILE", str(to_key))
    with ServerProcess.start(pg_url, demo=False) as copy:
        after = await asyncio.to_thread(state, copy)
        assert (after["seq"], after["stateHash"]) == (before["seq"], before["stateHash"])
        assert after["balanceSums"] == before["balanceSums"]
        async with await Client.connect(copy.url) as bob:  # a signed login: the secret unseals
            await bob.login(keys["bob"]["apiKey"], keys["bob"]["apiSecret"], signed=True)
            (latest, *_) = await bob.call("trades", {"limit": 10})
            fresh = await bob.place_order("ETH_USD", "buy", "0.500", price="3010.00")
            assert fresh["seq"] > after["seq"] and fresh["status"] == "filled"
            assert latest["tradeId"] == 5
    store = open_store(pg_url, key_file=to_key)
    assert [p.symbol for p in store.reference_prices()] == ["ETH_USD"]
    assert store.create_account("carol", "standard", 1).id == 5  # ids go on after the copy
    store.close()


def test_a_held_target_or_a_missing_source_is_refused(tmp_path: Path, pg_url: str) -> None:
    missing = run_cli("db", "migrate", "--from", str(tmp_path / "none.db"), "--to", pg_url,
                      db=tmp_path / "none.db", check=False)  # fmt: skip
    assert missing.returncode == 1 and "no database at" in missing.stderr
    db = tmp_path / "t.db"
    run_cli("account", "create", "acme", db=db)
    lease = open_lease(pg_url)
    assert lease.try_acquire()
    held = migrate(db, pg_url, tmp_path / "k")
    lease.release()
    assert held.returncode == 1 and "running on" in held.stderr
