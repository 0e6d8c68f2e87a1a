"""Clients that try to make the server do too much: each case is an attack a probe found, or
one of its class, answered over a real socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import eventually
from tests.raw_websocket import BINARY, CLOSE, PING, TEXT, RawWebSocket, encode
from tradews.client import Client, ConnectionClosed, RpcError
from tradews.codecs import protobuf as pbc
from tradews.codecs.pb import tradews_pb2 as pb
from tradews.testing import ServerProcess


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of this module's own: the floods below must not disturb other tests."""
    db = tmp_path_factory.mktemp("abuse") / "abuse.db"
    with ServerProcess.start(db, demo=True, args=("--no-demo-traders",)) as proc:
        yield proc


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def still_serves(server: ServerProcess) -> None:
    """Another client gets a login and a firm quote as usual. It connects from the flood's
    address (all tests run on 127.0.0.1), whose anonymous budget the flood shares: it waits as
    told by retryAfter, as a well-behaved client does."""
    async with await Client.connect(server.url) as c:
        for _ in range(20):
            try:
                await c.login(server.api_key, server.api_secret)
                break
            except RpcError as exc:
                assert exc.code == 3002, exc
                await asyncio.sleep(exc.data["retryAfter"] / 1000)
        await c.quote_request("BTC_USD")
        note = await c.next_notification(timeout=5)
        assert note.method == "quote"


def request(method: str, params: dict[str, Any] | None, request_id: int, encoding: str) -> bytes:
    if encoding == "proto":
        return bytes(pbc.request_message(method, params, request_id).SerializeToString())
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode()


# The failed-login limit --------------------------------------------------------------------


async def open_orders_of_demo(server: ServerProcess) -> list[dict[str, Any]]:
    async with await Client.connect(server.url) as c:
        await c.login(server.api_key, server.api_secret)
        return list(await c.call("orders_open"))


ORDER = {"symbol": "BTC_USD", "side": "buy", "type": "limit", "quantity": "0.0001",
         "price": "1.00", "clientOrderId": "after-the-limit"}  # fmt: skip


async def test_a_batch_after_the_login_limit_is_not_processed(lab: ServerProcess) -> None:
    """[20 wrong logins, right login, order_place] in one batch: the fifth failure ends it."""
    wrong = {"apiKey": lab.api_key, "apiSecret": "wrong"}
    batch = [{"jsonrpc": "2.0", "method": "rpc.login", "params": wrong, "id": i} for i in range(20)]
    batch.append({"jsonrpc": "2.0", "method": "rpc.login", "id": 20,
                  "params": {"apiKey": lab.api_key, "apiSecret": lab.api_secret}})  # fmt: skip
    batch.append({"jsonrpc": "2.0", "method": "order_place", "params": ORDER, "id": 21})
    async with await Client.connect(lab.url, raw=True) as c:
        c.send_text(json.dumps(batch))
        replies = json.loads(await c.recv_frame())
        closed = await c.wait_closed()
    assert [r["id"] for r in replies] == [0, 1, 2, 3, 4]
    assert [r["error"]["code"] for r in replies] == [1002, 1002, 1002, 1002, 1007]
    assert closed.code == 1008 and closed.reason == "too many failed logins"
    assert not [
        o for o in await open_orders_of_demo(lab) if o["clientOrderId"] == ORDER["clientOrderId"]
    ]


