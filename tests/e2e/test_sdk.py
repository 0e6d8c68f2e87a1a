"""The typed SDK (``tradews.client.TradewsClient``) against a real server, in both encodings.

The server is killed (``kill -9``) and started again on the same database and port while the
SDK follows a book and the account's private streams: the SDK must reconnect and log in by
itself, subscribe again, hold a book equal to the server's, and have seen every private
stream message exactly once, in order, as a client that replays the whole stream sees them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import eventually, funded_accounts
from tradews.client import (
    AuthError,
    Balance,
    BookReplica,
    Client,
    Fill,
    Notification,
    Order,
    OrderBook,
    OrderRejected,
    TradewsClient,
)
from tradews.testing import ServerProcess, run_cli

SYMBOL = "ETH_USD"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Seen:
    """What the SDK's iterators yielded, collected by background tasks."""

    def __init__(self, tw: TradewsClient) -> None:
        self.book: OrderBook | None = None
        self.stream: dict[str, list[Order | Fill | Balance]] = {"orders": [], "balances": []}
        self.tasks = [
            asyncio.create_task(self._collect(tw.orders(), "orders")),
            asyncio.create_task(self._collect(tw.fills(), "orders")),
            asyncio.create_task(self._collect(tw.balance_updates(), "balances")),
            asyncio.create_task(self._books(tw.book(SYMBOL))),
        ]

    async def _collect(self, items: AsyncIterator[Order | Fill | Balance], channel: str) -> None:
        async for item in items:
            if item.stream_seq is not None:  # not a row of the first balances snapshot
                self.stream[channel].append(item)

    async def _books(self, books: AsyncIterator[OrderBook]) -> None:
        async for book in books:
            self.book = book

    def last(self) -> dict[str, int]:
        return {c: max((m.stream_seq or 0 for m in ms), default=0) for c, ms in self.stream.items()}

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def connect(server: ServerProcess, key: dict[str, str], encoding: str) -> Client:
    client = await Client.connect(server.url, encoding=encoding)
    await client.login(key["apiKey"], key["apiSecret"])
    return client


async def heads(server: ServerProcess, key: dict[str, str], encoding: str) -> dict[str, int]:
    probe = await connect(server, key, encoding)
    out = {c: int((await probe.subscribe(c))["streamSeq"]) for c in ("orders", "balances")}
    await probe.close()
    return out


async def replay(
    server: ServerProcess, key: dict[str, str], encoding: str, since: dict[str, int]
) -> dict[str, list[tuple[str, Any]]]:
    """Every private stream message after ``since``, as a fresh resuming client gets them."""
    now = await heads(server, key, encoding)
    client = await connect(server, key, encoding)
    out: dict[str, list[tuple[str, Any]]] = {"orders": [], "balances": []}
    for channel in out:
        await client.subscribe(channel, since=since[channel])
    while sum(len(v) for v in out.values()) < sum(now[c] - since[c] for c in out):
        note = await client.next_notification(timeout=10)
        if note.method in ("orders", "fills"):
            out["orders"].append((note.method, note.params))
        elif note.method == "balances":
            out["balances"].append((note.method, note.params))
    await client.close()
    return out


async def server_book(
    server: ServerProcess, key: dict[str, str], encoding: str, tick: str, lot: str
) -> BookReplica:
    client = await connect(server, key, encoding)
    await client.subscribe(f"book.{SYMBOL}")
    replica = BookReplica(tick, lot)
    note = await client.next_notification(timeout=10)
    assert note.method == "book" and note.params["type"] == "snapshot"
    replica.apply(note.params)
    await client.close()
    return replica


async def trade(trader: Client, counterparty: Client, n: int) -> None:
    """Orders resting on both sides of the book, one partly filled, one amended, one cancelled."""
    bid = await trader.place_order(SYMBOL, "buy", "1.000", price=f"{2990 - n}.00")
    await trader.place_order(SYMBOL, "sell", "1.000", price=f"{3010 + n}.00")
    await counterparty.place_order(SYMBOL, "sell", "0.250", price=f"{2990 - n}.00")
    await trader.call("order_amend", {"orderId": bid["orderId"], "quantity": "0.900"})
    gone = await trader.place_order(SYMBOL, "buy", "0.100", price=f"{2900 - n}.00")
    await trader.call("order_cancel", {"orderId": gone["orderId"]})


def as_sent(item: Order | Fill | Balance) -> tuple[str, int | None]:
    return (type(item).__name__, item.stream_seq)


