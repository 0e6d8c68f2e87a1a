"""Simulated participants for demo mode: market makers that keep real orders in every book
around the random-walk reference price, and a taker that trades now and then.

They are ordinary accounts sending ordinary commands through the engine host, so everything
they do is journaled, matched, settled and streamed like any client's orders.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction

from tradews.domain.instrument import Instrument
from tradews.domain.ledger import ATOMS_PER_UNIT
from tradews.domain.orders import OrderType, Side, TimeInForce
from tradews.engine.commands import AnyCommand, CancelAll, Deposit, PlaceOrder

MAKER = "demo-maker"
TAKER = "demo-taker"
LEVELS = 5


def funding(account_ids: dict[str, int], instruments: list[Instrument]) -> list[Deposit]:
    """Deposits that fund the demo, house and simulated accounts (idempotent by ref)."""
    plan: dict[str, dict[str, Decimal]] = {
        "demo": {"USD": Decimal(1_000_000)},
        "house": {"USD": Decimal(50_000_000)},
        MAKER: {"USD": Decimal(100_000_000)},
        TAKER: {"USD": Decimal(10_000_000)},
    }
    base_amounts = {"BTC": Decimal(1_000), "ETH": Decimal(20_000), "SOL": Decimal(500_000)}
    for inst in instruments:
        amount = base_amounts.get(inst.base, Decimal(1_000_000))
        plan["demo"].setdefault(inst.base, amount / 100)
        plan["house"].setdefault(inst.base, amount)
        plan[MAKER].setdefault(inst.base, amount * 2)
        plan[TAKER].setdefault(inst.base, amount / 10)
    out = []
    for name, assets in plan.items():
        for asset, amount in sorted(assets.items()):
            atoms = int(amount * ATOMS_PER_UNIT)
            out.append(Deposit(0, account_ids[name], asset, atoms, f"demo-seed:{name}:{asset}"))
    return out


class DemoMarket:
    def __init__(
        self,
        maker_id: int,
        taker_id: int,
        references: dict[str, Fraction],
        instruments: Callable[[], list[Instrument]],
        *,
        seed: int,
    ) -> None:
        self._maker = maker_id
        self._taker = taker_id
        self._references = references
        self._instruments = instruments
        self._rng = random.Random(seed)

    def requote(self, now_ms: int) -> list[AnyCommand]:
        """Replace the maker's ladder in every book around the current reference."""
        out: list[AnyCommand] = []
        for inst in self._instruments():
            ref = self._references.get(inst.symbol)
            if ref is None:
                continue
            out.append(CancelAll(now_ms, self._maker, inst.symbol))
            step = max(1, round(ref * Fraction(2, 10_000)))  # 2 bps between levels
            half_spread = max(1, round(ref * Fraction(3, 10_000)))
            size = max(inst.quote_size_lots, 1)
            for level in range(LEVELS):
                lots = size * (level + 1)
                bid = int(ref) - half_spread - level * step
                ask = int(ref) + 1 + half_spread + level * step
                if bid > 0:
                    out.append(self._order(now_ms, self._maker, inst, Side.BUY, bid, lots))
                out.append(self._order(now_ms, self._maker, inst, Side.SELL, ask, lots))
        return out

    def maybe_take(self, now_ms: int) -> list[AnyCommand]:
        """Now and then, a market order of a random small size on a random instrument."""
        instruments = self._instruments()
        if not instruments or self._rng.random() > 0.3:
            return []
        inst = self._rng.choice(instruments)
        lots = max(1, inst.quote_size_lots * self._rng.randint(1, 3) // 2)
        side = self._rng.choice((Side.BUY, Side.SELL))
        return [
            PlaceOrder(now_ms, self._taker, inst.symbol, int(side), int(OrderType.MARKET), 0,
                       lots, int(TimeInForce.IOC), False, None, 0, 0)
        ]  # fmt: skip

    @staticmethod
    def _order(now_ms: int, account: int, inst: Instrument, side: Side, price: int,
               lots: int) -> PlaceOrder:  # fmt: skip
        return PlaceOrder(now_ms, account, inst.symbol, int(side), int(OrderType.LIMIT), price,
                          lots, int(TimeInForce.GTC), False, None, 0, 0)  # fmt: skip
