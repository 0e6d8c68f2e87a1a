"""Events: what happened, in past tense, each stamped with the sequence of its command."""

from __future__ import annotations

import msgspec


class Event(msgspec.Struct, frozen=True, gc=False):
    """``gc=False``: events hold only ints, strings and None, so they can never be part of a
    reference cycle; leaving them out of the garbage collector makes each of the several a
    command builds cheaper to create and free, and keeps them from triggering collections."""

    seq: int


class OrderUpdated(Event, frozen=True):
    """An order's new state: after acceptance, a fill, an amendment or a cancel."""

    account_id: int
    order_id: int
    client_order_id: str | None
    symbol: str
    side: int
    type: int
    price: int
    quantity: int
    remaining: int
    tif: int
    post_only: bool
    status: str  # domain.orders.OrderStatus value
    reason: str | None  # why it was cancelled by the engine (IOC remainder, STP, ...)
    created_at: int
    at: int


class TradeExecuted(Event, frozen=True):
    trade_id: int
    symbol: str
    price: int
    quantity: int
    taker_side: int
    maker_order_id: int  # 0 for an RFQ fill
    taker_order_id: int  # 0 for an RFQ fill
    maker_account_id: int
    taker_account_id: int
    maker_fee: int  # atoms, in the asset the maker received
    taker_fee: int
    quote_id: str | None
    at: int


class BookChanged(Event, frozen=True):
    """The total resting quantity at one price level is now ``quantity`` (0: level gone)."""

    symbol: str
    side: int
    price: int
    quantity: int


class BalanceChanged(Event, frozen=True):
    account_id: int
    asset: str
    available: int
    locked: int


class FundsMoved(Event, frozen=True):
    """A deposit (amount > 0) or withdrawal (amount < 0) by the operator."""

    account_id: int
    asset: str
    amount: int
    ref: str
    at: int


AnyEvent = OrderUpdated | TradeExecuted | BookChanged | BalanceChanged | FundsMoved
