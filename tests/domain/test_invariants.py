"""Broken invariants raise InvariantViolation, with a message naming what broke, and keep doing
so under ``python -O`` (which strips every ``assert``).

Each case below builds a ledger or an engine, breaks it the way only a bug could, and reports
what happened. The same table runs here and in a ``python -O`` interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tradews.app.demo import DEMO_INSTRUMENTS
from tradews.domain.invariants import InvariantViolation
from tradews.domain.ledger import ATOMS_PER_UNIT, Ledger
from tradews.domain.orders import TRANSITIONS, Order, OrderStatus, OrderType, Side, TimeInForce
from tradews.engine.commands import CancelOrder, Deposit, PlaceOrder
from tradews.engine.engine import Engine, OrderResult

ROOT = Path(__file__).resolve().parents[2]
BUYER, SELLER, FEES = 1, 2, 99
BID, ASK, LOT = 299_900, 300_100, 1_000  # ETH_USD: 2999.00 and 3001.00 (ticks), 1.000 ETH (lots)


# Ledgers --------------------------------------------------------------------------------------


def ledger_case(movement: Callable[[Ledger], object]) -> Callable[[], str]:
    """Run ``movement`` on a ledger where account 1 has 60 USD atoms available and 40 locked;
    return the violation's message, and check that nothing moved before it was raised."""

    def run() -> str:
        ledger = Ledger()
        ledger.deposit(1, "USD", 100)
        if not ledger.lock(1, "USD", 40):  # not an assert: this also runs under -O
            raise RuntimeError("the ledger refused a lock it can afford")
        before = (ledger.items(), ledger.totals())
        try:
            movement(ledger)
        except InvariantViolation as exc:
            if (ledger.items(), ledger.totals()) != before:
                return f"the ledger changed before: {exc}"
            return str(exc)
        return "no error"

    return run


# Engines --------------------------------------------------------------------------------------


def place(engine: Engine, account: int, side: Side, price: int, lots: int = LOT) -> int:
    """Place a GTC limit order; return its id. (No ``assert`` here: this also runs under -O.)"""
    cmd = PlaceOrder(engine.seq + 1, account, "ETH_USD", side, OrderType.LIMIT, price, lots,
                     TimeInForce.GTC, False, None, 500, 1000)  # fmt: skip
    result, _ = engine.apply(cmd)
    if not isinstance(result, OrderResult):
        raise RuntimeError(f"order refused: {result}")
    return result.order.order_id


def two_sided_engine() -> tuple[Engine, Order, Order]:
    """An engine whose ETH_USD book holds a bid of account 1 and an ask of account 2."""
    engine = Engine(DEMO_INSTRUMENTS, fee_account_id=FEES)
    engine.apply(Deposit(0, BUYER, "USD", 10_000 * ATOMS_PER_UNIT, "usd"))
    engine.apply(Deposit(0, SELLER, "ETH", 10 * ATOMS_PER_UNIT, "eth"))
    bid = engine.open_orders[place(engine, BUYER, Side.BUY, BID)]
    ask = engine.open_orders[place(engine, SELLER, Side.SELL, ASK)]
    engine.validate()  # sound before it is broken
    return engine, bid, ask


def engine_case(
    breakage: Callable[[Engine, Order, Order], None],
    then: Callable[[Engine, Order, Order], object] = lambda engine, bid, ask: engine.validate(),
) -> Callable[[], str]:
    """Break a two-sided engine with ``breakage``, then run ``then`` (by default validate())."""

    def run() -> str:
        engine, bid, ask = two_sided_engine()
        breakage(engine, bid, ask)
        try:
            then(engine, bid, ask)
        except InvariantViolation as exc:
            return str(exc)
        return "no error"

    return run


def shift(engine: Engine, account: int, asset: str, available: int, locked: int) -> None:
    """Change a ledger row behind the engine's back."""
    row = engine.ledger.row(account, asset)
    row.available += available
    row.locked += locked


def extra_lock(engine: Engine, bid: Order, ask: Order) -> None:
    bid.locked += 1