async def test_frames_after_the_login_limit_are_not_processed(
    lab: ServerProcess, encoding: str
) -> None:
    """The same as separate frames, all written before the server answers any (so they are
    already received when the limit trips), in both encodings."""
    ws = await RawWebSocket.connect(
        lab.url, protocol="tradews.v1.proto" if encoding == "proto" else None
    )
    op = BINARY if encoding == "proto" else TEXT
    wrong = {"apiKey": lab.api_key, "apiSecret": "wrong"}
    right = {"apiKey": lab.api_key, "apiSecret": lab.api_secret}
    order = dict(ORDER, clientOrderId=f"after-limit-{encoding}")
    frames = [request("rpc.login", wrong, i + 1, encoding) for i in range(20)]
    frames += [
        request("rpc.login", right, 21, encoding),
        request("order_place", order, 22, encoding),
    ]
    for data in frames:
        ws.send_frame(op, data)
    replies = []
    while (frame := await ws.recv()) is not None and frame.opcode != CLOSE:
        replies.append(frame.payload)
    ws.close()
    assert len(replies) == 5  # four 1002, one 1007, and nothing for the other seventeen frames
    if encoding == "json":
        assert json.loads(replies[-1])["error"]["code"] == 1007
    else:
        assert pb.ServerMessage.FromString(replies[-1]).error.code == 1007
    opened = await open_orders_of_demo(lab)
    assert not [o for o in opened if o["clientOrderId"] == order["clientOrderId"]]


# Output that is never read -----------------------------------------------------------------


async def test_a_ping_flood_that_never_reads_pongs_leaves_memory_bounded(
    lab: ServerProcess,
) -> None:
    before = rss_bytes(lab.process.pid)
    floods = [await RawWebSocket.connect(lab.url, read_limit=4096) for _ in range(4)]
    pings = encode(PING, b"x" * 125) * 1000
    sent = 0

    async def flood(ws: RawWebSocket) -> None:
        nonlocal sent
        # Stops when the server stops reading: drain() then waits for ever.
        for _ in range(2000):
            ws.send(pings)
            sent += len(pings)
            await ws.drain()

    await asyncio.wait([asyncio.create_task(flood(ws)) for ws in floods], timeout=4)
    grown = rss_bytes(lab.process.pid) - before
    await still_serves(lab)
    for ws in floods:
        ws.close()
    assert sent > 4 << 20, "the flood did not get going"
    assert grown < 20 << 20, f"the server grew by {grown >> 20} MiB answering pings nobody reads"


DISCOVER_BATCH = json.dumps(
    [{"jsonrpc": "2.0", "method": "rpc.discover", "id": i} for i in range(100)]
).encode()


async def reply_flood(server: ServerProcess, sockets: int = 40, batches: int = 14) -> int:
    """``sockets`` clients each send ``batches`` batches of 100 rpc.discover (1.7 MB of replies
    a batch) and never read. Returns how much the server grew, in bytes."""
    before = rss_bytes(server.process.pid)
    opened = [await RawWebSocket.connect(server.url, read_limit=4096) for _ in range(sockets)]

    async def flood(ws: RawWebSocket) -> None:
        for _ in range(batches):
            ws.send_frame(TEXT, DISCOVER_BATCH)
            await ws.drain()

    await asyncio.wait([asyncio.create_task(flood(ws)) for ws in opened], timeout=5)
    grown = rss_bytes(server.process.pid) - before
    await still_serves(server)
    for ws in opened:
        ws.close()
    return grown


async def test_unread_reply_floods_leave_memory_bounded(lab: ServerProcess) -> None:
    """With the default limits, replies cost rate-limit budget: most of the flood is refused."""
    grown = await reply_flood(lab)
    assert grown < 20 << 20, f"the server grew by {grown >> 20} MiB holding unread replies"


async def test_output_caps_bound_memory_without_rate_limits(tmp_path: Path) -> None:
    """Rate limits lifted, the output caps alone hold: reading stops above the high-water mark,
    a client is dropped at --max-unread-mib, and all together stay under the output budget."""
    unlimited = ("--rate-limit-connection", "1000000/1000000", "--rate-limit-address",
                 "1000000/1000000", "--max-unread-mib", "2", "--output-budget-mib", "16")  # fmt: skip
    with ServerProcess.start(tmp_path / "o.db", demo=True, args=unlimited) as server:
        grown = await reply_flood(server)
        assert grown < 48 << 20, f"the server grew by {grown >> 20} MiB holding unread replies"
        # The budget and the per-client cap were what held it: their drops are counted.
        metrics = await asyncio.to_thread(server.metrics)
        assert metrics["tradews_slow_consumers_dropped_total"] > 0


