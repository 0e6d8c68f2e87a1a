"""The market_data stream."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tradews.client import Client, RpcError

ROW_FIELDS = {
    "symbol", "last", "bid", "ask", "open24h", "high24h", "low24h", "volume24h", "change24h",
    "change24hPct", "timestamp",
}  # fmt: skip


async def test_market_data_stream(logged_in: Client) -> None:
    # Trade once in every book so that each has a last price and 24h figures.
    fills = {}
    for symbol, qty in (("BTC_USD", "0.01"), ("ETH_USD", "0.1"), ("SOL_USD", "1")):
        order = await logged_in.call(
            "order_place", {"symbol": symbol, "side": "buy", "type": "market", "quantity": qty}
        )
        assert order["status"] == "filled"
        fills[symbol] = Decimal(qty)
    sub = await logged_in.market_data_request()
    assert sub["symbols"] == ["BTC_USD", "ETH_USD", "SOL_USD"]
    assert sub["intervalMs"] == 1000
    snapshots = []
    while len(snapshots) < 2:
        note = await logged_in.next_notification(timeout=3)
        if note.method == "market_data":
            snapshots.append(note.params)
    first, second = snapshots
    assert second["seq"] > first["seq"] and second["timestamp"] > first["timestamp"]
    for snap in snapshots:
        assert [r["symbol"] for r in snap["instruments"]] == sub["symbols"]
        for row in snap["instruments"]:
            assert set(row) == ROW_FIELDS
            bid, ask, last = Decimal(row["bid"]), Decimal(row["ask"]), Decimal(row["last"])
            low, high = Decimal(row["low24h"]), Decimal(row["high24h"])
            assert bid < ask  # from the book, which is never crossed at rest
            assert low <= last <= high  # from trades
            assert Decimal(row["volume24h"]) >= fills[row["symbol"]]
            change = last - Decimal(row["open24h"])
            assert Decimal(row["change24h"]) == change
            pct = (change * 100 / Decimal(row["open24h"])).quantize(Decimal("0.01"))
            assert Decimal(row["change24hPct"]) == pct


async def test_market_data_request_twice_is_refused(logged_in: Client) -> None:
    await logged_in.market_data_request()
    with pytest.raises(RpcError) as again:
        await logged_in.market_data_request()
    assert again.value.code == 2007
    assert await logged_in.call("market_data_cancel") is True
    with pytest.raises(RpcError) as info:
        await logged_in.call("market_data_cancel")
    assert info.value.code == 2004


async def test_market_data_takes_no_params(logged_in: Client) -> None:
    # By-name params the method does not know are ignored, like every method's extra fields.
    sub = await logged_in.call("market_data_request", {"verbose": True})
    assert "symbols" in sub
