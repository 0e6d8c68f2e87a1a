"""Resuming private streams after a reconnect, over real sockets, in both encodings.

A client follows its account's ``orders`` and ``balances`` streams, goes away while other
connections place, fill and cancel its orders, comes back and resumes from the last
``streamSeq`` it saw. What it saw before and after must be exactly what a client that never went
away saw: the same messages in the same order, nothing missing, nothing twice. The same after a
restart of the server and after ``kill -9`` (then the messages come from storage), and a resume
from further back than the server keeps is refused with error 2009.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import eventually, funded_accounts, take
from tradews.client import Client, ConnectionClosed, Notification, RpcError, StreamTracker
from tradews.testing import ServerProcess

CHANNELS = ("orders", "balances")
CHANNEL_OF = StreamTracker.CHANNEL_OF


def prepare(db: Path) -> dict[str, dict[str, str]]:
    """Two funded accounts; their offline deposits' balance messages are numbered too."""
    return funded_accounts(db, ("alice", "bob"))


async def connect(server: ServerProcess, key: dict[str, str], encoding: str) -> Client:
    client = await Client.connect(server.url, encoding=encoding)
    await client.login(key["apiKey"], key["apiSecret"])
    return client


class Stream:
    """Every numbered message one client got on its private streams, checked by the client's
    tracker as it comes: each one follows the last (a gap raises, a repeat is refused)."""

    def __init__(self, tracker: StreamTracker) -> None:
        self.tracker = tracker
        self.messages: dict[str, list[tuple[str, Any]]] = {c: [] for c in CHANNELS}

    @classmethod
    def starting_at(cls, start: dict[str, int]) -> Stream:
        tracker = StreamTracker()
        tracker.last = dict(start)
        return cls(tracker)

    @property
    def last(self) -> dict[str, int]:
        return self.tracker.last

    def take(self, note: Notification) -> None:
        channel = CHANNEL_OF.get(note.method)
        if channel is None or note.params.get("streamSeq") is None:
            return  # not a private stream message, or a fresh balances snapshot row
        assert self.tracker.observe(note), f"{channel} {note.params['streamSeq']} came twice"
        self.messages[channel].append((note.method, note.params))

    async def read_until(self, client: Client, heads: dict[str, int]) -> None:
        """Read ``client``'s notifications until every stream has reached ``heads``."""
        while any(self.last[c] < heads[c] for c in CHANNELS):
            try:
                self.take(await client.next_notification(timeout=10))
            except TimeoutError:
                raise AssertionError(f"stuck at {self.last}, expected {heads}") from None


async def heads(server: ServerProcess, key: dict[str, str], encoding: str) -> dict[str, int]:
    """Where each of the account's streams stands: the reply to a fresh subscription says."""
    probe = await connect(server, key, encoding)
    out = {c: (await probe.subscribe(c))["streamSeq"] for c in CHANNELS}
    await probe.close()
    return out


async def subscribe_fresh(client: Client) -> dict[str, int]:
    return {c: (await client.subscribe(c))["streamSeq"] for c in CHANNELS}


async def trade(alice: Client, bob: Client, n: int) -> list[dict[str, Any]]:
    """Orders of alice's placed, partly and wholly filled by bob, amended and cancelled.
    Returns alice's acknowledged order states."""
    price = f"{3000 + n % 7}.00"
    acked = [await alice.place_order("ETH_USD", "buy", "1.000", price=price)]
    await bob.place_order("ETH_USD", "sell", "0.400", price=price)  # a partial fill
    acked.append(
        await alice.call("order_amend", {"orderId": acked[0]["orderId"], "quantity": "0.900"})
    )
    acked.append(await alice.call("order_cancel", {"orderId": acked[0]["orderId"]}))
    acked.append(await alice.place_order("ETH_USD", "sell", "0.500", price="3100.00"))
    await bob.place_order("ETH_USD", "buy", "0.500", price="3100.00")  # filled whole
    return acked


async def churn(alice: Client, rounds: int, acked: list[dict[str, Any]] | None = None) -> None:
    """Orders placed and cancelled: two order updates and two balance updates a round. The
    acknowledged states go to ``acked``."""
    done = [] if acked is None else acked
    for n in range(rounds):
        order = await alice.place_order("ETH_USD", "buy", "0.010", price=f"{2000 + n}.00")
        done.append(order)
        done.append(await alice.call("order_cancel", {"orderId": order["orderId"]}))


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory, encoding: str) -> Iterator[ServerProcess]:
    """A server whose streams keep 50 messages each in memory: a long resume is read from
    storage first, then from the buffer."""
    db = tmp_path_factory.mktemp(f"resume-{encoding}") / "resume.db"
    keys = prepare(db)
    with ServerProcess.start(db, demo=False, args=("--stream-buffer", "50")) as proc:
        proc.keys = keys  # type: ignore[attr-defined]
        yield proc


