"""Fees: charged in the asset each side receives, rounded *up* to the atom, credited to the fee
account. Every expected amount below is written out in atoms, not computed with the engine's own
formula, so a change of rounding fails here."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tradews.app.demo import DEMO_INSTRUMENTS
from tradews.domain.ledger import ATOMS_PER_UNIT
from tradews.domain.orders import OrderType, Side, TimeInForce
from tradews.engine.commands import Deposit, PlaceOrder
from tradews.engine.engine import Engine, OrderResult
from tradews.engine.events import TradeExecuted

MAKER, TAKER, FEES = 1, 2, 99
USD, ETH = 100_000 * ATOMS_PER_UNIT, 100 * ATOMS_PER_UNIT  # each side's deposits


@dataclass(frozen=True)
class Trade:
    """One ETH_USD fill (tick 0.01 USD, lot 0.001 ETH: a tick x lot is 1,000 USD atoms, a lot
    100,000 ETH atoms) and the fees it must charge."""

    maker_side: Side
    lots: int
    ticks: int
    maker_cbps: int  # rates in 1/100 bps, as the engine takes them
    taker_cbps: int
    notional: int  # USD atoms changing hands
    base: int  # ETH atoms changing hands
    maker_fee: int  # atoms, in the asset the maker receives
    taker_fee: int


TRADES = {
    # 0.001 ETH at 3000.01 = 3.00001 USD. Seller (maker) 7.77 bps of 300,001,000 USD atoms is
    # 233,100.777 -> 233,101; buyer (taker) 5.55 bps of 100,000 ETH atoms is 55.5 -> 56.
    "fractional, maker sells": Trade(Side.SELL, 1, 300_001, 777, 555, 300_001_000, 100_000,
                                     233_101, 56),
    # 0.003 ETH at 3000.01. Buyer (maker) 7.77 bps of 300,000 ETH atoms is 233.1 -> 234;
    # seller (taker) 5.55 bps of 900,003,000 USD atoms is 499,501.665 -> 499,502.
    "fractional, maker buys": Trade(Side.BUY, 3, 300_001, 777, 555, 900_003_000, 300_000,
                                    234, 499_502),
    # 1 ETH at 3000.00: 7.77 bps of 3000 USD and 5.55 bps of 1 ETH are whole numbers of atoms.
    "whole, maker sells": Trade(Side.SELL, 1_000, 300_000, 777, 555, 300_000_000_000,
                                100_000_000, 233_100_000, 55_500),
    "whole, maker buys": Trade(Side.BUY, 1_000, 300_000, 777, 555, 300_000_000_000,
                               100_000_000, 77_700, 166_500_000),
    # 0.001 ETH at 0.01 USD: 5 bps of 1,000 USD atoms is 0.5 and 0.01 bps of 100,000 ETH atoms
    # is 0.1; each rounds up to one atom, never down to nothing.
    "under one atom": Trade(Side.SELL, 1, 1, 500, 1, 1_000, 100_000, 1, 1),
    "no fee": Trade(Side.SELL, 1, 300_001, 0, 0, 300_001_000, 100_000, 0, 0),
}  # fmt: skip


def place(engine: Engine, account: int, side: Side, t: Trade, tif: TimeInForce) -> list[object]:
    cmd = PlaceOrder(engine.seq + 1, account, "ETH_USD", side, OrderType.LIMIT, t.ticks, t.lots,
                     tif, False, None, t.maker_cbps, t.taker_cbps)  # fmt: skip
    result, events = engine.apply(cmd)
    assert isinstance(result, OrderResult), result
    return list(events)


@pytest.mark.parametrize("name", list(TRADES))
def test_fees_are_rounded_up_to_the_atom(name: str) -> None:
    t = TRADES[name]
    engine = Engine(DEMO_INSTRUMENTS, fee_account_id=FEES)
    for account in (MAKER, TAKER):
        engine.apply(Deposit(0, account, "USD", USD, f"usd-{account}"))
        engine.apply(Deposit(0, account, "ETH", ETH, f"eth-{account}"))
    place(engine, MAKER, t.maker_side, t, TimeInForce.GTC)
    events = place(engine, TAKER, t.maker_side.opposite, t, TimeInForce.IOC)  # fills it exactly
    assert not engine.open_orders
    (trade,) = [e for e in events if isinstance(e, TradeExecuted)]
    assert (trade.maker_fee, trade.taker_fee) == (t.maker_fee, t.taker_fee)

    buyer_fee, seller_fee = (
        (t.maker_fee, t.taker_fee) if t.maker_side is Side.BUY else (t.taker_fee, t.maker_fee)
    )
    buyer, seller = (MAKER, TAKER) if t.maker_side is Side.BUY else (TAKER, MAKER)
    balances = engine.ledger
    assert balances.balance(buyer, "USD") == (USD - t.notional, 0)
    assert balances.balance(buyer, "ETH") == (ETH + t.base - buyer_fee, 0)
    assert balances.balance(seller, "USD") == (USD + t.notional - seller_fee, 0)
    assert balances.balance(seller, "ETH") == (ETH - t.base, 0)
    assert balances.balance(FEES, "ETH") == (buyer_fee, 0)  # the buyer pays in what it receives
    assert balances.balance(FEES, "USD") == (seller_fee, 0)  # the seller in what it receives
    engine.validate()