async def test_discover_costs_its_weight(tmp_path: Path) -> None:
    """A batch of 100 rpc.discover is not 100 documents: the rate limit stops most of it."""
    with (
        ServerProcess.start(tmp_path / "d.db", demo=True) as server,
    ):
        async with await Client.connect(server.url, raw=True) as c:
            batch = [{"jsonrpc": "2.0", "method": "rpc.discover", "id": i} for i in range(100)]
            c.send_text(json.dumps(batch))
            replies = json.loads(await c.recv_frame())
    served = [r for r in replies if "result" in r]
    limited = [r for r in replies if "error" in r]
    assert len(replies) == 100
    assert 0 < len(served) < 100
    assert {r["error"]["code"] for r in limited} == {3002}
    assert all(r["error"]["data"]["retryAfter"] > 0 for r in limited)
    assert all(r["result"] == served[0]["result"] for r in served)


# Work per frame ----------------------------------------------------------------------------


async def test_resubscribing_a_book_is_refused_not_resent(
    lab: ServerProcess, encoding: str
) -> None:
    async with await Client.connect(lab.url, encoding=encoding) as c:
        await c.login(lab.api_key, lab.api_secret)
        await c.subscribe("book.BTC_USD")
        snapshot = await c.next_notification()
        assert snapshot.method == "book" and snapshot.params["type"] == "snapshot"
        for _ in range(5):
            with pytest.raises(RpcError) as again:
                await c.subscribe("book.BTC_USD")
            assert again.value.code == 2007
        assert await c.call("unsubscribe", {"channel": "book.BTC_USD"}) is True
        await c.subscribe("book.BTC_USD")  # after unsubscribing, a fresh snapshot
        assert (await c.next_notification()).params["type"] == "snapshot"


async def test_a_batch_of_book_subscriptions_sends_one_snapshot(lab: ServerProcess) -> None:
    async with await Client.connect(lab.url, raw=True) as c:
        c.send_text(json.dumps({"jsonrpc": "2.0", "method": "rpc.login", "id": 0,
                                "params": {"apiKey": lab.api_key, "apiSecret": lab.api_secret}}))  # fmt: skip
        assert json.loads(await c.recv_frame())["result"] is True
        batch = [
            {
                "jsonrpc": "2.0",
                "method": "subscribe",
                "params": {"channel": "book.ETH_USD"},
                "id": i,
            }
            for i in range(1, 101)
        ]
        c.send_text(json.dumps(batch))
        replies = json.loads(await c.recv_frame())
        codes = [r["error"]["code"] for r in replies if "error" in r]
        assert [r["result"] for r in replies if "result" in r] == [{"channel": "book.ETH_USD"}]
        # The rest are refused: already subscribed, or over the rate limit.
        assert len(codes) == 99 and set(codes) <= {2007, 3002}
        snapshot = json.loads(await c.recv_frame())
        assert snapshot["method"] == "book" and snapshot["params"]["type"] == "snapshot"
        c.send_text(json.dumps({"jsonrpc": "2.0", "method": "time", "id": 200}))
        assert json.loads(await c.recv_frame())["id"] == 200  # no second snapshot came first


# Rate limits -------------------------------------------------------------------------------


async def test_over_the_rate_limit_is_refused_with_retry_after(
    tmp_path: Path, encoding: str
) -> None:
    args = ("--no-demo-traders", "--rate-limit-connection", "5/10", "--rate-limit-key", "50/100")
    with ServerProcess.start(tmp_path / "r.db", demo=True, args=args) as server:
        async with await Client.connect(server.url, encoding=encoding) as c:
            await c.login(server.api_key, server.api_secret)  # costs 5
            await c.call("balances")
            for _ in range(4):
                await c.call("time")
            with pytest.raises(RpcError) as info:
                await c.call("time")
            assert info.value.code == 3002
            retry = info.value.data["retryAfter"]
            assert 0 < retry <= 1000
            await asyncio.sleep(retry / 1000)
            assert isinstance(await c.time(), int)  # served again once the budget refilled


