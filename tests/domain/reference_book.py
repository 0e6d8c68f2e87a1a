"""A deliberately naive order book: obviously correct, slow, and independent of the real one.

Orders rest in one flat list. To match, it sorts the whole opposite side by price, then time,
every time. The property tests drive it and the engine with the same commands and require the
same results, fills and resting orders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction


@dataclass
class RefOrder:
    order_id: int
    account: int
    side: str  # "buy" | "sell"
    price: int
    remaining: int
    quantity: int
    priority: int
    post_only: bool


@dataclass
class RefOutcome:
    accepted: bool
    reason: str | None = None
    fills: list[tuple[int, int, int]] = field(default_factory=list)  # (maker id, price, qty)
    status: str | None = None
    remaining: int = 0


class ReferenceBook:
    def __init__(self, min_lots: int, max_lots: int) -> None:
        self.resting: list[RefOrder] = []
        self.closed: dict[int, int] = {}  # order id -> account
        self.min_lots = min_lots
        self.max_lots = max_lots
        self.next_id = 1
        self.priority = 0

    def _opposite(self, side: str, limit: int | None) -> list[RefOrder]:
        other = "sell" if side == "buy" else "buy"
        orders = [o for o in self.resting if o.side == other]
        if limit is not None:
            orders = [
                o for o in orders if (o.price <= limit if side == "buy" else o.price >= limit)
            ]
        if side == "buy":
            return sorted(orders, key=lambda o: (o.price, o.priority))
        return sorted(orders, key=lambda o: (-o.price, o.priority))

    def fillable(self, account: int, side: str, limit: int | None) -> int:
        total = 0
        for o in self._opposite(side, limit):
            if o.account == account:
                break
            total += o.remaining
        return total

    def crosses(self, side: str, price: int) -> bool:
        return bool(self._opposite(side, price))

    def size_problem(self, qty: int) -> str | None:
        if qty <= 0:
            return "INVALID_QUANTITY"
        if qty < self.min_lots:
            return "BELOW_MIN_SIZE"
        if qty > self.max_lots:
            return "ABOVE_MAX_SIZE"
        return None

    def place(
        self, account: int, side: str, kind: str, price: int, qty: int, tif: str, post_only: bool
    ) -> RefOutcome:
        problem = self.size_problem(qty)
        if problem:
            return RefOutcome(False, problem)
        limit = price if kind == "limit" else None
        if kind == "limit" and price <= 0:
            return RefOutcome(False, "INVALID_PRICE")
        if kind == "market" and tif == "GTC":
            tif = "IOC"
        if post_only:
            if tif != "GTC" or kind == "market":
                return RefOutcome(False, "POST_ONLY_NOT_GTC")
            if self.crosses(side, price):
                return RefOutcome(False, "POST_ONLY_WOULD_TAKE")
        if tif == "FOK":
            if self.fillable(account, side, limit) < qty:
                return RefOutcome(False, "FOK_NOT_FILLABLE")
        elif kind == "market" and self.fillable(account, side, None) == 0:
            return RefOutcome(False, "NO_LIQUIDITY")
        self.priority += 1
        order = RefOrder(self.next_id, account, side, price, qty, qty, self.priority, post_only)
        self.next_id += 1
        return self._take(order, limit, tif)

    def _take(self, order: RefOrder, limit: int | None, tif: str) -> RefOutcome:
        fills = []
        self_trade = False
        for maker in self._opposite(order.side, limit):
            if not order.remaining:
                break
            if maker.account == order.account:
                self_trade = True
                break
            take = min(maker.remaining, order.remaining)
            fills.append((maker.order_id, maker.price, take))
            maker.remaining -= take
            order.remaining -= take
            if maker.remaining == 0:
                self.resting.remove(maker)
                self.closed[maker.order_id] = maker.account
        if not order.remaining:
            status = "filled"
            self.closed[order.order_id] = order.account
        elif self_trade or tif != "GTC":
            status = "cancelled"
            self.closed[order.order_id] = order.account
        else:
            self.resting.append(order)
            status = "partially_filled" if fills else "new"
        return RefOutcome(True, None, fills, status, order.remaining)

    def find(self, order_id: int, account: int) -> RefOrder | str:
        for o in self.resting:
            if o.order_id == order_id and o.account == account:
                return o
        # Another account's order is never revealed, open or closed.
        return "ORDER_CLOSED" if self.closed.get(order_id) == account else "UNKNOWN_ORDER"

    def cancel(self, order_id: int, account: int) -> str | None:
        found = self.find(order_id, account)
        if isinstance(found, str):
            return found
        self.resting.remove(found)
        self.closed[order_id] = account
        return None

    def amend(self, order_id: int, account: int, price: int | None, qty: int | None) -> RefOutcome:
        found = self.find(order_id, account)
        if isinstance(found, str):
            return RefOutcome(False, found)
        o = found
        new_price = o.price if price is None else price
        new_qty = o.quantity if qty is None else qty
        filled = o.quantity - o.remaining
        if new_price <= 0:
            return RefOutcome(False, "INVALID_PRICE")
        if new_price == o.price and new_qty == o.quantity:
            return RefOutcome(False, "AMEND_NOTHING")
        if new_qty <= filled:
            return RefOutcome(False, "AMEND_BELOW_FILLED")
        problem = self.size_problem(new_qty)
        if problem:
            return RefOutcome(False, problem)
        if new_price == o.price and new_qty < o.quantity:
            o.quantity = new_qty
            o.remaining = new_qty - filled
            return RefOutcome(True, None, [], "partially_filled" if filled else "new", o.remaining)
        if o.post_only and self.crosses(o.side, new_price):
            return RefOutcome(False, "POST_ONLY_WOULD_TAKE")
        self.resting.remove(o)
        o.price = new_price
        o.quantity = new_qty
        o.remaining = new_qty - filled
        self.priority += 1
        o.priority = self.priority
        outcome = self._take(o, new_price, "GTC")
        if outcome.status == "new" and filled:
            outcome.status = "partially_filled"
        return outcome

    def snapshot(self) -> list[tuple[int, int, str, int, int]]:
        """Resting orders in priority order per side: (id, account, side, price, remaining)."""
        bids = sorted(
            (o for o in self.resting if o.side == "buy"), key=lambda o: (-o.price, o.priority)
        )
        asks = sorted(
            (o for o in self.resting if o.side == "sell"), key=lambda o: (o.price, o.priority)
        )
        return [(o.order_id, o.account, o.side, o.price, o.remaining) for o in bids + asks]

    def vwap(self, side: str, qty: int, exclude: int | None) -> Fraction | None:
        """Average price of taking ``qty`` from ``side``'s resting orders, leaving out those of
        ``exclude``; None if they hold less than ``qty``."""
        orders = [o for o in self.resting if o.side == side and o.account != exclude]
        orders.sort(key=lambda o: -o.price if side == "buy" else o.price)
        left, cost = qty, 0
        for o in orders:
            take = min(left, o.remaining)
            cost += take * o.price
            left -= take
        return Fraction(cost, qty) if left == 0 else None
