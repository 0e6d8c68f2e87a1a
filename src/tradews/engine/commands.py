"""Commands: what may change trading state. Immutable, imperative, and journaled as they are.

Each command carries ``at`` (ms since the epoch), stamped by the runner when it accepted the
command, so replaying the journal reproduces every decision exactly (expiry checks included).
Prices are ticks, quantities lots, amounts atoms (10^-8 of a unit).
"""

from __future__ import annotations

from typing import Any

import msgspec


class Command(msgspec.Struct, frozen=True, tag_field="cmd", array_like=True):
    at: int


class PlaceOrder(Command, frozen=True, tag="place"):
    account_id: int
    symbol: str
    side: int  # domain.orders.Side
    type: int  # domain.orders.OrderType
    price: int  # ticks; 0 for a market order
    quantity: int  # lots
    tif: int  # domain.orders.TimeInForce
    post_only: bool
    client_order_id: str | None
    maker_fee_cbps: int  # fee rates in 1/100 of a basis point, fixed when the order is placed
    taker_fee_cbps: int
    # The placing session's cancel-on-disconnect tag (see EndSession); 0: none. Last, with a
    # default, so that journal entries written before it existed still decode.
    session: int = 0


class CancelOrder(Command, frozen=True, tag="cancel"):
    account_id: int
    order_id: int | None
    client_order_id: str | None


class CancelAll(Command, frozen=True, tag="cancel_all"):
    account_id: int
    symbol: str | None


class AmendOrder(Command, frozen=True, tag="amend"):
    account_id: int
    order_id: int | None
    client_order_id: str | None
    price: int | None  # new limit price in ticks
    quantity: int | None  # new total quantity in lots (filled part included)


class Deposit(Command, frozen=True, tag="deposit"):
    account_id: int
    asset: str
    amount: int
    ref: str


class Withdraw(Command, frozen=True, tag="withdraw"):
    account_id: int
    asset: str
    amount: int
    ref: str


class AcceptQuote(Command, frozen=True, tag="accept_quote"):
    """Execute a firm RFQ quote against the house account, all or nothing."""

    account_id: int  # who accepts
    quote_id: str
    quote_account_id: int  # whom the quote was made for
    symbol: str
    side: int  # the client's side: BUY pays ``price`` for ``quantity``
    price: int
    quantity: int
    valid_until: int
    house_account_id: int


class EndSession(Command, frozen=True, tag="end_session"):
    """A cancel-on-disconnect session is over: cancel the open orders placed with its tag
    (``cancel``: the connection ended without a logout), or only forget the tag (a logout, or
    cancel-on-disconnect turned off), leaving them open."""

    account_id: int
    session: int
    cancel: bool


class CancelAllAfter(Command, frozen=True, tag="cancel_all_after"):
    """Arm (or re-arm) the account's dead-man's switch for ``at + timeout_ms``; 0 disarms it."""

    account_id: int
    timeout_ms: int


class ExpireDeadlines(Command, frozen=True, tag="expire_deadlines"):
    """Fire every dead-man's switch whose deadline is at or before ``at``: cancel all of its
    account's open orders, and disarm it."""


class ListInstrument(Command, frozen=True, tag="list"):
    """Make an instrument tradable from this point of the journal on (a no-op if it is listed).

    Journaled so that every replica lists it at the same point of the sequence as the engine:
    an order on it before this command is refused everywhere, and accepted everywhere after.
    Decimal fields are strings, as the store keeps them."""

    symbol: str
    base: str
    quote: str
    tick: str
    lot: str
    min_size: str
    max_size: str | None
    quote_size: str
    spread_bps: str

    @classmethod
    def of(cls, at: int, inst: Any) -> ListInstrument:
        """The command listing ``inst`` (a ``domain.instrument.Instrument``)."""
        return cls(
            at, inst.symbol, inst.base, inst.quote, str(inst.tick), str(inst.lot),
            str(inst.min_size), None if inst.max_size is None else str(inst.max_size),
            str(inst.quote_size), str(inst.spread_bps),
        )  # fmt: skip


class FreezeAccount(Command, frozen=True, tag="freeze"):
    """Freeze an account (``frozen``) or unfreeze it. A frozen account keeps its orders, funds
    and logins, and may cancel; placing, amending, accepting a quote and withdrawing are
    refused (``ACCOUNT_FROZEN``) until it is unfrozen."""

    account_id: int
    frozen: bool


AnyCommand = (
    PlaceOrder
    | CancelOrder
    | CancelAll
    | AmendOrder
    | Deposit
    | Withdraw
    | AcceptQuote
    | EndSession
    | CancelAllAfter
    | ExpireDeadlines
    | ListInstrument
    | FreezeAccount
)

encoder = msgspec.msgpack.Encoder()
decoder = msgspec.msgpack.Decoder(AnyCommand)
