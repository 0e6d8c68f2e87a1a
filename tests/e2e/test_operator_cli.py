"""The operator's command line against a live server: freezing an account, reading balances,
orders and trades, backing up and restoring, and refusing what it cannot do in one line."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tradews.adapters.registry import open_journal, open_store
from tradews.adapters.sql_store import FEE_ACCOUNT
from tradews.client import Client, RpcError
from tradews.engine.engine import Engine
from tradews.testing import ServerProcess, run_cli

ACCOUNTS = {"alice": {"USD": "100000"}, "bob": {"BTC": "10"}}


def tradews(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = run_cli(*args, db=db, check=False)
    assert isinstance(done, subprocess.CompletedProcess)
    return done


def one_line_error(done: subprocess.CompletedProcess[str], expected: str) -> None:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert expected in lines[0], lines[0]


def venue(db: Path) -> dict[str, Any]:
    """Two funded enterprise accounts and a BTC_USD market, made with the CLI; their keys."""
    run_cli(
        "instrument", "add", "BTC_USD", "--base", "BTC", "--quote", "USD",
        "--tick", "0.01", "--lot", "0.0001", db=db,
    )  # fmt: skip
    keys = {}
    for name, funds in ACCOUNTS.items():
        run_cli("account", "create", name, "--tier", "enterprise", db=db)
        keys[name] = run_cli("key", "create", name, "--json", db=db)
        for asset, amount in funds.items():
            run_cli("deposit", name, asset, amount, "--ref", f"{name}-{asset}", db=db)
    return keys


async def login(server: ServerProcess, key: dict[str, Any]) -> Client:
    client = await Client.connect(server.url)
    await client.login(key["apiKey"], key["apiSecret"])
    return client


async def test_a_frozen_account_reads_but_neither_trades_nor_withdraws(tmp_path: Path) -> None:
    db = tmp_path / "freeze.db"
    keys = venue(db)
    with ServerProcess.start(db, demo=False) as server:
        alice = await login(server, keys["alice"])
        resting = await alice.place_order("BTC_USD", "buy", "0.5", price="60000")

        frozen = server.cli("account", "freeze", "alice")
        assert frozen["ok"] and frozen["via"] == "server" and frozen["changed"] is True
        with pytest.raises(RpcError) as info:
            await alice.place_order("BTC_USD", "buy", "0.1", price="60000")
        assert info.value.code == 4003 and info.value.data == {"reason": "ACCOUNT_FROZEN"}
        with pytest.raises(RpcError) as info:
            await alice.call("order_amend", {"orderId": resting["orderId"], "price": "59000"})
        assert info.value.code == 4003
        one_line_error(
            tradews(db, "withdraw", "alice", "USD", "10", "--ref", "w-1"), "ACCOUNT_FROZEN"
        )
        # Reads work, on this connection and on a new login; the resting order stays.
        balances = {b["asset"]: b for b in await alice.call("balances")}
        assert balances["USD"]["locked"] == "30000"
        assert [o["orderId"] for o in await alice.call("orders_open")] == [resting["orderId"]]
        again = await login(server, keys["alice"])
        assert await again.call("balances") == await alice.call("balances")
        await again.close()
        # Cancelling only lowers risk: allowed.
        cancelled = await alice.call("order_cancel", {"orderId": resting["orderId"]})
        assert cancelled["status"] == "cancelled"
        # Other accounts trade as ever.
        bob = await login(server, keys["bob"])
        await bob.place_order("BTC_USD", "sell", "0.1", price="61000")
        (row,) = server.cli("balances", "alice")[:1]
        assert row["frozen"] is True
        frozen = {a["name"]: a["frozen"] for a in server.cli("account", "list")}
        assert frozen["alice"] is True and frozen["bob"] is False

    # Journaled: the freeze outlives a restart.
    with ServerProcess.start(db, demo=False) as server:
        alice = await login(server, keys["alice"])
        with pytest.raises(RpcError) as info:
            await alice.place_order("BTC_USD", "buy", "0.1", price="60000")
        assert info.value.code == 4003
        unfrozen = server.cli("account", "unfreeze", "alice")
        assert unfrozen["ok"] and unfrozen["changed"] is True
        placed = await alice.place_order("BTC_USD", "buy", "0.1", price="60000")
        assert placed["status"] == "new"
        assert not any(a["frozen"] for a in server.cli("account", "list"))
        withdrawn = server.cli("withdraw", "alice", "USD", "10", "--ref", "w-1")
        assert withdrawn["ok"] and withdrawn["via"] == "server"
        await alice.close()


async def test_listings_show_what_the_server_did(tmp_path: Path) -> None:
    db = tmp_path / "listings.db"
    keys = venue(db)
    with ServerProcess.start(db, demo=False) as server:
        alice = await login(server, keys["alice"])
        bob = await login(server, keys["bob"])
        sold = await bob.place_order("BTC_USD", "sell", "1", price="60000", client_order_id="s1")
        bought = await alice.place_order("BTC_USD", "buy", "0.25", price="60000")
        resting = await alice.place_order("BTC_USD", "buy", "0.5", price="59000")
        await alice.close()
        await bob.close()

        trades = server.cli("trades")
        assert [(t["price"], t["quantity"], t["maker"], t["taker"], t["takerSide"])
                for t in trades] == [("60000.00", "0.2500", "bob", "alice", "buy")]  # fmt: skip
        assert server.cli("trades", "--account", "alice") == trades
        assert server.cli("trades", "--symbol", "BTC_USD", "--since", "0") == trades
        later = str(trades[0]["timestamp"] + 1)
        assert server.cli("trades", "--since", later) == []
        assert server.cli("trades", "--since", "2000-01-01T00:00:00Z") == trades

        orders = server.cli("orders", "alice")
        assert [(o["orderId"], o["status"]) for o in orders] == [
            (bought["orderId"], "filled"), (resting["orderId"], "new"),
        ]  # fmt: skip
        assert [o["orderId"] for o in server.cli("orders", "alice", "--open")] == [
            resting["orderId"]
        ]
        (bobs,) = server.cli("orders", "bob", "--open")
        assert (bobs["orderId"], bobs["clientOrderId"], bobs["remainingQuantity"]) == (
            sold["orderId"], "s1", "0.7500",
        )  # fmt: skip

        mine = {b["asset"]: b for b in server.cli("balances", "alice")}
        # 0.25 BTC bought at 60000 less the taker fee (10 bps of it), 29500 locked for the rest.
        assert mine["BTC"]["total"] == "0.24975"
        assert mine["USD"] == {
            "account": "alice", "asset": "USD", "available": "55500", "locked": "29500",
            "total": "85000", "frozen": False,
        }  # fmt: skip
        everyone = server.cli("balances")
        assert {r["account"] for r in everyone} >= {"alice", "bob", "fees"}

        # Tables print ids whole, whatever the terminal's width.
        table = tradews(db, "key", "list", "alice")
        assert keys["alice"]["apiKey"] in table.stdout
        table = tradews(db, "trades")
        assert table.returncode == 0 and "alice" in table.stdout and "60000" in table.stdout


def test_bad_input_is_one_line_and_exit_1(tmp_path: Path) -> None:
    db = tmp_path / "bad.db"
    venue(db)
    one_line_error(tradews(db, "deposit", "alice", "DOGE", "5", "--ref", "d1"), "unknown asset")
    one_line_error(tradews(db, "deposit", "alice", "USD", "-5", "--ref", "d2"), "amount")
    one_line_error(tradews(db, "withdraw", "alice", "USD", "-5", "--ref", "d3"), "amount")
    one_line_error(tradews(db, "deposit", "alice", "USD"), "Missing argument")
    one_line_error(tradews(db, "balances", "nobody"), "no account named 'nobody'")
    one_line_error(tradews(db, "orders", "nobody"), "no account named 'nobody'")
    one_line_error(tradews(db, "trades", "--since", "yesterday"), "--since must be")
    one_line_error(tradews(db, "trades", "--symbol", "XYZ_USD"), "no instrument 'XYZ_USD'")
    one_line_error(tradews(db, "account", "freeze", "nobody"), "no account named 'nobody'")
    one_line_error(tradews(db, "restore", str(tmp_path / "none.db")), "does not exist")
    done = subprocess.run(
        [sys.executable, "-m", "tradews", "backup", "x.db", "--db", "postgresql://h/tradews"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    one_line_error(done, "pg_dump")

    # A declared asset may be deposited; the listing says where each asset comes from.
    assert tradews(db, "asset", "add", "DOGE").returncode == 0
    assert run_cli("deposit", "alice", "DOGE", "5", "--ref", "d1", "--json", db=db)["ok"]
    assets = {a["asset"]: a["from"] for a in run_cli("asset", "list", "--json", db=db)}
    assert assets == {"BTC": "BTC_USD", "DOGE": "declared", "USD": "BTC_USD"}


async def test_backup_while_the_server_trades_restores_the_same_state(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    keys = venue(db)
    copy = tmp_path / "copy.db"
    with ServerProcess.start(db, demo=False) as server:
        alice = await login(server, keys["alice"])
        bob = await login(server, keys["bob"])
        for i in range(5):
            await bob.place_order("BTC_USD", "sell", "0.1", price=f"{60000 + i}")
            await alice.place_order("BTC_USD", "buy", "0.05", price=f"{60000 + i}")
        backup = tmp_path / "backup.db"
        made = tradews(db, "backup", str(backup))
        assert made.returncode == 0, made.stderr
        # A running server keeps its database: restoring over it is refused.
        one_line_error(tradews(db, "restore", str(backup)), "stop it first")
        one_line_error(tradews(db, "backup", str(backup)), "already exists")
        await alice.close()
        await bob.close()

    restored = tradews(copy, "restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    for listing in (("balances",), ("orders", "alice"), ("orders", "bob"), ("trades",)):
        original = run_cli(*listing, "--json", db=db)
        assert run_cli(*listing, "--json", db=copy) == original, listing
    assert len(run_cli("trades", "--json", db=copy)) == 5
    # The copy serves: a server starts from it (replaying its journal) and trades on.
    with ServerProcess.start(copy, demo=False) as server:
        alice = await login(server, keys["alice"])
        assert (await alice.place_order("BTC_USD", "buy", "0.05", price="60010"))["status"]
        await alice.close()


def journal_state(db: Path, upto: int | None = None) -> tuple[int, str]:
    """The engine replayed from ``db``'s journal alone, up to seq ``upto`` (all of it: None)."""
    store = open_store(str(db))
    fees = store.get_account(FEE_ACCOUNT)
    assert fees is not None
    engine = Engine(store.list_instruments(), fee_account_id=fees.id)
    journal = open_journal(str(db))
    try:
        for seq, command in journal.read(0):
            if upto is not None and seq > upto:
                break
            engine.apply(command)
    finally:
        journal.close()
        store.close()
    return engine.seq, engine.state_hash()