async def test_a_client_that_reconnects_and_resumes_sees_what_a_connected_one_saw(
    venue: ServerProcess, encoding: str
) -> None:
    keys = venue.keys  # type: ignore[attr-defined]
    alice, bob = keys["alice"], keys["bob"]
    observer = await connect(venue, alice, encoding)  # never goes away
    watched = Stream.starting_at(await subscribe_fresh(observer))
    client = await connect(venue, alice, encoding)
    seen = Stream(StreamTracker())
    for channel in CHANNELS:
        await seen.tracker.subscribe(client, channel)
    assert seen.last == watched.last  # nothing happened in between
    trader, counterparty = (
        await connect(venue, alice, encoding),
        await connect(venue, bob, encoding),
    )

    await trade(trader, counterparty, 0)
    now = await heads(venue, alice, encoding)
    await seen.read_until(client, now)
    for note in client.drain_notifications():
        seen.take(note)
    client.abort()  # gone, without a close frame

    # While it is away: more than a page, and more than the 50 a stream keeps in memory.
    for n in range(1, 8):
        await trade(trader, counterparty, n)
    await churn(trader, 40)

    back = await connect(venue, alice, encoding)
    # Resume while the account keeps trading: the replay meets live messages midway.
    busy = asyncio.create_task(churn(trader, 30))
    assert await seen.tracker.resume(back) == {"orders": True, "balances": True}
    await busy
    await trade(trader, counterparty, 9)
    now = await heads(venue, alice, encoding)
    await seen.read_until(back, now)
    await watched.read_until(observer, now)

    assert seen.last == watched.last == now
    assert len(watched.messages["orders"]) > 100 and len(watched.messages["balances"]) > 100
    assert seen.messages == watched.messages
    kinds = {method for method, _ in watched.messages["orders"]}
    assert kinds == {"orders", "fills"}
    for c in (observer, back, trader, counterparty):
        await c.close()


async def test_resume_errors_are_clear(venue: ServerProcess, encoding: str) -> None:
    keys = venue.keys  # type: ignore[attr-defined]
    client = await connect(venue, keys["alice"], encoding)
    head = (await client.subscribe("orders"))["streamSeq"]
    await client.call("unsubscribe", {"channel": "orders"})
    with pytest.raises(RpcError) as ahead:
        await client.subscribe("orders", since=head + 1)
    assert ahead.value.code == -32602 and f"streamSeq {head}" in str(ahead.value.data)
    with pytest.raises(RpcError) as public:
        await client.subscribe("book.ETH_USD", since=1)
    assert public.value.code == -32602 and "orders and balances" in str(public.value.data)
    if encoding == "json":  # protobuf's since is unsigned
        with pytest.raises(RpcError) as negative:
            await client.subscribe("orders", since=-1)
        assert negative.value.code == -32602
    # Resuming at the head replays nothing and goes on live.
    assert (await client.subscribe("orders", since=head)) == {
        "channel": "orders",
        "streamSeq": head,
    }
    order = await client.place_order("ETH_USD", "buy", "0.001", price="1000.00")
    (note,) = await take(client, 1, {"orders"})
    assert (note.params["orderId"], note.params["streamSeq"]) == (order["orderId"], head + 1)
    assert "streamSeq" not in order  # a reply is not a stream message
    await client.close()


async def test_a_reply_comes_before_the_stream_it_starts_even_behind_an_order(
    venue: ServerProcess, encoding: str
) -> None:
    """A JSON-RPC batch [order_place, subscribe]: the reply waits for the order to be durable,
    and the subscription starts where its reply says, with the order's own update next."""
    if encoding != "json":
        pytest.skip("batches are JSON-RPC only")
    keys = venue.keys  # type: ignore[attr-defined]
    client = await Client.connect(venue.url, raw=True)
    login = {"apiKey": keys["alice"]["apiKey"], "apiSecret": keys["alice"]["apiSecret"]}
    client.send_text(
        json.dumps({"jsonrpc": "2.0", "method": "rpc.login", "id": 1, "params": login})
    )
    assert (await client.recv_json())["result"] is True
    batch = [
        {"jsonrpc": "2.0", "method": "order_place", "id": 2, "params": {
            "symbol": "ETH_USD", "side": "buy", "type": "limit", "quantity": "0.001",
            "price": "1000.00"}},
        {"jsonrpc": "2.0", "method": "subscribe", "id": 3, "params": {"channel": "orders"}},
    ]  # fmt: skip
    client.send_text(json.dumps(batch))
    placed, subscribed = await client.recv_json()
    head = subscribed["result"]["streamSeq"]
    update = await client.recv_json()
    assert update["method"] == "orders"
    assert update["params"]["orderId"] == placed["result"]["orderId"]
    assert update["params"]["streamSeq"] == head + 1
    await client.close()


