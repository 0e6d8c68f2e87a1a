"""RFQ quote streams over real sockets."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tradews.client import Client, RpcError
from tradews.testing import ServerProcess

QUOTE_FIELDS = {
    "subscription",
    "symbol",
    "buyPrice",
    "sellPrice",
    "quantity",
    "quoteId",
    "validUntil",
    "seq",
    "timestamp",
}


async def quotes(client: Client, n: int, subscription: str | None = None) -> list[dict[str, Any]]:
    """The next ``n`` quotes, each with ``receivedAt`` (local ms) added."""
    got: list[dict[str, Any]] = []
    while len(got) < n:
        note = await client.next_notification(timeout=5)
        if note.method == "quote" and (
            subscription is None or note.params["subscription"] == subscription
        ):
            got.append({**note.params, "receivedAt": time.time() * 1000})
    return got


def decimals(text: str) -> int:
    exponent = Decimal(text).as_tuple().exponent
    assert isinstance(exponent, int)
    return -exponent


async def test_stream_contents(logged_in: Client) -> None:
    sub = await logged_in.quote_request("BTC_USD")
    assert sub["symbol"] == "BTC_USD" and sub["quantity"] == "1.0000"
    stream = await quotes(logged_in, 15, sub["subscription"])
    for q in stream:
        received_ms = q.pop("receivedAt")
        assert set(q) == QUOTE_FIELDS
        assert q["symbol"] == "BTC_USD" and q["quantity"] == "1.0000"
        buy, sell = Decimal(q["buyPrice"]), Decimal(q["sellPrice"])
        assert buy <= sell
        assert buy % Decimal("0.01") == 0 and sell % Decimal("0.01") == 0
        assert decimals(q["buyPrice"]) == decimals(q["sellPrice"]) == 2  # strings on the tick
        assert q["validUntil"] > q["timestamp"]
        assert q["validUntil"] > received_ms
    assert [q["seq"] for q in stream] == list(range(1, 16))
    assert len({q["quoteId"] for q in stream}) == 15
    # Each quote arrives while the previous one is still firm.
    for prev, nxt in zip(stream, stream[1:], strict=False):
        assert nxt["timestamp"] < prev["validUntil"]


async def test_requested_quantity(logged_in: Client) -> None:
    sub = await logged_in.quote_request("ETH_USD", quantity="2.5")
    assert sub["quantity"] == "2.500"
    (q,) = await quotes(logged_in, 1, sub["subscription"])
    assert q["quantity"] == "2.500" and q["symbol"] == "ETH_USD"


async def test_numeric_quantity_is_read_exactly(logged_in: Client) -> None:
    sub = await logged_in.call(
        "quote_request", {"symbol": "SOL_USD", "type": "RFQ", "quantity": 12.5}
    )
    assert sub["quantity"] == "12.50"


async def test_streams_are_independent_and_cancellable(logged_in: Client) -> None:
    a = await logged_in.quote_request("BTC_USD")
    b = await logged_in.quote_request("SOL_USD")
    assert a["subscription"] != b["subscription"]
    got = await quotes(logged_in, 10)
    assert {q["subscription"] for q in got} == {a["subscription"], b["subscription"]}
    assert await logged_in.quote_cancel(a["subscription"]) is True
    # Frames arrive in order: every BTC_USD quote sent before the cancel's reply has arrived by
    # now. Drop them; from here on only SOL_USD quotes may come.
    logged_in.drain_notifications()
    later = await quotes(logged_in, 5)
    assert {q["subscription"] for q in later} == {b["subscription"]}
    with pytest.raises(RpcError) as info:
        await logged_in.quote_cancel(a["subscription"])
    assert info.value.code == 2004


async def test_a_pulse_quotes_for_one_client_come_together_in_stream_order(
    logged_in: Client,
) -> None:
    """The quotes of one pulse for one connection go out in one write, as consecutive whole
    messages in the order the streams were opened; each stream's seq has no gap."""
    symbols = ("BTC_USD", "ETH_USD", "SOL_USD")
    subs = [(await logged_in.quote_request(s))["subscription"] for s in symbols]
    got = await quotes(logged_in, 45)
    assert {q["subscription"] for q in got} == set(subs)
    for sub in subs:
        seqs = [q["seq"] for q in got if q["subscription"] == sub]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    pulsed = [q for q in got if q["seq"] > 1]  # the first quote of each is sent by the request
    for prev, nxt in zip(pulsed, pulsed[1:], strict=False):
        if nxt["timestamp"] == prev["timestamp"]:  # the same pulse
            assert subs.index(nxt["subscription"]) > subs.index(prev["subscription"])