def rest_crossing_bid(engine: Engine, bid: Order, ask: Order) -> None:
    crossing = Order(10**6, BUYER, "ETH_USD", Side.BUY, OrderType.LIMIT, ASK + 100, LOT,
                     TimeInForce.GTC, False, None, 10**6, 0)  # fmt: skip
    engine.books["ETH_USD"].rest(crossing)


def level_total_off(engine: Engine, bid: Order, ask: Order) -> None:
    next(engine.books["ETH_USD"].levels(Side.BUY)).total += 1


def priority_swapped(engine: Engine, bid: Order, ask: Order) -> None:
    second = engine.open_orders[place(engine, BUYER, Side.BUY, BID)]
    bid.priority, second.priority = second.priority, bid.priority


def cancel_bid(engine: Engine, bid: Order, ask: Order) -> object:
    return engine.apply(CancelOrder(engine.seq + 1, BUYER, bid.order_id, None))


def take_ask(engine: Engine, bid: Order, ask: Order) -> object:
    return place(engine, BUYER, Side.BUY, ASK)


def illegal_transition(engine: Engine, bid: Order, ask: Order) -> object:
    bid.move_to(OrderStatus.NEW)
    return None


def unlocked_behind_the_engine(account: int, asset: str) -> Callable[[Engine, Order, Order], None]:
    """One atom of ``account``'s lock in ``asset`` moved back to available: sums still agree."""
    return lambda engine, bid, ask: shift(engine, account, asset, 1, -1)


def one_atom_from_nowhere(engine: Engine, bid: Order, ask: Order) -> None:
    shift(engine, BUYER, "USD", 1, 0)


def asset_never_deposited(engine: Engine, bid: Order, ask: Order) -> None:
    engine.ledger.row(FEES, "SOL").available = 1


def overdrawn(engine: Engine, bid: Order, ask: Order) -> None:
    """All of the buyer's available USD and one atom more, moved to the seller."""
    moved = engine.ledger.available(BUYER, "USD") + 1
    shift(engine, BUYER, "USD", -moved, 0)
    shift(engine, SELLER, "USD", moved, 0)


def not_open(engine: Engine, bid: Order, ask: Order) -> None:
    del engine.open_orders[bid.order_id]


def not_indexed(engine: Engine, bid: Order, ask: Order) -> None:
    bid.level = None


def untouched(engine: Engine, bid: Order, ask: Order) -> None:
    pass


LOCKED_BID = BID * LOT * 1_000  # 2999 USD in atoms: what the bid must hold locked
USD_DEPOSITED = 10_000 * ATOMS_PER_UNIT

