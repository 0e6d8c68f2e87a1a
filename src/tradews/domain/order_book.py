"""A price-time priority limit order book for one instrument.

Levels are kept in a dict by price (O(1) to find) plus a sorted list of prices per side (bisect to
insert a new level; a book has tens to hundreds of levels, so this beats a tree in Python). Each
level holds its orders in a list in time priority, in which a cancelled or filled order leaves a
gap (None) and each resting order knows its place: joining, leaving from the middle (cancels)
and finding the head are O(1), with no hashing (see :class:`~tradews.domain.orders.Level`). The
book also counts each account's resting orders, so that pricing which must leave one account's
orders out (RFQ quotes) knows, in O(1), whether it needs to look at orders at all.

The book only holds and matches orders. It does not validate them, lock funds or settle trades:
the engine does that around it. ``tests/domain/reference_book.py`` is a deliberately naive book
that the property tests drive side by side with this one.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator
from fractions import Fraction
from typing import Final

from tradews.domain.invariants import InvariantViolation
from tradews.domain.orders import Level, Order, Side

# Sides as plain ints (what Order.side holds); Side members compare equal to them.
_BUY: Final = 1
_SELL: Final = 2


class Touched:
    """The levels whose totals changed since the owner last cleared them: the first ``count``
    of ``levels``, in order of first change, each once. A level is listed when its ``mark`` is
    not the current ``stamp`` (then marked): a list and an int compare, cheaper than a dict used
    as an ordered set. The owner (an engine: one per command, shared by its books) moves
    ``stamp`` on when it clears them. Entries past ``count`` are stale, left in place so that
    the list keeps its storage (clearing a list frees it, and the next append allocates)."""

    __slots__ = ("count", "levels", "stamp")

    def __init__(self) -> None:
        self.levels: list[Level] = []
        self.count = 0
        self.stamp = 0

    def add(self, level: Level) -> None:
        if level.mark != self.stamp:
            level.mark = self.stamp
            n = self.count
            if n < len(self.levels):
                self.levels[n] = level
            else:
                self.levels.append(level)
            self.count = n + 1

    def clear(self) -> None:
        self.count = 0
        self.stamp += 1


class OrderBook:
    __slots__ = (
        "_ask_prices",
        "_asks",
        "_bid_prices",
        "_bids",
        "_emptied",
        "owners",
        "symbol",
        "touched",
    )

    def __init__(self, symbol: str, touched: Touched | None = None) -> None:
        self.symbol = symbol
        # Every level whose total changes is added here (an engine shares one between its books
        # and reports them once per command).
        self.touched = Touched() if touched is None else touched
        # The last level emptied on each side (bids, asks): an order re-placed at that price
        # reuses it, so that one price never has two Level objects in ``touched``.
        self._emptied: list[Level | None] = [None, None]
        # Each side in attributes of its own, not in dicts keyed by side: a side is an enum, and
        # hashing one costs more than the lookup it would serve.
        self._bids: dict[int, Level] = {}
        self._asks: dict[int, Level] = {}
        # Ascending on both sides: the best bid is the last, the best ask the first.
        self._bid_prices: list[int] = []
        self._ask_prices: list[int] = []
        # account id -> how many of its orders rest in this book (accounts with none absent)
        self.owners: dict[int, int] = {}

    def _side(self, side: int) -> tuple[dict[int, Level], list[int]]:
        """The levels and the sorted prices of ``side`` (a :class:`Side` or its value)."""
        if side == _BUY:
            return self._bids, self._bid_prices
        return self._asks, self._ask_prices

    # Reading --------------------------------------------------------------------------------

    def best(self, side: int) -> int | None:
        if side == _BUY:
            return self._bid_prices[-1] if self._bid_prices else None
        return self._ask_prices[0] if self._ask_prices else None

    def level_total(self, side: int, price: int) -> int:
        """Resting quantity at ``price`` on ``side`` (0 if there is no such level)."""
        level = (self._bids if side == _BUY else self._asks).get(price)
        return 0 if level is None else level.total

    def would_cross(self, side: int, price: int) -> bool:
        """Would an order of ``side`` at ``price`` trade against the book?"""
        best = self.best(_SELL if side == _BUY else _BUY)
        if best is None:
            return False
        return best <= price if side == _BUY else best >= price

    def levels(self, side: int) -> Iterator[Level]:
        """Levels of ``side`` from the best price outwards."""
        levels, prices = self._side(side)
        ordered = reversed(prices) if side == _BUY else iter(prices)
        for price in ordered:
            yield levels[price]

    def depth(self, side: int, n: int | None = None) -> list[tuple[int, int]]:
        """``[(price, total quantity)]`` of the ``n`` best levels of ``side``."""
        out: list[tuple[int, int]] = []
        for level in self.levels(side):
            if n is not None and len(out) >= n:
                break
            out.append((level.price, level.total))
        return out

    def fillable(self, side: int, limit: int | None, quantity: int, account_id: int) -> int:
        """How much of ``quantity`` an order of ``side`` would fill now (at most ``limit``),
        stopping, like :meth:`match`, at the first resting order of the same account."""
        got = 0
        for level in self.levels(_SELL if side == _BUY else _BUY):
            if limit is not None and (level.price > limit if side == _BUY else level.price < limit):
                break
            for maker in level.orders():
                if maker.account_id == account_id:
                    return got
                got += maker.remaining
                if got >= quantity:
                    return quantity
        return got

    def vwap(self, side: int, quantity: int, exclude: int | None = None) -> Fraction | None:
        """Average price to take ``quantity`` from ``side`` of the book, or None if too thin.

        ``exclude``: an account whose orders do not count (as if they were not there). Only an
        account that has orders in this book costs an order-by-order walk; for any other the
        level totals suffice.
        """
        if exclude is not None and exclude in self.owners:
            return self._vwap_excluding(side, quantity, exclude)
        left = quantity
        cost = 0
        for level in self.levels(side):
            take = min(left, level.total)
            cost += take * level.price
            left -= take
            if left == 0:
                return Fraction(cost, quantity)
        return None

    def _vwap_excluding(self, side: int, quantity: int, account_id: int) -> Fraction | None:
        left = quantity
        cost = 0
        for level in self.levels(side):
            available = level.total
            for order in level.orders():
                if order.account_id == account_id:
                    available -= order.remaining
            take = min(left, available)
            cost += take * level.price
            left -= take
            if left == 0:
                return Fraction(cost, quantity)
        return None

    def resting(self) -> Iterator[Order]:
        """Every resting order, bids then asks, each side from the best price outwards."""
        for side in (_BUY, _SELL):
            for level in self.levels(side):
                yield from level.orders()

    def holds(self, order: Order) -> bool:
        """Does ``order`` rest in this book?"""
        level = order.level
        if level is None:
            return False
        return (
            (self._bids if order.side == _BUY else self._asks).get(order.price) is level
            and 0 <= order.slot < len(level.queue)
            and level.queue[order.slot] is order
        )

    # Changing -------------------------------------------------------------------------------

    def rest(self, order: Order) -> None:
        """Put ``order`` at the back of the queue at its price."""
        levels, prices = self._side(order.side)
        price = order.price_key  # a Python int already: no new one for each use as a key
        level = levels.get(price)
        if level is None:
            emptied = self._emptied[order.side - 1]
            if emptied is None or emptied.price != order.price:
                emptied = Level(self.symbol, order.side, order.price)
            level = levels[price] = emptied
            insort(prices, price)
        level.join(order)
        level.total += order.remaining
        order.level = level
        self.touched.add(level)
        owners = self.owners
        owners[order.account_id] = owners.get(order.account_id, 0) + 1

    def remove(self, order: Order) -> None:
        """Take a resting order out of the book."""
        level = _level_of(order)
        level.leave(order)
        order.level = None
        self._disown(order.account_id)
        level.total -= order.remaining
        self.touched.add(level)
        if not level.count:
            levels, prices = self._side(order.side)
            price = order.price_key
            del levels[price]
            del prices[bisect_left(prices, price)]
            self._emptied[order.side - 1] = level

    def _disown(self, account_id: int) -> None:
        owners = self.owners
        left = owners[account_id] - 1
        if left:
            owners[account_id] = left
        else:
            del owners[account_id]

    def reduce(self, order: Order, new_remaining: int) -> None:
        """Lower a resting order's remaining quantity in place: it keeps its queue position."""
        level = _level_of(order)
        level.total -= order.remaining - new_remaining
        order.remaining = new_remaining
        self.touched.add(level)

    def match(
        self, side: int, limit: int | None, quantity: int, account_id: int
    ) -> tuple[list[tuple[Order, int]], bool]:
        """Trade an incoming order against the book; return ``(fills, self_trade_stop)``.

        ``fills`` are ``(maker, quantity)`` in execution order, at the maker's price; makers are
        already reduced, and removed when filled (their status is the engine's business).
        Matching stops when ``quantity`` is done, the ``limit`` is reached, the opposite side is
        empty, or the next maker belongs to ``account_id`` (self-trade prevention, ``True``).
        """
        fills: list[tuple[Order, int]] = []
        touched = self.touched
        is_buy = side == _BUY
        levels, prices = (
            (self._asks, self._ask_prices) if is_buy else (self._bids, self._bid_prices)
        )
        while quantity and prices:
            price = prices[0] if is_buy else prices[-1]
            if limit is not None and (price > limit if is_buy else price < limit):
                break
            level = levels[price]
            queue = level.queue
            head = level.head
            while quantity and level.count:
                maker = queue[head]
                if maker is None:  # a gap: the order that was here has left
                    head += 1
                    continue
                if maker.account_id == account_id:
                    level.head = head
                    return fills, True
                left = maker.remaining
                take = left if left < quantity else quantity
                fills.append((maker, take))
                touched.add(level)
                quantity -= take
                maker.remaining = left - take
                level.total -= take
                if left == take:
                    queue[head] = None
                    head += 1
                    level.count -= 1
                    maker.slot = -1
                    maker.level = None
                    self._disown(maker.account_id)
                else:
                    break  # the incoming order is done
            level.head = head
            if level.count:
                if len(queue) > 2 * level.count + 16:
                    level.compact()
            else:
                level.empty()
                del levels[price]
                if is_buy:
                    del prices[0]
                else:
                    prices.pop()
                self._emptied[level.side - 1] = level
        return fills, False

    # Checking -------------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise :class:`InvariantViolation` if an internal invariant is broken (used by tests,
        at start-up and by the ``/state`` report)."""
        for side in (Side.BUY, Side.SELL):
            levels, prices = self._side(side)
            if prices != sorted(set(prices)):
                raise InvariantViolation(f"{self.symbol} {side.name}: price list not sorted/unique")
            if set(prices) != set(levels):
                raise InvariantViolation(f"{self.symbol} {side.name}: price list and levels differ")
            for price in prices:
                level = levels[price]
                orders = level.orders()
                if not orders:
                    raise InvariantViolation(f"{self.symbol} {side.name}: empty level at {price}")
                if level.count != len(orders) or any(level.queue[: level.head]):
                    raise InvariantViolation(
                        f"{self.symbol} {side.name} level {price}: {len(orders)} orders in its "
                        f"queue after its head, {level.count} counted"
                    )
                total = sum(o.remaining for o in orders)
                if level.total != total:
                    raise InvariantViolation(
                        f"{self.symbol} {side.name} level {price}: total {level.total}, "
                        f"orders add up to {total}"
                    )
                last_priority = None
                for order in orders:
                    if order.side != side or order.price != price or order.remaining <= 0:
                        raise InvariantViolation(
                            f"{self.symbol}: {order!r} misplaced at {side.name} {price}"
                        )
                    if order.level is not level or level.queue[order.slot] is not order:
                        raise InvariantViolation(
                            f"{self.symbol}: {order!r} not indexed at its level"
                        )
                    if last_priority is not None and order.priority <= last_priority:
                        raise InvariantViolation(
                            f"{self.symbol} {side.name} level {price}: time priority broken "
                            f"at {order!r}"
                        )
                    last_priority = order.priority
        counts: dict[int, int] = {}
        for order in self.resting():
            counts[order.account_id] = counts.get(order.account_id, 0) + 1
        if counts != self.owners:
            raise InvariantViolation(f"{self.symbol}: resting orders per account out of step")
        bid, ask = self.best(Side.BUY), self.best(Side.SELL)
        if bid is not None and ask is not None and bid >= ask:
            raise InvariantViolation(f"{self.symbol}: crossed book, bid {bid} >= ask {ask}")


def _level_of(order: Order) -> Level:
    """The level ``order`` rests on (set by :meth:`OrderBook.rest`)."""
    level = order.level
    if level is None:
        raise InvariantViolation(f"{order!r} does not rest in a book")
    return level