@pytest.mark.parametrize(
    "params, code, needle",
    [
        ({"symbol": "DOGE_USD", "type": "RFQ"}, 2001, "DOGE_USD"),
        ({"symbol": "BTC_USD", "type": "LIMIT"}, -32602, "$.type"),
        ({"symbol": "BTC_USD"}, -32602, "type"),
        ({"type": "RFQ"}, -32602, "symbol"),
        ({"symbol": ["BTC_USD"], "type": "RFQ"}, -32602, "$.symbol"),
        ({"symbol": "BTC_USD", "type": "RFQ", "quantity": "0.00001"}, 2002, "multiple"),
        ({"symbol": "BTC_USD", "type": "RFQ", "quantity": "1000"}, 2002, "maximum"),
        ({"symbol": "BTC_USD", "type": "RFQ", "quantity": "-1"}, 2002, "positive"),
        ({"symbol": "BTC_USD", "type": "RFQ", "quantity": "lots"}, -32602, "$.quantity"),
        ({"symbol": "BTC_USD", "type": "RFQ", "quantity": "NaN"}, -32602, "$.quantity"),
        ({"symbol": "BTC_USD", "type": "RFQ", "quantity": True}, -32602, "$.quantity"),
    ],
)
async def test_bad_requests_get_an_error_and_no_stream(
    logged_in: Client, params: dict[str, Any], code: int, needle: str
) -> None:
    if logged_in.encoding == "proto" and (
        not isinstance(params.get("symbol", ""), str) or isinstance(params.get("quantity"), bool)
    ):
        pytest.skip("protobuf's schema cannot carry a value of this type")
    with pytest.raises(RpcError) as info:
        await logged_in.call("quote_request", params)
    assert info.value.code == code
    assert needle in f"{info.value.message} {info.value.data}"
    # A stream's first quote follows its reply at once: none came before this next reply...
    await logged_in.time()
    assert logged_in.drain_notifications() == []
    # ...and none comes at the following pulses, while a good stream quotes at each of them.
    control = (await logged_in.quote_request("BTC_USD"))["subscription"]
    seen: list[dict[str, Any]] = []
    while [q["subscription"] for q in seen].count(control) < 3:
        seen += await quotes(logged_in, 1)
    assert {q["subscription"] for q in seen} == {control}


async def test_missing_params_entirely(logged_in: Client) -> None:
    with pytest.raises(RpcError) as info:
        await logged_in.call("quote_request")
    assert info.value.code == -32602


# A still market: quotes must be refreshed by expiry alone --------------------------------------


@pytest.fixture(scope="module")
def still_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db: Path = tmp_path_factory.mktemp("still") / "tradews.db"
    args = ("--volatility", "0", "--quote-ttl", "0.9", "--tick-interval", "0.05",
            "--no-demo-traders")  # fmt: skip
    with ServerProcess.start(db, demo=True, args=args) as proc:
        yield proc


@pytest.fixture
async def still_client(still_server: ServerProcess, encoding: str) -> AsyncIterator[Client]:
    async with await Client.connect(still_server.url, encoding=encoding) as c:
        await c.login(still_server.api_key, still_server.api_secret)
        yield c


async def test_quotes_refresh_before_expiry_when_price_is_still(still_client: Client) -> None:
    sub = await still_client.quote_request("BTC_USD")
    stream = await quotes(still_client, 5, sub["subscription"])
    assert len({(q["buyPrice"], q["sellPrice"]) for q in stream}) == 1  # the price did not move
    for prev, nxt in zip(stream, stream[1:], strict=False):
        assert nxt["timestamp"] < prev["validUntil"]  # a new quote before the old one expires
        assert nxt["timestamp"] - prev["timestamp"] >= 400  # ...but not at every pulse
        assert nxt["quoteId"] != prev["quoteId"]


@pytest.mark.parametrize("quantity", ["1e999999999999", "1E-999999999", "-0"])
async def test_extreme_quantities_are_refused_cleanly(logged_in: Client, quantity: str) -> None:
    with pytest.raises(RpcError) as info:
        await logged_in.call(
            "quote_request", {"symbol": "BTC_USD", "type": "RFQ", "quantity": quantity}
        )
    assert info.value.code == 2002


async def test_exponent_notation_is_read_exactly(logged_in: Client) -> None:
    sub = await logged_in.call(
        "quote_request", {"symbol": "BTC_USD", "type": "RFQ", "quantity": "0.1e1"}
    )
    assert sub["quantity"] == "1.0000"


async def test_own_orders_do_not_price_the_demo_desk(still_client: Client) -> None:
    """The attack on an empty book: rest a sell at 1.00 and a buy at 0.99, ask for a quote,
    cancel, accept. The demo desk prices from its (still) reference walk, 65,000.00 plus or
    minus 5 bps, never from the requester's own orders."""
    await still_client.place_order("BTC_USD", "sell", "1", price="1.00")
    await still_client.place_order("BTC_USD", "buy", "1", price="0.99")
    sub = await still_client.quote_request("BTC_USD", quantity="1")
    (quote,) = await quotes(still_client, 1, sub["subscription"])
    assert (quote["buyPrice"], quote["sellPrice"]) == ("64967.50", "65032.50")
    await still_client.call("order_cancel_all")
    fill = await still_client.call("quote_accept", {"quoteId": quote["quoteId"], "side": "buy"})
    assert fill["price"] == "65032.50"
    await still_client.quote_cancel(sub["subscription"])
