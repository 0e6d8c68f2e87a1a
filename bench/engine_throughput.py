"""Engine throughput in process: commands per second on a realistic mix, one core.

The mix, per instrument with a book kept around 100 resting orders a side:
  45 % place a passive limit order (rests), 37 % cancel a resting order,
  13 % place a crossing IOC limit order (trades through a few levels), 5 % amend.
Two market participants per side so that self-trade prevention does not stop the crossing.

    .venv/bin/python bench/engine_throughput.py [--commands 300000] [--seed 7]

Commands are built before timing; the timed loop only calls Engine.apply.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import time
from decimal import Decimal

from tradews.domain.instrument import Instrument
from tradews.domain.ledger import ATOMS_PER_UNIT
from tradews.domain.orders import OrderType, Side, TimeInForce
from tradews.engine.commands import AmendOrder, AnyCommand, CancelOrder, Deposit, PlaceOrder
from tradews.engine.engine import Engine, OrderResult

INST = Instrument(
    "BTC_USD", "BTC", "USD", Decimal("0.01"), Decimal("0.0001"), Decimal("0.0001"), None,
    Decimal("1"),
)  # fmt: skip
MID = 6_500_000  # 65,000.00
ACCOUNTS = (1, 2, 3, 4)


def fund(engine: Engine) -> None:
    for a in ACCOUNTS:
        engine.apply(Deposit(0, a, "USD", 10**9 * ATOMS_PER_UNIT, f"u{a}"))
        engine.apply(Deposit(0, a, "BTC", 10**7 * ATOMS_PER_UNIT, f"b{a}"))


def run(n: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    engine = Engine([INST], fee_account_id=99)
    fund(engine)
    resting: list[tuple[int, int]] = []  # (order id, account)
    # Warm the book: 100 orders a side.
    for i in range(200):
        side = Side.BUY if i % 2 else Side.SELL
        price = MID - rng.randint(1, 200) if side is Side.BUY else MID + rng.randint(1, 200)
        r, _ = engine.apply(PlaceOrder(0, ACCOUNTS[i % 4], "BTC_USD", side, OrderType.LIMIT,
                                       price, rng.randint(1, 50), TimeInForce.GTC, False, None,
                                       500, 1000))  # fmt: skip
        assert isinstance(r, OrderResult)
        resting.append((r.order.order_id, r.order.account_id))

    # The workload is generated against the engine as it goes (cancels need live ids), so we
    # time apply() alone by accumulating its duration.
    spent = 0.0
    kinds = {"place": 0, "cancel": 0, "cross": 0, "amend": 0}
    trades = 0
    perf = time.perf_counter
    gc.disable()
    for i in range(n):
        roll = rng.random()
        account = ACCOUNTS[i % 4]
        cmd: AnyCommand
        if roll < 0.45 or not resting:
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            off = rng.randint(1, 200)
            price = MID - off if side is Side.BUY else MID + off
            cmd = PlaceOrder(i, account, "BTC_USD", side, OrderType.LIMIT, price,
                             rng.randint(1, 50), TimeInForce.GTC, False, None, 500, 1000)  # fmt: skip
            kind = "place"
        elif roll < 0.82:
            order_id, owner = resting.pop(rng.randrange(len(resting)))
            cmd = CancelOrder(i, owner, order_id, None)
            kind = "cancel"
        elif roll < 0.95:
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            price = MID + 60 if side is Side.BUY else MID - 60
            cmd = PlaceOrder(i, account, "BTC_USD", side, OrderType.LIMIT, price,
                             rng.randint(20, 120), TimeInForce.IOC, False, None, 500, 1000)  # fmt: skip
            kind = "cross"
        else:
            order_id, owner = resting[rng.randrange(len(resting))]
            cmd = AmendOrder(i, owner, order_id, None, None, rng.randint(1, 50))
            kind = "amend"
        t0 = perf()
        result, events = engine.apply(cmd)
        spent += perf() - t0
        kinds[kind] += 1
        if isinstance(result, OrderResult) and kind == "place" and result.order.remaining:
            resting.append((result.order.order_id, result.order.account_id))
        trades += sum(1 for e in events if type(e).__name__ == "TradeExecuted")
        if kind == "cross":  # makers filled away are no longer resting
            open_ids = engine.open_orders
            resting = [r for r in resting if r[0] in open_ids] if i % 50 == 0 else resting
    gc.enable()
    engine.validate()
    return {
        "commands": n,
        "seconds": spent,
        "per_second": n / spent,
        "us_per_command": spent / n * 1e6,
        "trades": trades,
        "open_orders": len(engine.open_orders),
        **{f"n_{k}": v for k, v in kinds.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commands", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}")
    result = run(args.commands, args.seed)
    for key, value in result.items():
        print(f"{key:>16}: {value:,.2f}" if isinstance(value, float) else f"{key:>16}: {value:,}")


if __name__ == "__main__":
    main()