async def test_a_backup_taken_mid_burst_is_one_point_of_the_journal(tmp_path: Path) -> None:
    """Orders keep arriving while the copy is made: the copy holds exactly the journal up to
    the seq it names, so its state is the original's at that seq."""
    db = tmp_path / "busy.db"
    keys = venue(db)
    backup = tmp_path / "busy-backup.db"
    unlimited = ("--rate-limit-connection", "100000/100000", "--rate-limit-key", "100000/100000")
    with ServerProcess.start(db, demo=False, args=unlimited) as server:
        alice = await login(server, keys["alice"])
        bob = await login(server, keys["bob"])
        stop = asyncio.Event()

        async def burst() -> int:
            n = 0
            while not stop.is_set():
                price = str(50_000 + n % 50)
                await bob.place_order("BTC_USD", "sell", "0.001", price=price)
                await alice.place_order("BTC_USD", "buy", "0.001", price=price)
                n += 1
            return n

        trading = asyncio.create_task(burst())
        await asyncio.sleep(0.5)
        made = await asyncio.to_thread(tradews, db, "backup", str(backup))
        stop.set()
        assert await trading > 0
        assert made.returncode == 0, made.stderr
        await alice.close()
        await bob.close()
    match = re.search(r"journal seq (\d+)", made.stdout)
    assert match is not None, made.stdout
    seq = int(match.group(1))
    assert journal_state(backup) == journal_state(db, upto=seq)
