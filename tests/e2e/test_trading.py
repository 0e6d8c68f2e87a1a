"""Trading over real sockets: orders crossing, streams, book replicas, RFQ execution, funds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import pytest

from tests.helpers import balance, eventually, server_time_passes, take
from tradews.client import BookReplica, Client, RpcError
from tradews.testing import ServerProcess, run_cli


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory, encoding: str) -> Iterator[ServerProcess]:
    """A demo server without simulated traders: the books hold only what the tests put there.
    One per encoding, so each run of the suite starts from the same empty books."""
    db = tmp_path_factory.mktemp(f"venue-{encoding}") / "venue.db"
    args = ("--no-demo-traders", "--quote-ttl", "0.9", "--tick-interval", "0.05")
    with ServerProcess.start(db, demo=True, args=args) as proc:
        proc.cli("account", "create", "fund-b", "--tier", "enterprise")
        key = proc.cli("key", "create", "fund-b")
        proc.fund_b = key  # type: ignore[attr-defined]
        for asset, amount in (("USD", "1000000"), ("BTC", "50"), ("ETH", "500"), ("SOL", "1000")):
            out = proc.cli("deposit", "fund-b", asset, amount, "--ref", f"seed-b-{asset}")
            assert out["ok"] and out["via"] == "server", out
        yield proc


async def connect(venue: ServerProcess, who: str = "demo", encoding: str = "json") -> Client:
    client = await Client.connect(venue.url, encoding=encoding)
    if who == "demo":
        await client.login(venue.api_key, venue.api_secret)
    else:
        key = venue.fund_b  # type: ignore[attr-defined]
        await client.login(key["apiKey"], key["apiSecret"])
    return client


@pytest.fixture
async def alice(venue: ServerProcess, encoding: str) -> AsyncIterator[Client]:
    c = await connect(venue, "demo", encoding)
    # Demo funding is submitted at start; wait until it is durable and visible.
    await eventually(
        lambda: c.call("balances"),
        lambda rows: any(b["asset"] == "USD" for b in rows),
        what="the demo account's USD funding",
    )
    await c.call("order_cancel_all")
    yield c
    await c.close()


@pytest.fixture
async def bob(venue: ServerProcess, encoding: str) -> AsyncIterator[Client]:
    c = await connect(venue, "fund-b", encoding)
    await c.call("order_cancel_all")
    yield c
    await c.close()


async def test_two_clients_cross_and_a_third_rebuilds_the_book(
    venue: ServerProcess, alice: Client, bob: Client
) -> None:
    watcher = await connect(venue, "demo", alice.encoding)
    info = {i["symbol"]: i for i in await watcher.call("instruments")}["ETH_USD"]
    replica = BookReplica(info["tick"], info["lot"])
    for c in (alice, bob):
        await c.subscribe("orders")
        held = await c.call("balances")
        await c.subscribe("balances")
        await take(c, len(held), {"balances"})  # the subscription's snapshot comes first
    await watcher.subscribe("book.ETH_USD")
    await watcher.subscribe("trades.ETH_USD")
    replica.apply((await take(watcher, 1, {"book"}))[0].params)
    alice.drain_notifications()
    bob.drain_notifications()
    usd_before = balance(await bob.call("balances"), "USD")[0]

    sell = await alice.place_order(
        "ETH_USD", "sell", "2.000", price="3000.00", client_order_id="s1"
    )
    assert sell["status"] == "new" and sell["remainingQuantity"] == "2.000"
    await alice.place_order("ETH_USD", "sell", "1.000", price="3001.00")
    buy = await bob.place_order("ETH_USD", "buy", "2.500", price="3001.00")
    assert buy["status"] == "filled" and buy["filledQuantity"] == "2.500"

    # The seller: acknowledged, then a fill and its trade confirmation, in order.
    notes = await take(alice, 6, {"orders", "fills"})
    seen = [(n.method, n.params.get("status"), n.params.get("orderId")) for n in notes]
    assert seen[0] == ("orders", "new", sell["orderId"])
    fills = [n.params for n in notes if n.method == "fills"]
    assert fills[0]["orderId"] == sell["orderId"] and fills[0]["liquidity"] == "maker"
    assert (fills[0]["price"], fills[0]["quantity"]) == ("3000.00", "2.000")
    assert fills[0]["feeAsset"] == "USD" and Decimal(fills[0]["fee"]) == Decimal("3.00")  # 5 bps
    statuses = [n.params["status"] for n in notes if n.method == "orders"]
    assert "filled" in statuses

    # The buyer: ack before fills, two fills at the makers' prices, taker fees in ETH, and
    # balance updates that end where the balances method says.
    notes = await take(bob, 7, {"orders", "fills", "balances"})
    kinds = [n.method for n in notes]
    assert kinds[0] == "orders" and notes[0].params["status"] == "new"
    assert kinds.index("fills") < len(kinds) - 1 - kinds[::-1].index("balances")
    bob_fills = [n.params for n in notes if n.method == "fills"]
    assert [(f["price"], f["quantity"], f["liquidity"]) for f in bob_fills] == [
        ("3000.00", "2.000", "taker"),
        ("3001.00", "0.500", "taker"),
    ]
    assert bob_fills[0]["feeAsset"] == "ETH" and Decimal(bob_fills[0]["fee"]) == Decimal("0.002")
    usd_after = balance(await bob.call("balances"), "USD")[0]
    assert usd_before - usd_after == Decimal("2.000") * 3000 + Decimal("0.5") * 3001
    streamed = {n.params["asset"]: n.params for n in notes if n.method == "balances"}
    while Decimal(streamed.get("USD", {}).get("available", "-1")) != usd_after:
        note = (await take(bob, 1, {"balances"}))[0]
        streamed[note.params["asset"]] = note.params
    streamed.update((n.params["asset"], n.params) for n in bob.drain_notifications()
                    if n.method == "balances")  # fmt: skip
    assert Decimal(streamed["USD"]["available"]) == usd_after
    assert set(streamed) == {"USD", "ETH"}

    # The watcher: trades, and a book that, rebuilt from snapshot + deltas, equals the server's.
    trades = []
    while len(trades) < 2:
        note = (await take(watcher, 1, {"book", "trades"}))[0]
        if note.method == "book":
            replica.apply(note.params)  # raises on a sequence gap or checksum mismatch
        else:
            trades.append(note)
    assert [(t.params["price"], t.params["takerSide"]) for t in trades] == [
        ("3000.00", "buy"),
        ("3001.00", "buy"),
    ]
    fresh = await connect(venue, "demo", alice.encoding)
    await fresh.subscribe("book.ETH_USD")
    snapshot = (await take(fresh, 1, {"book"}))[0].params
    while replica.seq < snapshot["seq"]:  # the watcher catches up on the deltas in flight
        replica.apply((await take(watcher, 1, {"book"}))[0].params)
    assert snapshot["seq"] == replica.seq
    assert replica.asks == {Decimal(p): Decimal(q) for p, q in snapshot["asks"]}
    assert replica.bids == {Decimal(p): Decimal(q) for p, q in snapshot["bids"]}
    assert replica.asks == {Decimal("3001.00"): Decimal("0.500")}
    for c in (watcher, fresh):
        await c.close()


async def test_client_order_id_is_idempotent(alice: Client) -> None:
    params = {"price": "100.00", "client_order_id": "idem-1"}
    first = await alice.place_order("ETH_USD", "buy", "1.000", **params)
    again = await alice.place_order("ETH_USD", "buy", "1.000", **params)
    assert again["orderId"] == first["orderId"]
    assert len([o for o in await alice.call("orders_open") if o["clientOrderId"] == "idem-1"]) == 1
    with pytest.raises(RpcError) as info:
        await alice.place_order("ETH_USD", "buy", "2.000", **params)
    assert info.value.code == 4001 and info.value.data["reason"] == "DUPLICATE_CLIENT_ORDER_ID"
    status = await alice.call("order_status", {"clientOrderId": "idem-1"})
    assert status["orderId"] == first["orderId"] and status["status"] == "new"
    cancelled = await alice.call("order_cancel", {"clientOrderId": "idem-1"})
    assert cancelled["status"] == "cancelled"
    closed = await alice.call("order_status", {"orderId": first["orderId"]})
    assert closed["status"] == "cancelled"


@pytest.mark.parametrize(
    "order, reason",
    [
        ({"symbol": "ETH_USD", "side": "buy", "quantity": "1.000", "price": "100.001"}, "INVALID_PRICE"),
        ({"symbol": "ETH_USD", "side": "buy", "quantity": "1.0005", "price": "100.00"}, "INVALID_QUANTITY"),
        ({"symbol": "ETH_USD", "side": "buy", "quantity": "5000", "price": "100.00"}, "ABOVE_MAX_SIZE"),
        ({"symbol": "ETH_USD", "side": "buy", "quantity": "999", "price": "3000.00"}, "INSUFFICIENT_FUNDS"),
        ({"symbol": "ETH_USD", "side": "sell", "quantity": "1.000"}, "NO_LIQUIDITY"),
        ({"symbol": "NOPE_USD", "side": "sell", "quantity": "1"}, "UNKNOWN_SYMBOL"),
        ({"symbol": "ETH_USD", "side": "sell", "quantity": "1.000", "price": "100000000000000000"},
         "INVALID_PRICE"),
        ({"symbol": "ETH_USD", "side": "buy", "quantity": "1e20", "price": "1.00"},
         "INVALID_QUANTITY"),
        ({"symbol": "ETH_USD", "side": "buy", "quantity": "1.000", "price": "1.00",
          "time_in_force": "FOK"}, "FOK_NOT_FILLABLE"),
        ({"symbol": "ETH_USD", "side": "buy", "quantity": "1.000", "price": "1.00",
          "time_in_force": "IOC", "post_only": True}, "POST_ONLY_NOT_GTC"),
    ],
)  # fmt: skip
async def test_rejections_carry_reason_codes(
    alice: Client, order: dict[str, Any], reason: str
) -> None:
    with pytest.raises(RpcError) as info:
        await alice.place_order(**order)
    assert info.value.code == 4001
    assert info.value.data == {"reason": reason}
    assert info.value.message


async def test_post_only_and_amend(alice: Client, bob: Client) -> None:
    ask = await bob.place_order("SOL_USD", "sell", "10.00", price="150.000")
    with pytest.raises(RpcError) as info:
        await alice.place_order("SOL_USD", "buy", "1.00", price="150.000", post_only=True)
    assert info.value.data["reason"] == "POST_ONLY_WOULD_TAKE"
    bid = await alice.place_order("SOL_USD", "buy", "5.00", price="149.000", post_only=True)
    smaller = await alice.call("order_amend", {"orderId": bid["orderId"], "quantity": "3.00"})
    assert smaller["quantity"] == "3.00" and smaller["remainingQuantity"] == "3.00"
    moved = await alice.call("order_amend", {"orderId": bid["orderId"], "price": "149.500"})
    assert moved["price"] == "149.500" and moved["status"] == "new"
    # A post-only order may not be amended into a taker...
    with pytest.raises(RpcError) as info:
        await alice.call("order_amend", {"orderId": bid["orderId"], "price": "150.000"})
    assert info.value.data["reason"] == "POST_ONLY_WOULD_TAKE"
    # ...an ordinary one trades at once when amended through the ask.
    plain = await alice.place_order("SOL_USD", "buy", "2.00", price="148.000")
    crossed = await alice.call("order_amend", {"orderId": plain["orderId"], "price": "150.000"})
    assert crossed["status"] == "filled" and crossed["filledQuantity"] == "2.00"
    with pytest.raises(RpcError) as info:
        await alice.call("order_amend", {"orderId": 10**9, "quantity": "1.00"})
    assert info.value.data["reason"] == "UNKNOWN_ORDER"
    await bob.call("order_cancel", {"orderId": ask["orderId"]})


async def test_rfq_accept_fills_at_the_quoted_price(alice: Client) -> None:
    await alice.subscribe("balances")
    sub = await alice.quote_request("BTC_USD", quantity="0.5")
    quote = (await take(alice, 1, {"quote"}))[0].params
    alice.drain_notifications()
    fill = await alice.call("quote_accept", {"quoteId": quote["quoteId"], "side": "buy"})
    assert (fill["price"], fill["quantity"], fill["liquidity"]) == (
        quote["sellPrice"], "0.5000", "rfq",
    )  # fmt: skip
    assert fill["quoteId"] == quote["quoteId"] and fill["side"] == "buy"
    with pytest.raises(RpcError) as info:
        await alice.call("quote_accept", {"quoteId": quote["quoteId"], "side": "buy"})
    assert info.value.data["reason"] == "QUOTE_USED"
    sell_quote = (await take(alice, 1, {"quote"}))[0].params
    sold = await alice.call("quote_accept", {"quoteId": sell_quote["quoteId"], "side": "sell"})
    assert sold["price"] == sell_quote["buyPrice"] and sold["side"] == "sell"
    await alice.quote_cancel(sub["subscription"])


async def test_rfq_expired_and_unknown_and_foreign_quotes(alice: Client, bob: Client) -> None:
    sub = await alice.quote_request("BTC_USD", quantity="0.1")
    quote = (await take(alice, 1, {"quote"}))[0].params
    await alice.quote_cancel(sub["subscription"])
    with pytest.raises(RpcError) as info:
        await bob.call("quote_accept", {"quoteId": quote["quoteId"], "side": "buy"})
    assert info.value.data["reason"] == "QUOTE_NOT_YOURS"
    await server_time_passes(alice, quote["validUntil"])  # the server's clock decides expiry
    with pytest.raises(RpcError) as info:
        await alice.call("quote_accept", {"quoteId": quote["quoteId"], "side": "buy"})
    assert info.value.data["reason"] == "QUOTE_EXPIRED"
    with pytest.raises(RpcError) as info:
        await alice.call("quote_accept", {"quoteId": "no-such-quote", "side": "buy"})
    assert info.value.data["reason"] == "QUOTE_UNKNOWN"


async def test_twenty_concurrent_accepts_fill_once(venue: ServerProcess, alice: Client) -> None:
    sub = await alice.quote_request("ETH_USD", quantity="1.000")
    quote = (await take(alice, 1, {"quote"}))[0].params
    await alice.quote_cancel(sub["subscription"])
    others = [await connect(venue, "demo", alice.encoding) for _ in range(19)]
    accept = {"quoteId": quote["quoteId"], "side": "buy"}
    outcomes = await asyncio.gather(
        *(c.call("quote_accept", accept) for c in [alice, *others]), return_exceptions=True
    )
    fills = [o for o in outcomes if isinstance(o, dict)]
    errors = [o for o in outcomes if isinstance(o, RpcError)]
    assert len(fills) == 1 and len(errors) == 19
    assert {e.data["reason"] for e in errors} == {"QUOTE_USED"}
    history = await alice.call("trades", {"symbol": "ETH_USD", "limit": 50})
    assert len([t for t in history if t["quoteId"] == quote["quoteId"]]) == 1
    for c in others:
        await c.close()


async def test_deposits_go_through_the_engine_and_are_idempotent(
    venue: ServerProcess, bob: Client
) -> None:
    rows = await bob.call("balances")
    await bob.subscribe("balances")
    snapshot = await take(bob, len(rows), {"balances"})  # every balance first
    assert {n.params["asset"] for n in snapshot} == {r["asset"] for r in rows}
    before = balance(rows, "SOL")[0]
    first = run_cli("deposit", "fund-b", "SOL", "12.5", "--ref", "sol-1", "--json", db=venue.db)
    again = run_cli("deposit", "fund-b", "SOL", "12.5", "--ref", "sol-1", "--json", db=venue.db)
    assert first["ok"] and not first["duplicate"] and again["duplicate"]
    update = (await take(bob, 1, {"balances"}))[0].params
    assert update["asset"] == "SOL" and Decimal(update["available"]) == before + Decimal("12.5")
    assert balance(await bob.call("balances"), "SOL")[0] == before + Decimal("12.5")
    clash = run_cli("deposit", "fund-b", "SOL", "99", "--ref", "sol-1", "--json", db=venue.db,
                    check=False)  # fmt: skip
    assert clash.returncode == 1 and "DUPLICATE_REFERENCE" in clash.stderr
    too_much = run_cli("withdraw", "fund-b", "SOL", "1000000", "--ref", "w-1", db=venue.db,
                       check=False)  # fmt: skip
    assert too_much.returncode == 1 and "INSUFFICIENT_FUNDS" in too_much.stderr
    out = run_cli("withdraw", "fund-b", "SOL", "2.5", "--ref", "w-2", "--json", db=venue.db)
    assert out["ok"]
    assert balance(await bob.call("balances"), "SOL")[0] == before + Decimal("10")


async def test_trade_history_pages(alice: Client, bob: Client) -> None:
    for i in range(5):
        await bob.place_order("SOL_USD", "sell", "1.00", price=f"{140 + i}.000")
    await alice.place_order("SOL_USD", "buy", "5.00", price="145.000")
    page1 = await alice.call("trades", {"symbol": "SOL_USD", "limit": 3})
    page2 = await alice.call(
        "trades", {"symbol": "SOL_USD", "limit": 3, "before": page1[-1]["tradeId"]}
    )
    ids = [t["tradeId"] for t in page1 + page2]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids) >= 5
    assert [t["price"] for t in page1] == ["144.000", "143.000", "142.000"]


async def test_state_endpoint_reports_conservation(venue: ServerProcess) -> None:
    import json
    import urllib.request

    url = venue.admin_url + "/state?check=1"
    state = json.loads(await asyncio.to_thread(lambda: urllib.request.urlopen(url).read()))
    assert state["valid"] is True
    assert state["netDeposits"] == state["balanceSums"]
    assert state["seq"] > 0 and len(state["stateHash"]) == 64


async def test_huge_values_are_refused_and_trading_goes_on(alice: Client) -> None:
    with pytest.raises(RpcError) as info:
        await alice.call("order_cancel", {"orderId": 2**63})
    assert info.value.code == -32602
    with pytest.raises(RpcError) as info:
        await alice.call("trades", {"before": 2**63})
    assert info.value.code == -32602
    order = await alice.place_order("ETH_USD", "buy", "1.000", price="1.00")
    assert order["status"] == "new"


async def test_an_amend_pipelined_behind_its_order_applies(alice: Client) -> None:
    place = {"symbol": "ETH_USD", "side": "buy", "type": "limit", "quantity": "1.000",
             "price": "100.00", "clientOrderId": f"pipe-{alice.encoding}"}  # fmt: skip
    amend = {"clientOrderId": f"pipe-{alice.encoding}", "price": "101.00", "quantity": "2.000"}
    placed, amended = await asyncio.gather(
        alice.call("order_place", place), alice.call("order_amend", amend)
    )
    assert placed["price"] == "100.00"
    assert (amended["price"], amended["quantity"]) == ("101.00", "2.000")
