"""Crash safety: kill -9 in the middle of a burst of orders, restart, and check that everything
any client saw acknowledged is still there, money adds up, and sequence numbers move on."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import eventually, funded_accounts
from tradews.client import Client, ConnectionClosed
from tradews.testing import ServerProcess

TRADERS = ("t1", "t2", "t3", "t4")


def prepare(db: Path) -> dict[str, dict[str, str]]:
    return funded_accounts(db, TRADERS)


def state(server: ServerProcess) -> dict[str, Any]:
    url = server.admin_url + "/state?check=1"
    with urllib.request.urlopen(url, timeout=5) as response:
        return dict(json.loads(response.read()))


async def trader(server: ServerProcess, name: str, key: dict[str, str], orders: int,
                 acked: list[dict[str, Any]], fills: list[dict[str, Any]],
                 killed: asyncio.Event) -> None:  # fmt: skip
    """Send orders that cross each other's, 16 in flight at a time; record what is acked.
    Every order must be acknowledged, except those in flight or unsent once ``killed`` is set."""
    rng = random.Random(name)
    client = await Client.connect(server.url)
    await client.login(key["apiKey"], key["apiSecret"])
    await client.subscribe("orders")
    window = asyncio.Semaphore(16)

    async def one(n: int) -> None:
        async with window:
            side = rng.choice(("buy", "sell"))
            price = f"{3000 + rng.randint(-5, 5)}.00"
            try:
                ack = await client.place_order(
                    "ETH_USD", side, f"{rng.randint(1, 20)}.000", price=price,
                    client_order_id=f"{name}-{n}",
                )  # fmt: skip
            except (ConnectionClosed, TimeoutError):
                if killed.is_set():
                    return  # the server died with this order unanswered: nothing is owed
                raise
            acked.append({**ack, "account": name})

    try:
        await asyncio.gather(*(one(n) for n in range(orders)))
    finally:
        for note in client.drain_notifications():
            if note.method == "fills":
                fills.append({**note.params, "account": name})
        await client.close()


async def run_burst(server: ServerProcess, keys: dict[str, dict[str, str]], orders: int,
                    kill_after: int | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:  # fmt: skip
    acked: list[dict[str, Any]] = []
    fills: list[dict[str, Any]] = []
    killed = asyncio.Event()
    tasks = [
        asyncio.create_task(trader(server, name, keys[name], orders, acked, fills, killed))
        for name in TRADERS
    ]
    if kill_after is not None:

        async def progress() -> tuple[int, int]:
            return len(acked), sum(t.done() for t in tasks)

        await eventually(
            progress,
            lambda seen: seen[0] >= kill_after or seen[1] == len(tasks),
            what="acknowledgements (and traders finished) before the kill",
            timeout=60,
            interval=0.005,
        )
        killed.set()
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
    await asyncio.gather(*tasks)
    return acked, fills


async def test_kill_9_mid_burst_loses_nothing_acknowledged(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    keys = prepare(db)
    # Snapshots every 100 commands, taken under load: recovery is a snapshot plus a tail.
    snapshots = ("--snapshot-every", "100")
    server = ServerProcess.start(db, demo=False, args=snapshots)
    acked, fills = await run_burst(server, keys, orders=400, kill_after=600)
    server.stop()
    assert len(acked) >= 600, "the burst should have been acknowledged in part before the kill"
    assert fills, "the burst should have produced trades"
    max_seq = max(a["seq"] for a in acked)

    with ServerProcess.start(db, demo=False, args=snapshots) as again:
        banner = next(line for line in again.output if line.startswith("engine: replayed"))
        assert "after the snapshot at seq" in banner
        report = await asyncio.to_thread(state, again)
        assert report["valid"], report["problem"]
        assert report["netDeposits"] == report["balanceSums"] == {"ETH": "40000", "USD": "40000000"}
        assert report["seq"] >= max_seq
        clients = {}
        for name in TRADERS:
            clients[name] = await Client.connect(again.url)
            await clients[name].login(keys[name]["apiKey"], keys[name]["apiSecret"])
        for ack in acked:
            now = await clients[ack["account"]].call(
                "order_status", {"clientOrderId": ack["clientOrderId"]}
            )
            assert now["orderId"] == ack["orderId"]
            assert now["seq"] >= ack["seq"]
            assert Decimal(now["filledQuantity"]) >= Decimal(ack["filledQuantity"])
        for name in TRADERS:
            mine = {f["tradeId"] for f in fills if f["account"] == name}
            history: set[int] = set()
            before = None
            while True:
                page = await clients[name].call(
                    "trades", {"limit": 1000, **({"before": before} if before else {})}
                )
                if not page:
                    break
                history.update(t["tradeId"] for t in page)
                before = page[-1]["tradeId"]
            assert mine <= history, f"{name} lost trades {sorted(mine - history)[:5]}"
        fresh = await clients["t1"].place_order("ETH_USD", "buy", "1.000", price="1.00")
        assert fresh["seq"] > report["seq"] >= max_seq  # sequence numbers continue, never repeat
        for c in clients.values():
            await c.close()


@pytest.mark.parametrize("snapshots", [False, True])
async def test_restart_after_kill_9_reaches_the_same_state_hash(
    tmp_path: Path, snapshots: bool
) -> None:
    db = tmp_path / "hash.db"
    keys = prepare(db)
    args = ("--snapshot-every", "50") if snapshots else ()
    server = ServerProcess.start(db, demo=False, args=args)
    await run_burst(server, keys, orders=60, kill_after=None)
    # Durable: nothing applied is waiting for the journal, a due snapshot included (it is
    # parked in the engine host until written).
    before = await eventually(
        lambda: asyncio.to_thread(state, server), lambda s: s["durable"], what="a durable state"
    )
    assert before["valid"], before["problem"]
    server.stop(signal.SIGKILL)
    with ServerProcess.start(db, demo=False, args=args) as again:
        after = await asyncio.to_thread(state, again)
        banner = next(line for line in again.output if line.startswith("engine: replayed"))
    assert (after["seq"], after["stateHash"]) == (before["seq"], before["stateHash"])
    assert after["openOrders"] == before["openOrders"] > 0
    replayed = int(banner.split()[2])
    if snapshots:  # a snapshot every 50 commands: start-up replays only the tail
        assert "after the snapshot at seq" in banner and replayed < 50 + 20
    else:
        assert replayed == before["seq"]


def test_a_second_server_on_the_same_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "lock.db"
    with ServerProcess.start(db, demo=True), pytest.raises(RuntimeError, match="another tradews"):
        ServerProcess.start(db, demo=True, timeout=10)
