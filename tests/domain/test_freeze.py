"""Frozen accounts in the engine: what is refused and what is not, and that a freeze survives
journal replay and snapshots while a state that never had one hashes as it always did."""

from __future__ import annotations

from tests.domain.test_conservation import FEES, INSTRUMENT
from tests.domain.test_liveness import funded
from tradews.domain.orders import OrderType, Reject, Side, TimeInForce
from tradews.engine.commands import (
    AmendOrder,
    AnyCommand,
    CancelOrder,
    Deposit,
    FreezeAccount,
    PlaceOrder,
    Withdraw,
    decoder,
    encoder,
)
from tradews.engine.engine import Done, Engine, OrderResult, Rejected, Result


def order(at: int, account: int, side: Side, price: int, qty: int = 1) -> PlaceOrder:
    return PlaceOrder(at, account, "B_Q", side, OrderType.LIMIT, price, qty, TimeInForce.GTC,
                      False, None, 0, 0)  # fmt: skip


def is_frozen_refusal(result: Result) -> bool:
    return isinstance(result, Rejected) and result.reason is Reject.ACCOUNT_FROZEN


def test_a_frozen_account_may_cancel_and_be_credited_but_not_trade_or_withdraw() -> None:
    engine = funded(1, 2)
    journal: list[AnyCommand] = []

    def apply(command: AnyCommand) -> Result:
        journal.append(command)
        return engine.apply(command)[0]

    resting = apply(order(1, 1, Side.BUY, 9_000, 2))
    assert isinstance(resting, OrderResult)
    order_id = resting.order.order_id
    assert apply(FreezeAccount(2, 1, True)) == Done({"frozen": True, "changed": True})
    assert apply(FreezeAccount(3, 1, True)) == Done({"frozen": True, "changed": False})
    assert is_frozen_refusal(apply(order(4, 1, Side.BUY, 9_000)))
    assert is_frozen_refusal(apply(AmendOrder(5, 1, order_id, None, 8_000, None)))
    assert is_frozen_refusal(apply(Withdraw(6, 1, "Q", 1, "w1")))
    assert apply(Deposit(7, 1, "Q", 1, "d1")) == Done({"duplicate": False})
    # Others trade as ever, against the frozen account's resting order too.
    assert isinstance(apply(order(8, 2, Side.SELL, 9_000)), OrderResult)
    assert isinstance(apply(CancelOrder(9, 1, order_id, None)), OrderResult)
    assert order_id not in engine.open_orders
    engine.validate()

    # Replaying the journal and restoring a snapshot both give the frozen state back.
    replayed = funded(1, 2)
    for command in journal:
        replayed.apply(command)
    restored = Engine.restore([INSTRUMENT], engine.snapshot(), fee_account_id=FEES)
    for other in (replayed, restored):
        assert other.state_hash() == engine.state_hash() and other.is_frozen(1)
    assert is_frozen_refusal(restored.apply(order(10, 1, Side.BUY, 9_000))[0])

    assert apply(FreezeAccount(11, 1, False)) == Done({"frozen": False, "changed": True})
    assert isinstance(apply(order(12, 1, Side.BUY, 9_000)), OrderResult)
    assert isinstance(apply(Withdraw(13, 1, "Q", 1, "w1")), Done)


def test_an_account_never_frozen_leaves_the_state_hash_as_it_was() -> None:
    engine, twin = funded(1), funded(1)
    engine.apply(FreezeAccount(1, 1, True))
    assert engine.state_hash() != twin.state_hash()
    engine.apply(FreezeAccount(2, 1, False))
    twin.seq = engine.seq  # two more commands, no other difference
    assert engine.state_hash() == twin.state_hash()
    assert decoder.decode(encoder.encode(FreezeAccount(3, 7, True))) == FreezeAccount(3, 7, True)
