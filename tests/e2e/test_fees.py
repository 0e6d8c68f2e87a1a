"""Fees over a real socket: what each fill says it charged, what each side's balances show, what
the fee account holds, and what the trade history keeps. Fees are in the asset received and
rounded up to the atom (10^-8); the expected amounts are written out, not computed."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from tests.helpers import balance, take
from tradews.client import Client
from tradews.testing import ServerProcess

# maker side, quantity, price, the maker's fee, the taker's fee (at 7.77 / 5.55 bps).
TRADES = [
    # 3.00001 USD to the seller: 7.77 bps is 0.00233100777 -> 0.00233101 USD;
    # 0.001 ETH to the buyer: 5.55 bps is 0.000000555 -> 0.00000056 ETH.
    ("sell", "0.001", "3000.01", "0.00233101", "0.00000056"),
    # 0.003 ETH to the buyer: 7.77 bps is 0.000002331 -> 0.00000234 ETH;
    # 9.00003 USD to the seller: 5.55 bps is 0.00499501665 -> 0.00499502 USD.
    ("buy", "0.003", "3000.01", "0.00000234", "0.00499502"),
    # Whole atoms: 7.77 bps of 3000 USD and 5.55 bps of 1 ETH, nothing to round.
    ("sell", "1.000", "3000.00", "2.331", "0.000555"),
]
START = {"USD": Decimal(100_000), "ETH": Decimal(100)}


@pytest.fixture(scope="module")
def fee_venue(tmp_path_factory: pytest.TempPathFactory, encoding: str) -> Iterator[ServerProcess]:
    """No simulated traders, fees of 7.77 bps (maker) and 5.55 bps (taker), two funded accounts,
    and a key for the fee account so that its balances can be read like anyone's."""
    db = tmp_path_factory.mktemp(f"fees-{encoding}") / "fees.db"
    args = ("--no-demo-traders", "--fees", "enterprise=7.77:5.55")
    with ServerProcess.start(db, demo=True, args=args) as proc:
        keys = {}
        for name in ("maker", "taker"):
            proc.cli("account", "create", name, "--tier", "enterprise")
            keys[name] = proc.cli("key", "create", name)
            for asset, amount in START.items():
                out = proc.cli("deposit", name, asset, str(amount), "--ref", f"{name}-{asset}")
                assert out["ok"] and out["via"] == "server", out
        keys["fees"] = proc.cli("key", "create", "fees")
        proc.keys = keys  # type: ignore[attr-defined]
        yield proc


async def login(venue: ServerProcess, who: str, encoding: str) -> Client:
    key = venue.keys[who]  # type: ignore[attr-defined]
    client = await Client.connect(venue.url, encoding=encoding)
    assert await client.login(key["apiKey"], key["apiSecret"]) is True
    return client


async def test_fees_round_up_to_the_atom_end_to_end(
    fee_venue: ServerProcess, encoding: str
) -> None:
    maker, taker, fees = [
        await login(fee_venue, who, encoding) for who in ("maker", "taker", "fees")
    ]
    expected = {who: dict(START) for who in ("maker", "taker")}
    collected = {"USD": Decimal(0), "ETH": Decimal(0)}
    for client in (maker, taker):
        await client.subscribe("orders")
    for maker_side, quantity, price, maker_fee, taker_fee in TRADES:
        taker_side = "buy" if maker_side == "sell" else "sell"
        await maker.place_order("ETH_USD", maker_side, quantity, price=price)
        done = await taker.place_order(
            "ETH_USD", taker_side, quantity, price=price, time_in_force="IOC"
        )
        assert done["status"] == "filled"
        (made,) = [n.params for n in await take(maker, 1, {"fills"})]
        (took,) = [n.params for n in await take(taker, 1, {"fills"})]
        notional = Decimal(quantity) * Decimal(price)
        for fill, who, side, fee in ((made, "maker", maker_side, maker_fee),
                                     (took, "taker", taker_side, taker_fee)):  # fmt: skip
            received = "ETH" if side == "buy" else "USD"
            assert (fill["side"], fill["quantity"], fill["price"]) == (side, quantity, price)
            assert (fill["fee"], fill["feeAsset"]) == (fee, received), fill
            mine = expected[who]
            if side == "buy":
                mine["USD"] -= notional
                mine["ETH"] += Decimal(quantity) - Decimal(fee)
            else:
                mine["ETH"] -= Decimal(quantity)
                mine["USD"] += notional - Decimal(fee)
            collected[received] += Decimal(fee)
        for client, who in ((maker, "maker"), (taker, "taker")):
            rows = await client.call("balances")
            for asset, amount in expected[who].items():
                assert balance(rows, asset) == (amount, 0), (who, asset, rows)
        held = await fees.call("balances")
        assert {a: balance(held, a)[0] for a in collected} == collected

    # The trade history (the durable read model) keeps the same fees.
    for client, column in ((maker, 3), (taker, 4)):
        history = await client.call("trades", {"symbol": "ETH_USD", "limit": 10})
        assert [t["fee"] for t in reversed(history)] == [row[column] for row in TRADES]
    for client in (maker, taker, fees):
        await client.close()
