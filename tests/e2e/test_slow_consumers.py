"""A client that stops reading: warned, then dropped; its book and ticker come back fresh when
it catches up; and the other clients are served all along."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import eventually
from tests.raw_websocket import TEXT, RawWebSocket
from tradews.client import BookReplica, Client
from tradews.testing import ServerProcess

MIB = 1 << 20


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("slow") / "slow.db"
    args = (
        "--no-demo-traders", "--max-unread-mib", "2",
        "--rate-limit-connection", "100000/100000", "--rate-limit-key", "100000/100000",
    )  # fmt: skip
    with ServerProcess.start(db, demo=True, args=args) as proc:
        yield proc


async def slow_subscriber(server: ServerProcess) -> RawWebSocket:
    """Logged in as the demo account, subscribed to its orders and balances and to BTC_USD's
    book and ticker, and from now on not reading (with the kernel's default buffers: a tiny
    receive window would make catching up take TCP's persist timer per packet)."""
    ws = await RawWebSocket.connect(server.url, read_limit=65536)
    calls: list[dict[str, Any]] = [
        {
            "method": "rpc.login",
            "params": {"apiKey": server.api_key, "apiSecret": server.api_secret},
        },
        {"method": "subscribe", "params": {"channel": "orders"}},
        {"method": "subscribe", "params": {"channel": "balances"}},
        {"method": "subscribe", "params": {"channel": "book.BTC_USD", "depth": 10}},
        {"method": "subscribe", "params": {"channel": "ticker.BTC_USD"}},
    ]
    for i, call in enumerate(calls):
        ws.send_frame(TEXT, json.dumps({"jsonrpc": "2.0", "id": i, **call}).encode())
    return ws


async def churn(client: Client, pairs: int) -> None:
    """Place and cancel far-off BTC_USD bids: order updates, balance changes, book deltas."""
    for i in range(pairs):
        order = await client.place_order("BTC_USD", "buy", "0.0001", price=f"{1 + i % 50}.00")
        await client.call("order_cancel", {"orderId": order["orderId"]})


async def quotes_keep_coming(server: ServerProcess, n: int) -> None:
    async with await Client.connect(server.url) as c:
        await c.login(server.api_key, server.api_secret)
        await c.quote_request("ETH_USD")
        seqs = []
        while len(seqs) < n:
            note = await c.next_notification(timeout=5)
            if note.method == "quote":
                seqs.append(note.params["seq"])
        assert seqs == list(range(1, n + 1))


async def read_all(
    ws: RawWebSocket, *, orders: int, stall: float = 30.0, idle: float = 3.0
) -> list[dict[str, Any]]:
    """Read until ``orders`` order updates have come (each frame within ``stall`` seconds: the
    server is sending the backlog, however slowly a busy machine lets it), then until the
    server has been quiet for ``idle`` seconds (what it sends once the reader has caught up)."""
    out: list[dict[str, Any]] = []
    seen = 0
    try:
        while seen < orders and (frame := await ws.recv(timeout=stall)) is not None:
            out.append(json.loads(frame.payload))
            seen += out[-1].get("method") == "orders"
        while (frame := await ws.recv(timeout=idle)) is not None:
            out.append(json.loads(frame.payload))
    except TimeoutError:
        pass
    return out


async def test_a_slow_reader_is_warned_and_catches_up_with_fresh_state(busy: ServerProcess) -> None:
    async with await Client.connect(busy.url) as trader:
        await trader.login(busy.api_key, busy.api_secret)
        await eventually(
            lambda: trader.call("balances"),
            lambda rows: any(b["asset"] == "USD" for b in rows),
            what="demo funding",
        )
        slow = await slow_subscriber(busy)
        # While it does not read, others are served as usual; its backlog grows past the
        # warning (1 MiB), not to the limit (2 MiB).
        pairs = 0

        async def until_warned() -> None:
            nonlocal pairs
            while (await asyncio.to_thread(busy.metrics))[
                "tradews_output_backlog_bytes"
            ] < 1.3 * MIB:
                await churn(trader, 100)
                pairs += 100
                assert pairs < 5000, "the slow reader's backlog does not grow"

        await asyncio.gather(until_warned(), quotes_keep_coming(busy, 20))
        assert (await asyncio.to_thread(busy.metrics))["tradews_connections_behind"] == 1
        messages = await read_all(slow, orders=2 * pairs)  # each pair: new, cancelled
        slow.close()
    warnings = [m["params"] for m in messages if m.get("method") == "warning"]
    assert len(warnings) == 1 and warnings[0]["code"] == "slow_consumer"
    assert warnings[0]["limitBytes"] == 2 * MIB and warnings[0]["bufferedBytes"] > MIB
    # Lossless streams: every order update arrived, in order.
    orders = [m["params"] for m in messages if m.get("method") == "orders"]
    assert [o["status"] for o in orders] == ["new", "cancelled"] * pairs
    # Perishable streams: book deltas were skipped while behind, and a fresh snapshot came
    # when it caught up; applied in order they give the server's book.
    books = [m["params"] for m in messages if m.get("method") == "book"]
    snapshots = [b for b in books if b["type"] == "snapshot"]
    assert len(snapshots) >= 2 and len(books) < 2 * pairs
    replica = BookReplica("0.01", "0.0001")
    for b in books:
        replica.apply(b)  # raises on a gap or a checksum mismatch


async def test_a_reader_that_never_catches_up_is_dropped(busy: ServerProcess) -> None:
    before = (await asyncio.to_thread(busy.metrics))["tradews_slow_consumers_dropped_total"]
    async with await Client.connect(busy.url) as trader:
        await trader.login(busy.api_key, busy.api_secret)
        slow = await slow_subscriber(busy)
        for _ in range(60):  # until over 2 MiB of order updates wait for the slow reader
            await churn(trader, 100)
            metrics = await asyncio.to_thread(busy.metrics)
            if metrics["tradews_slow_consumers_dropped_total"] > before:
                break
        assert metrics["tradews_slow_consumers_dropped_total"] == before + 1
        assert await slow.closed_by_server(timeout=10)
        slow.close()
        assert metrics["tradews_connections_behind"] == 0
