"""Orders and their lifecycle.

An order's life is a small state table (``TRANSITIONS``), checked on every change::

    NEW ──fill──> PARTIALLY_FILLED ──fill──> FILLED
     │                 │
     ├──cancel─────────┴──cancel──> CANCELLED
     └──(never rests) ───────────> CANCELLED   (IOC/market remainder, STP, FOK not fillable)

Rejected orders never enter the table: they are refused before they exist, with a
:class:`Reject` reason code.
"""

from __future__ import annotations

import enum
from typing import Any, Final

from tradews.domain.invariants import InvariantViolation
from tradews.domain.ledger import Balance


class Side(enum.IntEnum):
    BUY = 1
    SELL = 2

    # Enum's own __hash__ is written in Python; sides key the engine's hottest dicts. Hashing as
    # the int is consistent with equality (an IntEnum equals its value) and runs in C.
    __hash__ = int.__hash__

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(enum.IntEnum):
    LIMIT = 1
    MARKET = 2


class TimeInForce(enum.IntEnum):
    GTC = 1  # good till cancelled: the remainder rests
    IOC = 2  # immediate or cancel: fill what can be filled now, cancel the rest
    FOK = 3  # fill or kill: fill all of it now, or none of it


class OrderStatus(enum.Enum):
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"


# The members the hot paths compare by identity, as constants (compiled: C statics, not a lookup
# of the class in the module's dict and of the member in the class).
_NEW: Final = OrderStatus.NEW
_PARTIAL: Final = OrderStatus.PARTIALLY_FILLED


TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.NEW: frozenset(
        {OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELLED}
    ),
    OrderStatus.PARTIALLY_FILLED: frozenset(
        {OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELLED}
    ),
    OrderStatus.FILLED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}


class Reject(enum.Enum):
    """Why an order or command was refused. The values are the stable reason codes clients see."""

    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    INVALID_PRICE = "INVALID_PRICE"  # missing, off the tick, not positive
    INVALID_QUANTITY = "INVALID_QUANTITY"  # off the lot or not positive
    OUT_OF_RANGE = "OUT_OF_RANGE"  # a price or quantity too large to store exactly
    BELOW_MIN_SIZE = "BELOW_MIN_SIZE"
    ABOVE_MAX_SIZE = "ABOVE_MAX_SIZE"
    PRICE_NOT_ALLOWED = "PRICE_NOT_ALLOWED"  # a price on a market order
    POST_ONLY_WOULD_TAKE = "POST_ONLY_WOULD_TAKE"
    POST_ONLY_NOT_GTC = "POST_ONLY_NOT_GTC"
    FOK_NOT_FILLABLE = "FOK_NOT_FILLABLE"
    NO_LIQUIDITY = "NO_LIQUIDITY"  # a market order with nothing to trade against
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    DUPLICATE_CLIENT_ORDER_ID = "DUPLICATE_CLIENT_ORDER_ID"  # same id, other parameters
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    ORDER_CLOSED = "ORDER_CLOSED"  # already filled or cancelled
    AMEND_NOTHING = "AMEND_NOTHING"
    AMEND_BELOW_FILLED = "AMEND_BELOW_FILLED"
    UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    DUPLICATE_REFERENCE = "DUPLICATE_REFERENCE"  # a deposit/withdrawal ref reused differently
    QUOTE_UNKNOWN = "QUOTE_UNKNOWN"
    QUOTE_EXPIRED = "QUOTE_EXPIRED"
    QUOTE_USED = "QUOTE_USED"
    QUOTE_NOT_YOURS = "QUOTE_NOT_YOURS"
    HOUSE_LIMIT = "HOUSE_LIMIT"
    ACCOUNT_FROZEN = "ACCOUNT_FROZEN"  # the operator froze the account: no trading, no withdrawal