async def test_the_sdk_reconnects_resubscribes_and_loses_nothing_across_a_restart(
    tmp_path: Path, encoding: str
) -> None:
    db = tmp_path / "sdk.db"
    keys = funded_accounts(db, ("alice", "bob"))
    alice, bob = keys["alice"], keys["bob"]
    args = ("--port", str(free_port()))
    server = ServerProcess.start(db, demo=False, args=args)
    tw = TradewsClient(
        server.url,
        api_key=alice["apiKey"],
        api_secret=alice["apiSecret"],
        encoding=encoding,
        backoff=(0.05, 0.5),
    )
    seen: Seen | None = None
    try:
        await tw.start()
        seen = Seen(tw)
        await eventually(
            lambda: asyncio.sleep(0, dict(tw.tracker.last)),
            lambda last: set(last) == {"orders", "balances"},
            what="the private streams subscribed",
        )
        start = dict(tw.tracker.last)
        # The typed calls: results are objects, refusals typed exceptions carrying the code.
        order = await tw.place_order(SYMBOL, "buy", Decimal("0.5"), price="2500.00")
        assert isinstance(order, Order) and order.status == "new"
        assert order.price == Decimal("2500.00") and order.remaining_quantity == Decimal("0.5")
        assert [o.order_id for o in await tw.fetch_open_orders(SYMBOL)] == [order.order_id]
        with pytest.raises(OrderRejected) as refused:
            await tw.place_order(SYMBOL, "buy", "1.000", price="2500.001")
        assert refused.value.code == 4001 and refused.value.reason == "INVALID_PRICE"
        assert (await tw.fetch_balance())["USD"].locked == Decimal("1250")

        trader, counterparty = (
            await connect(server, alice, encoding),
            await connect(server, bob, encoding),
        )
        for n in range(3):
            await trade(trader, counterparty, n)
        before = await heads(server, alice, encoding)
        await eventually(lambda: asyncio.sleep(0, seen.last()), lambda last: last == before,
                         what="the SDK up to date before the restart")  # fmt: skip

        server.stop(signal.SIGKILL)
        trader.abort()
        counterparty.abort()
        server = ServerProcess.start(db, demo=False, args=args)

        # Changes while (or just after) the SDK reconnects: it must get them all, once.
        trader, counterparty = (
            await connect(server, alice, encoding),
            await connect(server, bob, encoding),
        )
        for n in range(3, 6):
            await trade(trader, counterparty, n)
        await eventually(lambda: asyncio.sleep(0, tw.reconnects), lambda n: n >= 1,
                         what="the SDK reconnected")  # fmt: skip
        # A call made through the SDK after the restart works on its new connection.
        cancelled = await tw.cancel_order(order.order_id)
        assert cancelled.status == "cancelled"
        after = await heads(server, alice, encoding)
        await eventually(lambda: asyncio.sleep(0, seen.last()), lambda last: last == after,
                         what="the SDK's private streams caught up")  # fmt: skip

        # No gap, nothing twice: exactly what a client replaying the streams sees.
        expected = await replay(server, alice, encoding, start)
        kinds = {"orders": "Order", "fills": "Fill", "balances": "Balance"}
        for channel in ("orders", "balances"):
            got = [as_sent(m) for m in seen.stream[channel]]
            assert [s for _, s in got] == list(range(start[channel] + 1, after[channel] + 1))
            assert got == [(kinds[m], p["streamSeq"]) for m, p in expected[channel]]
        fills = [m for m in seen.stream["orders"] if isinstance(m, Fill)]
        assert len(fills) >= 6 and all(
            f.symbol == SYMBOL for f in fills
        )  # a fill per round at least

        # The SDK's book is the server's: same levels, same checksum.
        inst = tw.instruments[SYMBOL]

        async def books() -> tuple[OrderBook | None, BookReplica]:
            return seen.book, await server_book(
                server, bob, encoding, str(inst.tick), str(inst.lot)
            )

        def same(pair: tuple[OrderBook | None, BookReplica]) -> bool:
            mine, theirs = pair
            return (
                mine is not None
                and mine.checksum == theirs.checksum()
                and dict(mine.bids) == theirs.bids
                and dict(mine.asks) == theirs.asks
            )

        await eventually(books, same, what="the SDK's book equal to the server's")
        assert seen.book is not None and seen.book.best_ask is not None

        # A book message that does not follow: the SDK resubscribes and is whole again.
        assert seen.book is not None
        bogus = {"channel": f"book.{SYMBOL}", "type": "delta", "symbol": SYMBOL,
                 "seq": seen.book.seq + 1000, "prevSeq": seen.book.seq + 999,
                 "bids": [], "asks": [], "checksum": 0}  # fmt: skip
        tw._dispatch(Notification("book", bogus))
        assert tw.resyncs == 1
        await trade(trader, counterparty, 6)
        await eventually(books, same, what="the SDK's book resynchronised")
        await trader.close()
        await counterparty.close()
    finally:
        if seen is not None:
            await seen.stop()
        await tw.close()
        server.stop()


