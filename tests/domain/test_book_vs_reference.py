"""The engine's book and a naive reference book, driven by the same random commands, agree on
every result, every fill and every resting order; and the engine's invariants hold throughout."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.domain.reference_book import ReferenceBook, RefOutcome
from tradews.domain.instrument import Instrument
from tradews.domain.ledger import ATOMS_PER_UNIT
from tradews.domain.orders import OrderType, Side, TimeInForce
from tradews.engine.commands import AmendOrder, CancelAll, CancelOrder, Deposit, PlaceOrder
from tradews.engine.engine import Done, Engine, OrderResult, Rejected
from tradews.engine.events import OrderUpdated, TradeExecuted

INSTRUMENT = Instrument(
    "X_Y", "X", "Y", Decimal("1"), Decimal("1"), Decimal("2"), Decimal("60"), Decimal("2")
)
ACCOUNTS = (1, 2, 3)
FEE_ACCOUNT = 99

sides = st.sampled_from(["buy", "sell"])
prices = st.integers(min_value=95, max_value=105)
quantities = st.integers(min_value=0, max_value=70)
tifs = st.sampled_from(["GTC", "GTC", "IOC", "FOK"])
accounts = st.sampled_from(ACCOUNTS)
SIDE = {"buy": Side.BUY, "sell": Side.SELL}
TIF = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}


class BookMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.engine = Engine([INSTRUMENT], fee_account_id=FEE_ACCOUNT)
        self.ref = ReferenceBook(min_lots=2, max_lots=60)
        self.now = 0
        self.ids: list[int] = []
        for account in ACCOUNTS:  # enough that funds never limit: this test is about matching
            for asset in ("X", "Y"):
                self.apply(Deposit(0, account, asset, 10**9 * ATOMS_PER_UNIT, f"{account}{asset}"))

    def apply(self, cmd: object) -> tuple[object, list[object]]:
        self.now += 1
        result, events = self.engine.apply(cmd)  # type: ignore[arg-type]
        return result, list(events)

    def check(self, outcome: RefOutcome, result: object, events: list[object]) -> None:
        if not outcome.accepted:
            assert isinstance(result, Rejected), (outcome, result)
            assert result.reason.value == outcome.reason
            assert not any(isinstance(e, TradeExecuted) for e in events)
            return
        assert isinstance(result, OrderResult), (outcome, result)
        fills = [
            (e.maker_order_id, e.price, e.quantity) for e in events if isinstance(e, TradeExecuted)
        ]
        assert fills == outcome.fills
        assert result.order.status == outcome.status
        assert result.order.remaining == outcome.remaining
        updates = [e for e in events if isinstance(e, OrderUpdated)]
        assert updates, "an accepted order reports its state"

    @rule(account=accounts, side=sides, price=prices, qty=quantities, tif=tifs, post_only=st.booleans(),
          market=st.booleans())  # fmt: skip
    def place(self, account: int, side: str, price: int, qty: int, tif: str, post_only: bool,
              market: bool) -> None:  # fmt: skip
        kind = "market" if market else "limit"
        outcome = self.ref.place(account, side, kind, 0 if market else price, qty, tif, post_only)
        cmd = PlaceOrder(
            self.now, account, "X_Y", SIDE[side], OrderType.MARKET if market else OrderType.LIMIT,
            0 if market else price, qty, TIF[tif], post_only, None, 10, 20,
        )  # fmt: skip
        result, events = self.apply(cmd)
        self.check(outcome, result, events)
        if isinstance(result, OrderResult):
            self.ids.append(result.order.order_id)

    @precondition(lambda self: self.ids)
    @rule(data=st.data(), account=accounts)
    def cancel(self, data: st.DataObject, account: int) -> None:
        order_id = data.draw(st.sampled_from(self.ids))
        expected = self.ref.cancel(order_id, account)
        result, _ = self.apply(CancelOrder(self.now, account, order_id, None))
        if expected is None:
            assert isinstance(result, OrderResult) and result.order.status == "cancelled"
        else:
            assert isinstance(result, Rejected) and result.reason.value == expected

    @precondition(lambda self: self.ids)
    @rule(data=st.data(), account=accounts, price=st.none() | prices, qty=st.none() | quantities)
    def amend(self, data: st.DataObject, account: int, price: int | None, qty: int | None) -> None:
        order_id = data.draw(st.sampled_from(self.ids))
        outcome = self.ref.amend(order_id, account, price, qty)
        result, events = self.apply(AmendOrder(self.now, account, order_id, None, price, qty))
        self.check(outcome, result, events)

    @rule(account=accounts)
    def cancel_all(self, account: int) -> None:
        mine = sorted(o.order_id for o in self.ref.resting if o.account == account)
        for order_id in mine:
            assert self.ref.cancel(order_id, account) is None
        result, _ = self.apply(CancelAll(self.now, account, None))
        assert result == Done(mine)

    @invariant()  # checked only once setup() has run (hypothesis' default)
    def same_resting_orders(self) -> None:
        book = self.engine.books["X_Y"]
        ours = [
            (o.order_id, o.account_id, "buy" if side is Side.BUY else "sell", o.price, o.remaining)
            for side in (Side.BUY, Side.SELL)
            for level in book.levels(side)
            for o in level.orders()
        ]
        assert ours == self.ref.snapshot()

    @invariant()
    def same_vwap_with_any_account_left_out(self) -> None:
        """RFQ pricing's volume-weighted prices, with one account's orders left out or none."""
        if not hasattr(self, "engine"):
            return
        book = self.engine.books["X_Y"]
        for exclude in (None, *ACCOUNTS, 42):
            for side, name in ((Side.BUY, "buy"), (Side.SELL, "sell")):
                for qty in (1, 7, 40, 200):
                    expected = self.ref.vwap(name, qty, exclude)
                    assert book.vwap(side, qty, exclude) == expected, (exclude, name, qty)

    @invariant()
    def engine_invariants(self) -> None:
        self.engine.validate()  # never crossed, priority, locks, conservation


TestBookAgainstReference = BookMachine.TestCase
TestBookAgainstReference.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None
)