CASES: dict[str, tuple[Callable[[], str], str]] = {
    # The ledger refuses impossible movements, before changing anything.
    "deposit of nothing": (
        ledger_case(lambda ledger: ledger.deposit(1, "USD", 0)),
        "deposit of 0 USD to account 1",
    ),
    "negative withdrawal": (
        ledger_case(lambda ledger: ledger.withdraw(1, "USD", -5)),
        "withdrawal of -5 USD from account 1",
    ),
    "negative lock": (
        ledger_case(lambda ledger: ledger.lock(1, "USD", -1)),
        "lock of -1 USD for account 1",
    ),
    "unlock beyond the lock": (
        ledger_case(lambda ledger: ledger.unlock(1, "USD", 41)),
        "unlock of 41 USD for account 1, which has 40 locked",
    ),
    "negative unlock": (
        ledger_case(lambda ledger: ledger.unlock(1, "USD", -1)),
        "unlock of -1 USD for account 1, which has 40 locked",
    ),
    "payment beyond the lock": (
        ledger_case(lambda ledger: ledger.pay_from_locked(1, "USD", 41, 2)),
        "payment of 41 USD from account 1's locked funds (40) to account 2",
    ),
    "negative payment from the lock": (
        ledger_case(lambda ledger: ledger.pay_from_locked(1, "USD", -1, 2)),
        "payment of -1 USD from account 1's locked funds (40) to account 2",
    ),
    "payment beyond what is available": (
        ledger_case(lambda ledger: ledger.pay_from_available(1, "USD", 61, 2)),
        "payment of 61 USD from account 1's available funds (60) to account 2",
    ),
    "negative payment from what is available": (
        ledger_case(lambda ledger: ledger.pay_from_available(1, "USD", -1, 2)),
        "payment of -1 USD from account 1's available funds (60) to account 2",
    ),
    # validate() finds a corrupted engine.
    "an order holding more than it needs": (
        engine_case(extra_lock),
        f"holds {LOCKED_BID + 1} USD locked, needs {LOCKED_BID}",
    ),
    "a ledger lock no order needs": (
        engine_case(unlocked_behind_the_engine(BUYER, "USD")),
        f"account 1 has {LOCKED_BID - 1} USD locked, its open orders need {LOCKED_BID}",
    ),
    "money from nowhere": (
        engine_case(one_atom_from_nowhere),
        f"USD balances add up to {USD_DEPOSITED + 1}, net deposits are {USD_DEPOSITED}",
    ),
    "money for an asset never deposited": (
        engine_case(asset_never_deposited),
        "SOL balances add up to 1, net deposits are 0",
    ),
    "a negative balance": (
        engine_case(overdrawn),
        f"negative balance of account 1 in USD: available -1, locked {LOCKED_BID}",
    ),
    "a resting order that is not open": (
        engine_case(not_open),
        "rests in the book but is not open",
    ),
    "an order index out of step with the levels": (
        engine_case(not_indexed),
        "not indexed at its level",
    ),
    "a crossed book": (
        engine_case(rest_crossing_bid),
        f"ETH_USD: crossed book, bid {ASK + 100} >= ask {ASK}",
    ),
    "a level total that is off": (
        engine_case(level_total_off),
        f"ETH_USD BUY level {BID}: total {LOT + 1}, orders add up to {LOT}",
    ),
    "time priority broken": (
        engine_case(priority_swapped),
        f"ETH_USD BUY level {BID}: time priority broken",
    ),
    "an order status moving backwards": (
        engine_case(untouched, illegal_transition),
        "is not allowed",
    ),
    # Engine.apply runs into the ledger's guards when its state was corrupted.
    "a cancel whose lock is gone": (
        engine_case(unlocked_behind_the_engine(BUYER, "USD"), cancel_bid),
        f"unlock of {LOCKED_BID} USD for account 1, which has {LOCKED_BID - 1} locked",
    ),
    "a fill whose seller's lock is gone": (
        engine_case(unlocked_behind_the_engine(SELLER, "ETH"), take_ask),
        "payment of 100000000 ETH from account 2's locked funds (99999999) to account 1",
    ),
}


def report() -> dict[str, object]:
    """Every case's outcome, and whether this interpreter keeps ``assert`` statements."""
    return {"debug": __debug__, "outcomes": {name: run() for name, (run, _) in CASES.items()}}


@pytest.mark.parametrize("name", list(CASES))
def test_a_broken_invariant_is_reported(name: str) -> None:
    run, expected = CASES[name]
    assert expected in run()


def test_the_same_engine_unbroken_passes() -> None:
    engine, bid, ask = two_sided_engine()
    take_ask(engine, bid, ask)
    cancel_bid(engine, bid, ask)
    engine.validate()


def test_the_guards_hold_under_python_dash_o() -> None:
    script = (
        "import json\nfrom tests.domain.test_invariants import report\nprint(json.dumps(report()))"
    )
    done = subprocess.run(
        [sys.executable, "-O", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["debug"] is False, "the subprocess did not run with -O"
    outcomes = got["outcomes"]
    missed = {
        name: outcomes[name] for name, (_, text) in CASES.items() if text not in outcomes[name]
    }
    assert not missed, missed


def test_an_order_moves_exactly_as_the_transition_table_allows() -> None:
    """``Order.move_to`` checks ``TRANSITIONS`` by a shortcut; the two must agree everywhere."""
    for start in OrderStatus:
        for target in OrderStatus:
            order = Order(1, BUYER, "ETH_USD", Side.BUY, OrderType.LIMIT, BID, LOT,
                          TimeInForce.GTC, False, None, 1, 0)  # fmt: skip
            order.status = start
            try:
                order.move_to(target)
                moved = True
            except InvariantViolation:
                moved = False
            assert moved == (target in TRANSITIONS[start]), (start, target)
