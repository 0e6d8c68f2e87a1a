"""The all-in-one server on PostgreSQL, end to end with the real command line: upgrade the
empty database, make accounts, keys, an instrument and deposits, serve, trade over a real
socket, revoke a key from the CLI, restart, and find the same state."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.databases import fresh_pg_database
from tests.helpers import eventually, funded_accounts
from tradews.adapters.sql_schema import VERSION
from tradews.client import Client, ConnectionClosed, RpcError
from tradews.testing import ServerProcess, run_cli


@pytest.fixture
def pg_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty PostgreSQL database; the key file every process uses is beside the test."""
    monkeypatch.setenv("TRADEWS_KEY_FILE", str(tmp_path / "tradews.key"))
    with fresh_pg_database(upgraded=False) as url:
        yield url


def state(server: ServerProcess) -> dict[str, Any]:
    return dict(json.loads(server.admin("/state?check=1")))


async def test_all_in_one_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    refused = run_cli("account", "list", db=pg_url, check=False)
    assert refused.returncode == 1
    assert f"is at schema v0, this tradews needs v{VERSION}" in refused.stderr
    assert "tradews db upgrade" in refused.stderr
    upgraded = run_cli("db", "upgrade", db=pg_url)
    assert f"schema v0 -> v{VERSION}" in upgraded.stdout
    assert "nothing to do" in run_cli("db", "upgrade", db=pg_url).stdout

    keys = funded_accounts(pg_url, ["alice", "bob"])  # deposits: offline, this CLI the engine
    assert (tmp_path / "tradews.key").stat().st_size == 32
    server = ServerProcess.start(pg_url, demo=False)
    try:
        async with (
            await Client.connect(server.url) as alice,
            await Client.connect(server.url) as bob,
        ):
            await alice.login(keys["alice"]["apiKey"], keys["alice"]["apiSecret"])
            await bob.login(keys["bob"]["apiKey"], keys["bob"]["apiSecret"], signed=True)
            ask = await alice.place_order(
                "ETH_USD", "sell", "2.000", price="3000.00", client_order_id="a-1"
            )
            rest = await alice.place_order("ETH_USD", "sell", "1.000", price="3100.00")
            fill = await bob.place_order("ETH_USD", "buy", "1.500", price="3000.00")
            assert fill["status"] == "filled" and fill["seq"] > ask["seq"]
            status = await alice.call("order_status", {"clientOrderId": "a-1"})
            assert Decimal(status["filledQuantity"]) == Decimal("1.5")
            (trade,) = await bob.call("trades", {"limit": 10})
            assert (trade["price"], trade["quantity"]) == ("3000.00", "1.500")
            # A deposit while the server runs goes through its inbox (polled via the store).
            done = run_cli("deposit", "bob", "USD", "5", "--ref", "live", "--json", db=pg_url)
            assert done["ok"] and done["via"] == "server"
            # A key revoked from the CLI reaches the server through the revision counter.
            run_cli("key", "revoke", keys["bob"]["apiKey"], db=pg_url)

            async def bob_is_gone() -> bool:
                try:
                    await bob.call("time", timeout=1)
                except (ConnectionClosed, RpcError, TimeoutError):
                    return True
                return False

            await eventually(bob_is_gone, bool, what="bob disconnected after the revoke", timeout=3)
            assert rest["status"] == "new"
        # The second server on the same database is refused by the advisory lock.
        with pytest.raises(RuntimeError, match="another tradews server"):
            ServerProcess.start(pg_url, demo=False, timeout=15)
        before = await eventually(
            lambda: asyncio.to_thread(state, server), lambda s: s["durable"], what="durable"
        )
        assert before["valid"], before["problem"]
        assert before["openOrders"] == 2
        assert before["netDeposits"] == before["balanceSums"]
    finally:
        server.stop(signal.SIGKILL)  # nothing is owed a clean stop: the journal is the truth
    with ServerProcess.start(pg_url, demo=False) as again:
        after = await asyncio.to_thread(state, again)
        assert (after["seq"], after["stateHash"]) == (before["seq"], before["stateHash"])
        async with await Client.connect(again.url) as alice:
            await alice.login(keys["alice"]["apiKey"], keys["alice"]["apiSecret"])
            balances = {b["asset"]: b for b in await alice.call("balances")}
            assert Decimal(balances["ETH"]["locked"]) == Decimal("1.5")  # 0.5 + 1 still resting
            again_order = await alice.place_order("ETH_USD", "buy", "0.001", price="1.00")
            assert again_order["seq"] > after["seq"]  # numbers continue, never repeat