class Order:
    """A live order inside the engine. Mutable, but only the engine's thread ever touches it.

    Prices are ticks (0 for a market order), quantities lots. ``priority`` is the sequence number
    that orders the queue at a price level: smaller goes first. ``side``, ``type`` and ``tif``
    are the plain values of :class:`Side`, :class:`OrderType` and :class:`TimeInForce`: events
    carry them as ints, and comparing ints costs less than converting enums on every event.
    ``pays`` and ``gets`` are the ledger rows the order locks funds in and receives fills into
    (``gets`` found at the first fill), so that settling looks neither up.
    """

    __slots__ = (
        "order_id",
        "account_id",
        "symbol",
        "side",
        "type",
        "price",
        "quantity",
        "remaining",
        "tif",
        "post_only",
        "client_order_id",
        "priority",
        "status",
        "created_at",
        "locked",
        "maker_fee_cbps",
        "taker_fee_cbps",
        "pays",
        "gets",
        "key",
        "level",
        "price_key",
        "slot",
        "state",
    )

    def __init__(
        self,
        order_id: int,
        account_id: int,
        symbol: str,
        side: int,
        type: int,
        price: int,
        quantity: int,
        tif: int,
        post_only: bool,
        client_order_id: str | None,
        priority: int,
        created_at: Any,  # an int, kept as the Python object it came as (see below)
        maker_fee_cbps: int = 0,
        taker_fee_cbps: int = 0,
    ) -> None:
        self.order_id = order_id
        self.account_id = account_id
        self.symbol = symbol
        self.side = side
        self.type = type
        self.price = price
        self.quantity = quantity
        self.remaining = quantity
        self.tif = tif
        self.post_only = post_only
        self.client_order_id = client_order_id
        self.priority = priority
        self.status = _NEW
        # Any: compiled, kept as the Python int it came as (events copy it; nothing computes).
        self.created_at: Any = created_at
        self.locked = 0  # funds this order holds locked in the ledger, in asset atoms
        self.maker_fee_cbps = maker_fee_cbps
        self.taker_fee_cbps = taker_fee_cbps
        self.pays: Balance | None = None
        self.gets: Balance | None = None
        # order_id as a Python int made once. Compiled, an int attribute is a machine integer,
        # and every use as a dict key or event field would allocate an int object for it again.
        self.key: Any = order_id
        self.price_key: Any = price  # the same for the price (book keys and events)
        # The book level the order rests on (None when it does not rest): cancelling, reducing
        # and checking find it without a lookup by price.
        self.level: Level | None = None
        self.slot = -1  # its place in its level's queue while it rests (see Level)
        # The engine's latest report of this order (an ``OrderUpdated``; the domain does not
        # know events, hence Any), so that a command's result needs no lookup.
        self.state: Any = None

    def set_price(self, price: int) -> None:
        """A new limit price (an amendment; never while the order rests)."""
        self.price = price
        self.price_key = price

    @property
    def filled(self) -> int:
        return self.quantity - self.remaining

    def move_to(self, status: OrderStatus) -> None:
        # TRANSITIONS without looking it up (hashing an Enum runs Python code): an open order may
        # go anywhere but back to NEW, a closed one nowhere. tests/domain checks they agree.
        if not self.is_open or status is _NEW:
            raise InvariantViolation(
                f"order {self.order_id}: {self.status} -> {status} is not allowed"
            )
        self.status = status

    @property
    def is_open(self) -> bool:
        status = self.status
        return status is _NEW or status is _PARTIAL

    def __repr__(self) -> str:
        return (
            f"Order({self.order_id} {Side(self.side).name} {self.remaining}/{self.quantity}"
            f"@{self.price} acct={self.account_id} {self.status.value})"
        )


class Level:
    """One price on one side of an order book (:mod:`tradews.domain.order_book`), here beside
    :class:`Order` because a resting order points to its level. It knows its symbol and side,
    so that a changed level can be reported (``BookChanged``) from the object alone; ``total``
    stays right after the level is emptied and taken out of the book (0).

    The queue is a list in time priority in which an order that leaves is replaced by None: a
    resting order knows its place in it (``Order.slot``), so joining is an append, leaving is a
    store, and the head is an index (``head``: the entries before it are all None). ``count``
    is the number of orders in it. When the list holds more than twice as many gaps as orders
    it is rebuilt without them (:meth:`compact`), so it stays proportional to the orders."""

    __slots__ = ("count", "head", "key", "mark", "price", "queue", "side", "symbol", "total")

    def __init__(self, symbol: str, side: int, price: int) -> None:
        self.symbol = symbol
        self.side = side
        self.price = price
        self.key: Any = price  # as a Python int made once, for events (see Order.key)
        self.queue: list[Order | None] = []
        self.head = 0
        self.count = 0
        self.total = 0
        self.mark = -1  # the Touched.stamp it was last listed under

    def orders(self) -> list[Order]:
        """The orders at this level, first in the queue first."""
        return [o for o in self.queue[self.head :] if o is not None]

    def join(self, order: Order) -> None:
        """Put ``order`` at the back of the queue."""
        queue = self.queue
        order.slot = len(queue)
        queue.append(order)
        self.count += 1

    def leave(self, order: Order) -> None:
        """Take ``order`` out of the queue, wherever it is."""
        self.queue[order.slot] = None
        order.slot = -1
        self.count -= 1
        if not self.count:
            self.empty()
        elif len(self.queue) > 2 * self.count + 16:
            self.compact()

    def empty(self) -> None:
        """Forget the gaps of a queue without orders (the level may be used again)."""
        self.queue.clear()
        self.head = 0

    def compact(self) -> None:
        """Rebuild the queue without its gaps."""
        queue: list[Order | None] = []
        for order in self.queue[self.head :]:
            if order is not None:
                order.slot = len(queue)
                queue.append(order)
        self.queue = queue
        self.head = 0
