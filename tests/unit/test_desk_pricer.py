"""The desk's pricer against a real engine and durable view: where each part of a quote comes
from (the reference, others' orders, the house's balances) and why there is none."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from tradews.app.catalog import Catalog
from tradews.app.demo import DEMO_INSTRUMENTS
from tradews.app.pricing import DeskPricer, ReferencePrices, format_duration
from tradews.domain.ledger import ATOMS_PER_UNIT
from tradews.domain.orders import OrderType, Side, TimeInForce
from tradews.domain.pricing import NoQuote, ReferencePrice, TwoWayPrice
from tradews.engine.commands import AnyCommand, Deposit, PlaceOrder
from tradews.engine.engine import Engine
from tradews.session.view import TradingView

BTC = DEMO_INSTRUMENTS[0]  # tick 0.01, lot 0.0001, 5 bps
HOUSE, ALICE, BOB = 1, 2, 3
ONE_BTC = 10_000  # lots


class Desk:
    def __init__(self) -> None:
        self.engine = Engine([BTC], fee_account_id=99)
        self.view: TradingView[str] = TradingView(Catalog([BTC]))
        self.walks: dict[str, Fraction] = {}
        self.references = ReferencePrices(self.walks, default_max_age_ms=60_000)
        self.pricer = DeskPricer(self.engine, self.view, self.references, house_account_id=HOUSE)
        for account in (ALICE, BOB):
            self.deposit(account, "BTC", 100)
            self.deposit(account, "USD", 10_000_000)

    def apply(self, command: AnyCommand) -> None:
        _, events = self.engine.apply(command)
        self.view.apply(events, lambda conn, push: None)

    def deposit(self, account: int, asset: str, units: int) -> None:
        ref = f"{account}-{asset}-{self.engine.seq}"
        self.apply(Deposit(0, account, asset, units * ATOMS_PER_UNIT, ref))

    def rest(self, account: int, side: Side, price: int, lots: int = ONE_BTC) -> None:
        self.apply(PlaceOrder(0, account, BTC.symbol, int(side), int(OrderType.LIMIT), price,
                              lots, int(TimeInForce.GTC), False, None, 0, 0))  # fmt: skip

    def price(self, exclude: int | None, now: int = 0) -> TwoWayPrice | NoQuote:
        return self.pricer.price(BTC, ONE_BTC, exclude, now)


def funded_desk() -> Desk:
    desk = Desk()
    desk.deposit(HOUSE, "BTC", 10)
    desk.deposit(HOUSE, "USD", 1_000_000)
    desk.walks[BTC.symbol] = Fraction(6_500_000)  # 65,000.00
    return desk


REFERENCE_ONLY = TwoWayPrice(6_496_750, 6_503_250)


def test_the_requesters_own_orders_are_left_out_and_only_theirs() -> None:
    desk = funded_desk()
    desk.rest(ALICE, Side.SELL, 6_560_000)  # 65,600: worse for a buyer than the reference
    desk.rest(ALICE, Side.BUY, 6_440_000)
    assert desk.pricer.accounts_in(BTC.symbol) == {ALICE: 2}
    assert desk.price(ALICE) == REFERENCE_ONLY
    everyone_else = TwoWayPrice(6_436_780, 6_563_280)
    assert desk.price(BOB) == desk.price(None) == everyone_else
    desk.rest(BOB, Side.SELL, 6_520_000, lots=ONE_BTC // 2)
    # Alice now sees Bob's half BTC only: too thin for one BTC, so the reference prices it.
    assert desk.price(ALICE) == REFERENCE_ONLY
    assert desk.price(BOB) == everyone_else


def test_no_reference_no_quote_and_operator_prices_override_the_walk() -> None:
    desk = funded_desk()
    desk.walks.clear()
    assert desk.price(None) == NoQuote(
        "no price for BTC_USD: the desk has no reference price for it"
    )
    desk.references.set_operator_prices([ReferencePrice("BTC_USD", Decimal("66000"), 1_000, None)])
    desk.walks[BTC.symbol] = Fraction(6_500_000)  # the walk is there too, but the operator wins
    assert desk.price(None, now=61_000) == TwoWayPrice(6_596_700, 6_603_300)
    stale = desk.price(None, now=61_001)
    assert stale == NoQuote(
        "no price for BTC_USD: the desk's reference price is stale (older than 1m)"
    )
    short = ReferencePrice("BTC_USD", Decimal("66000.005"), 1_000, 5_000)
    desk.references.set_operator_prices([short])
    assert desk.price(None, now=6_000) == TwoWayPrice(6_596_700, 6_603_301)  # sub-tick ref
    assert isinstance(desk.price(None, now=6_001), NoQuote)
    desk.references.set_operator_prices([])  # cleared: back to the walk
    assert desk.price(None, now=10**9) == REFERENCE_ONLY


def test_the_house_must_hold_both_sides() -> None:
    desk = Desk()
    desk.walks[BTC.symbol] = Fraction(6_500_000)
    short = NoQuote(
        "the desk cannot quote 1.0000 BTC_USD now (its inventory does not cover it)",
        desk_limit=True,
    )
    assert desk.price(None) == short
    desk.deposit(HOUSE, "BTC", 1)  # enough to sell one BTC, nothing to buy one with
    assert desk.price(None) == short
    desk.deposit(HOUSE, "USD", 64_967)  # 50 cents short of buying one at 64,967.50
    assert desk.price(None) == short
    desk.deposit(HOUSE, "USD", 1)
    assert desk.price(None) == REFERENCE_ONLY


def test_durations_read_back_as_written() -> None:
    assert [format_duration(ms) for ms in (1000, 90_000, 60_000, 3_600_000, 86_400_000, 1500)] == [
        "1s", "90s", "1m", "1h", "1d", "1500ms",
    ]  # fmt: skip