async def test_market_data_resubscription_starts_with_a_snapshot(
    server: ServerProcess, encoding: str
) -> None:
    """Public channels are not resumed: a new subscription starts from the current state."""
    last_seq = 0
    for _ in range(2):
        client = await Client.connect(server.url, encoding=encoding)
        await client.login(server.api_key, server.api_secret)
        await client.subscribe("book.BTC_USD")
        await client.subscribe("ticker.BTC_USD")
        first: dict[str, Any] = {}
        while len(first) < 2:
            (note,) = await take(client, 1, {"book", "ticker"})
            first.setdefault(note.method, note.params)
        assert first["book"]["type"] == "snapshot" and first["book"]["seq"] >= last_seq
        assert first["ticker"]["symbol"] == "BTC_USD" and first["ticker"]["channel"]
        last_seq = first["book"]["seq"]
        client.abort()


async def restart_and_resume(tmp_path: Path, encoding: str, sig: int) -> None:
    db = tmp_path / "restart.db"
    keys = prepare(db)
    alice, bob = keys["alice"], keys["bob"]
    server = ServerProcess.start(db, demo=False)
    try:
        client = await connect(server, alice, encoding)
        seen = Stream(StreamTracker())
        for channel in CHANNELS:
            await seen.tracker.subscribe(client, channel)
        start = dict(seen.last)
        assert start == {"orders": 0, "balances": 2}  # the offline deposits were numbered
        trader, counterparty = (
            await connect(server, alice, encoding),
            await connect(server, bob, encoding),
        )
        acked = await trade(trader, counterparty, 0)
        await seen.read_until(client, await heads(server, alice, encoding))
        await client.close()
        for n in range(1, 4):  # while it is away
            acked += await trade(trader, counterparty, n)
        if sig == signal.SIGKILL:
            # Die with commands in flight: what was acknowledged must be there after the restart.
            burst = asyncio.create_task(churn(trader, 10_000, acked))
            count = len(acked)

            async def progress() -> int:
                return len(acked) - count

            await eventually(progress, lambda n: n >= 20, what="the burst under way")
        server.process.send_signal(sig)
        server.process.wait()
        if sig == signal.SIGKILL:
            with pytest.raises((ConnectionClosed, TimeoutError)):
                await burst
    finally:
        server.stop()  # a no-op once killed; stops it if the test failed before
    for c in (trader, counterparty):
        c.abort()

    server = ServerProcess.start(db, demo=False)
    try:
        back = await connect(server, alice, encoding)
        assert await seen.tracker.resume(back) == {"orders": True, "balances": True}
        trader, counterparty = (
            await connect(server, alice, encoding),
            await connect(server, bob, encoding),
        )
        acked += await trade(trader, counterparty, 9)  # numbers go on after the restart
        now = await heads(server, alice, encoding)
        await seen.read_until(back, now)
        # The whole history, from the first message: storage is all there is after a restart.
        everything = await connect(server, alice, encoding)
        for channel in CHANNELS:
            await everything.subscribe(channel, since=0)
        history = Stream.starting_at({c: 0 for c in CHANNELS})
        await history.read_until(everything, now)
        assert len(history.messages["balances"]) == now["balances"]
        assert seen.messages == {
            c: [m for m in history.messages[c] if m[1]["streamSeq"] > start[c]] for c in CHANNELS
        }
        states = {(m[1]["orderId"], m[1]["status"], m[1]["updatedAt"])
                  for m in history.messages["orders"] if m[0] == "orders"}  # fmt: skip
        assert {(o["orderId"], o["status"], o["updatedAt"]) for o in acked} <= states
        for c in (back, trader, counterparty, everything):
            await c.close()
    finally:
        server.stop()


async def test_resume_after_a_restart_comes_from_storage(tmp_path: Path, encoding: str) -> None:
    await restart_and_resume(tmp_path, encoding, signal.SIGTERM)


async def test_resume_after_kill_9_loses_nothing_acknowledged(
    tmp_path: Path, encoding: str
) -> None:
    await restart_and_resume(tmp_path, encoding, signal.SIGKILL)


async def test_a_resume_from_before_what_is_kept_is_refused(tmp_path: Path, encoding: str) -> None:
    """Messages older than the retention (1 s here) are pruned; a resume from before them gets
    2009, and the tracker starts that stream afresh instead."""
    db = tmp_path / "retention.db"
    keys = prepare(db)
    args = ("--stream-retention", "1s", "--stream-buffer", "1")
    with ServerProcess.start(db, demo=False, args=args) as server:
        client = await connect(server, keys["alice"], encoding)
        await churn(client, 3)

        async def resume_from_start() -> int | None:
            try:
                await client.subscribe("orders", since=0)
            except RpcError as exc:
                return exc.code
            await client.call("unsubscribe", {"channel": "orders"})
            return None

        await eventually(resume_from_start, lambda code: code == 2009, what="pruned", timeout=15)
        with pytest.raises(RpcError) as gone:
            await client.subscribe("orders", since=0)
        assert "no longer keeps the messages after streamSeq 0" in gone.value.message
        stale = Stream.starting_at({"orders": 0})
        assert await stale.tracker.resume(client) == {"orders": False}
        assert stale.last == {"orders": 6}  # where it started afresh
        await client.close()