async def test_replies_carry_the_budget_when_asked(tmp_path: Path, encoding: str) -> None:
    args = ("--no-demo-traders", "--rate-limit-connection", "10/20")
    with ServerProcess.start(tmp_path / "b.db", demo=True, args=args) as server:
        raw = encoding == "json"
        async with await Client.connect(
            server.url + "/?rateLimits=1", encoding=encoding, raw=raw
        ) as c:
            if raw:
                c.send_text(json.dumps({"jsonrpc": "2.0", "method": "time", "id": 1}))
                reply = json.loads(await c.recv_frame())
                budget = reply["rateLimit"]
                assert reply["result"]["time"] > 0
            else:
                c._listener.proto = False  # read the raw reply below
                c._listener.frames = asyncio.Queue()
                c.send_binary(request("time", None, 1, "proto"))
                budget_pb = pb.ServerMessage.FromString(await c.recv_frame()).rate_limit
                budget = {"remaining": budget_pb.remaining, "limit": budget_pb.limit,
                          "resetMs": budget_pb.reset_ms}  # fmt: skip
            assert budget["limit"] == 20 and budget["remaining"] == 19
            assert 0 < budget["resetMs"] <= 200
        async with await Client.connect(server.url, raw=True) as plain:
            plain.send_text(json.dumps({"jsonrpc": "2.0", "method": "time", "id": 1}))
            assert "rateLimit" not in json.loads(await plain.recv_frame())


async def test_a_client_that_ignores_retry_after_is_disconnected(tmp_path: Path) -> None:
    args = ("--no-demo-traders", "--rate-limit-connection", "1/5")
    with ServerProcess.start(tmp_path / "i.db", demo=True, args=args) as server:
        async with await Client.connect(server.url, raw=True) as c:
            for _ in range(3):
                batch = [{"jsonrpc": "2.0", "method": "time", "id": i} for i in range(50)]
                c.send_text(json.dumps(batch))
            closed = await c.wait_closed()
            assert closed.code == 1008 and closed.reason == "rate limit ignored"
        with pytest.raises((ConnectionClosed, RpcError)):
            await c.call("time")


async def test_snapshots_of_a_deep_book_are_bounded_by_depth(tmp_path: Path) -> None:
    """A 600-level book: a snapshot holds the depth asked for (100 by default, 500 at most),
    not every level, and a batch asking for more gets one snapshot and refusals."""
    args = ("--no-demo-traders", "--rate-limit-connection", "100000/100000",
            "--rate-limit-key", "100000/100000")  # fmt: skip
    with ServerProcess.start(tmp_path / "deep.db", demo=True, args=args) as server:
        async with await Client.connect(server.url) as c:
            await c.login(server.api_key, server.api_secret)
            await eventually(
                lambda: c.call("balances"),
                lambda rows: any(b["asset"] == "USD" for b in rows),
                what="demo funding",
            )
            for i in range(600):
                await c.place_order("SOL_USD", "buy", "0.01", price=f"{1 + i}.000")
            for depth, levels in ((None, 100), (10, 10), (500, 500)):
                params: dict[str, Any] = {"channel": "book.SOL_USD"}
                if depth is not None:
                    params["depth"] = depth
                await c.call("subscribe", params)
                snapshot = (await c.next_notification()).params
                assert snapshot["type"] == "snapshot" and len(snapshot["bids"]) == levels
                assert snapshot["bids"][0][0] == "600.000"  # the best levels
                await c.call("unsubscribe", {"channel": "book.SOL_USD"})
            with pytest.raises(RpcError) as info:
                await c.call("subscribe", {"channel": "book.SOL_USD", "depth": 5000})
            assert info.value.code == -32602 and "depth must be one of" in str(info.value.data)