async def test_a_revoked_key_ends_the_sdks_streams_and_calls_with_the_refusal(
    tmp_path: Path, encoding: str
) -> None:
    db = tmp_path / "revoke.db"
    carol = funded_accounts(db, ("carol",))["carol"]
    with ServerProcess.start(db, demo=False) as server:
        tw = TradewsClient(server.url, api_key=carol["apiKey"], api_secret=carol["apiSecret"],
                           encoding=encoding, backoff=(0.05, 0.2))  # fmt: skip
        await tw.start()
        try:
            balances = tw.balance_updates()
            first = await anext(balances)  # the snapshot's first row: subscribed
            assert isinstance(first, Balance) and first.stream_seq is None
            waiting = asyncio.create_task(anext(tw.orders()))
            await asyncio.to_thread(run_cli, "key", "revoke", carol["apiKey"], db=db)
            with pytest.raises(AuthError) as refused:  # dropped, then refused on the reconnect
                await asyncio.wait_for(waiting, 30)
            assert refused.value.code in (1002, 1003)
            with pytest.raises(AuthError):
                await tw.balances()
            with pytest.raises(AuthError):
                await anext(tw.trades(SYMBOL))
        finally:
            await tw.close()


def readme_program() -> str:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## The Python SDK", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


async def test_the_readme_sdk_program_runs_against_the_demo(tmp_path: Path) -> None:
    with ServerProcess.start(tmp_path / "demo.db", demo=True) as server:
        env = {**os.environ, "TRADEWS_URL": server.url, "TRADEWS_API_KEY": server.api_key,
               "TRADEWS_API_SECRET": server.api_secret}  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", readme_program(), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, errors = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, errors.decode()
    text = out.decode()
    assert "USD available:" in text and "best bid:" in text
    assert "bought 0.0100 BTC at" in text
    assert "cancelled: cancelled" in text and "refused: 4001 INVALID_PRICE" in text


async def test_quotes_tickers_and_trades_go_on_after_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    args = ("--port", str(free_port()))
    server = ServerProcess.start(db, demo=True, args=args)
    key = server.cli("key", "create", "demo")  # the demo's own key is replaced as it restarts
    tw = TradewsClient(server.url, api_key=key["apiKey"], api_secret=key["apiSecret"],
                       backoff=(0.05, 0.5))  # fmt: skip
    try:
        await tw.start()
        quotes, tickers = tw.quotes("BTC_USD", quantity="0.01"), tw.ticker("BTC_USD")
        trades = tw.trades("BTC_USD")
        first = await asyncio.wait_for(anext(quotes), 10)
        assert first.buy_price < first.sell_price and first.quantity == Decimal("0.01")
        assert (await asyncio.wait_for(anext(tickers), 10)).symbol == "BTC_USD"
        before = await asyncio.wait_for(anext(trades), 20)

        server.stop(signal.SIGKILL)
        server = ServerProcess.start(db, demo=True, args=args)

        await eventually(lambda: asyncio.sleep(0, tw.reconnects), lambda n: n >= 1,
                         what="the SDK reconnected")  # fmt: skip
        # A fresh quote stream (its seq starts again), the ticker and the tape go on.
        again = await asyncio.wait_for(anext(quotes), 10)
        while again.seq != 1:  # quotes of the old stream, read before the drop
            again = await asyncio.wait_for(anext(quotes), 10)
        fill = await tw.accept_quote(again, "buy")
        assert fill.price == again.sell_price and fill.liquidity == "rfq"
        assert (await asyncio.wait_for(anext(tickers), 10)).symbol == "BTC_USD"
        after = await asyncio.wait_for(anext(trades), 20)
        while after.trade_id <= before.trade_id:
            after = await asyncio.wait_for(anext(trades), 20)
    finally:
        await tw.close()
        server.stop()
