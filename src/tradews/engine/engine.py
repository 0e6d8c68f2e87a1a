"""The matching engine: the one place trading state changes.

:meth:`Engine.apply` takes one command and returns its result and the events it caused. It is
deterministic: the same commands in the same order give the same results, events and
:meth:`Engine.state_hash`, which is how the journal is replayed after a restart.

Rules the engine enforces (each rejection is a :class:`~tradews.domain.orders.Reject` code):

- **Funds.** A buy locks ``price x quantity`` of the quote asset (a market buy locks exactly
  what walking the book will cost); a sell locks the quantity of the base asset. Fills pay out of
  locked funds; a buy filled below its limit gets the difference back at once.
- **Fees** are charged in the asset each side *receives* (the buyer pays in the base asset, the
  seller in the quote asset), rounded up to the atom, and credited to the fee account. Rates are
  fixed on the order when it is placed, so later rate changes never rewrite history.
- **Self-trade prevention: cancel newest.** An incoming order never trades with a resting order
  of its own account; matching stops there and the incoming order's remainder is cancelled
  (reason ``SELF_TRADE``). The resting order is untouched.
- **Time in force.** GTC rests; IOC cancels what it cannot fill at once; FOK fills all at once or
  is rejected; market orders are IOC (or FOK) and never rest. Post-only orders must be GTC and are
  rejected if they would take.
- **Amend.** Lowering the quantity keeps queue priority; a new price or a larger quantity loses
  it (the order goes to the back of its new level and may trade at once). The new quantity is the
  order's new total, filled part included.
- **clientOrderId** is unique per account: the same id with the same parameters returns the
  original order's current state and changes nothing (``Duplicate`` when that order is closed
  and no longer held in memory); with other parameters it is rejected. Rejected orders do not
  use up their id.
- **Cancel-on-disconnect.** An order placed with a session tag (``PlaceOrder.session``) is
  remembered under (account, tag) while it is open, amendments included; ``EndSession`` cancels
  those orders (reason ``CANCEL_ON_DISCONNECT``) or only forgets the tag. The tags are engine
  state, so they survive a restart, and :meth:`Engine.sessions` lists what is left to end.
- **Dead-man's switch.** ``CancelAllAfter`` sets an account's deadline to the command's ``at``
  plus its timeout (0 disarms); ``ExpireDeadlines`` fires every deadline at or before its own
  ``at``: all of the account's open orders are cancelled (reason ``CANCEL_ALL_AFTER``) and the
  switch is disarmed. :meth:`Engine.next_deadline` says when the next one is due.
- **Frozen accounts.** ``FreezeAccount`` freezes (or unfreezes) an account: its orders, funds and
  cancels are untouched, but placing, amending, accepting a quote and withdrawing are rejected
  (``ACCOUNT_FROZEN``) until it is unfrozen. Deposits still credit it.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import msgspec
from mypy_extensions import mypyc_attr

from tradews.domain.instrument import Instrument
from tradews.domain.invariants import InvariantViolation
from tradews.domain.ledger import (
    ATOMS_PER_UNIT,
    Balance,
    InsufficientFunds,
    Ledger,
    pay_from_available,
    pay_from_locked,
)
from tradews.domain.ledger import lock as lock_row
from tradews.domain.ledger import unlock as unlock_row
from tradews.domain.order_book import OrderBook, Touched
from tradews.domain.orders import Order, OrderStatus, Reject, Side
from tradews.engine.commands import (
    AcceptQuote,
    AmendOrder,
    AnyCommand,
    CancelAll,
    CancelAllAfter,
    CancelOrder,
    Deposit,
    EndSession,
    ExpireDeadlines,
    FreezeAccount,
    ListInstrument,
    PlaceOrder,
    Withdraw,
)
from tradews.engine.events import (
    BalanceChanged,
    BookChanged,
    FundsMoved,
    OrderUpdated,
    TradeExecuted,
)

Event = OrderUpdated | TradeExecuted | BookChanged | BalanceChanged | FundsMoved

# Final: compiled, these are C constants; otherwise every use is a lookup in the module's dict.
_FEE_DIVISOR: Final = 1_000_000  # fee rates are in 1/100 bps: 1e4 bps * 100
_INT64: Final = 2**63  # amounts are stored in signed 64-bit integers
# Compiled, comparing with 2**63 (beyond mypyc's machine-int range) boxes the other side; below
# this bound an amount needs no such comparison.
_SMALL: Final = 2**61
# Orders carry side, type and time in force as plain ints (the values of the enums): hot paths
# compare ints, and events take them as they are. Statuses compare by identity: Enum's __hash__
# and .value are Python code, slower than the lookups they would serve.
_NEW: Final = OrderStatus.NEW
_PARTIAL: Final = OrderStatus.PARTIALLY_FILLED
_FILLED: Final = OrderStatus.FILLED
_CANCELLED: Final = OrderStatus.CANCELLED
_BUY: Final = 1
_SELL: Final = 2
_LIMIT: Final = 1
_MARKET: Final = 2
_GTC: Final = 1
_IOC: Final = 2
_FOK: Final = 3
# The classes the hot paths build or test for, as constants: compiled, a name imported from an
# uncompiled module is otherwise looked up in the module's dict at every use.
_PLACE_ORDER: Final = PlaceOrder
_CANCEL_ORDER: Final = CancelOrder
_ORDER_UPDATED: Final = OrderUpdated
_TRADE_EXECUTED: Final = TradeExecuted
_BOOK_CHANGED: Final = BookChanged
_BALANCE_CHANGED: Final = BalanceChanged
_astuple: Final = msgspec.structs.astuple
# _place and _cancel unpack their commands by position.
if PlaceOrder.__struct_fields__ != (
    "at", "account_id", "symbol", "side", "type", "price", "quantity", "tif", "post_only",
    "client_order_id", "maker_fee_cbps", "taker_fee_cbps", "session",
):  # fmt: skip
    raise ImportError("PlaceOrder's fields changed: update Engine._place")
if CancelOrder.__struct_fields__ != ("at", "account_id", "order_id", "client_order_id"):
    raise ImportError("CancelOrder's fields changed: update Engine._cancel")
# Why the engine cancelled an order on its own (OrderUpdated.reason).
CANCEL_ON_DISCONNECT = "CANCEL_ON_DISCONNECT"
CANCEL_ALL_AFTER = "CANCEL_ALL_AFTER"


class UnlistableInstrument(ValueError):
    pass


class Rejected:
    """A refused command. Like :class:`OrderResult`, written out rather than a frozen dataclass:
    compiled, a frozen dataclass is a Python class whose ``__init__`` runs as Python code; this
    one is a native class. Immutable by its type (``Final``), equal by value, with the same
    ``repr`` as the dataclass it replaces (tests/unit/test_build.py pins it)."""

    __slots__ = ("message", "reason")

    def __init__(self, reason: Reject, message: str) -> None:
        self.reason: Final = reason
        self.message: Final = message

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Rejected):
            return NotImplemented
        return self.reason is other.reason and self.message == other.message

    def __hash__(self) -> int:
        return hash((self.reason, self.message))

    def __repr__(self) -> str:
        return f"Rejected(reason={self.reason!r}, message={self.message!r})"


@mypyc_attr(free_list_len=1)
class OrderResult:
    """An order's state after the command (see :class:`Rejected` for why not a dataclass).
    Compiled, the one most recently freed is kept for the next (``free_list_len``): nearly every
    command makes one, and its caller drops it before the next command."""

    __slots__ = ("order",)

    def __init__(self, order: OrderUpdated) -> None:
        self.order: Final = order

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OrderResult):
            return NotImplemented
        return self.order == other.order

    def __hash__(self) -> int:
        return hash(self.order)

    def __repr__(self) -> str:
        return f"OrderResult(order={self.order!r})"


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A repeated ``clientOrderId`` with the same parameters, whose order is closed and no longer
    in memory: its current state is in the read models (``orders`` table)."""

    order_id: int


@dataclass(frozen=True, slots=True)
class Done:
    """A command that succeeded without an order to report (cancel-all, funds, RFQ)."""

    value: Any = None


Result = Rejected | OrderResult | Duplicate | Done


class Market:
    """An instrument as the engine uses it: with the atom scales of its two assets, its book and
    the fee account's rows in its assets. A native class (compiled), not a frozen dataclass, so
    that the engine reads its fields directly; the instrument's are ``Final``: immutable once
    made."""

    __slots__ = (
        "base",
        "base_rows",
        "book",
        "fee_base",
        "fee_quote",
        "instrument",
        "lot_atoms",
        "max_lots",
        "min_lots",
        "notional_atoms",
        "quote",
        "quote_rows",
    )

    def __init__(
        self,
        instrument: Instrument,
        notional_atoms: int,
        lot_atoms: int,
        min_lots: int,
        max_lots: int | None,
        touched: Touched | None = None,
    ) -> None:
        # The instrument's book, here so that placing an order finds it with the market (one
        # lookup by symbol, not two); ``touched`` is the engine's, shared by its books.
        self.book: Final = OrderBook(instrument.symbol, touched)
        # The fee account's rows in the base and the quote asset, found at the first fee charged
        # in each (a fill looks neither up; rows are never removed from a ledger).
        self.fee_base: Balance | None = None
        self.fee_quote: Balance | None = None
        # The ledger's rows in the base and the quote asset by account (see bind).
        self.base_rows: dict[int, Balance] = {}
        self.quote_rows: dict[int, Balance] = {}
        self.instrument: Final = instrument
        self.notional_atoms: Final = notional_atoms  # atoms of the quote asset in 1 tick x 1 lot
        self.lot_atoms: Final = lot_atoms  # atoms of the base asset in one lot
        self.min_lots: Final = min_lots
        self.max_lots: Final = max_lots
        # The instrument's assets as fields of their own: Instrument's are slower to read.
        self.base: Final = instrument.base
        self.quote: Final = instrument.quote

    def bind(self, ledger: Ledger) -> None:
        """Find rows in ``ledger`` (the engine's, again whenever it replaces its ledger): an
        order's rows are then one lookup by account away, not two."""
        self.base_rows = ledger.rows_of(self.base)
        self.quote_rows = ledger.rows_of(self.quote)
        self.fee_base = self.fee_quote = None

    @classmethod
    def of(cls, inst: Instrument, touched: Touched | None = None) -> Market:
        notional = inst.tick * inst.lot * ATOMS_PER_UNIT
        lot = inst.lot * ATOMS_PER_UNIT
        if notional != int(notional) or lot != int(lot):
            raise UnlistableInstrument(
                f"{inst.symbol}: tick x lot and lot must be multiples of 10^-8"
            )
        max_lots = None if inst.max_size is None else int(inst.max_size / inst.lot)
        return cls(inst, int(notional), int(lot), int(inst.min_size / inst.lot), max_lots, touched)


class Engine:
    def __init__(
        self,
        instruments: Iterable[Instrument],
        *,
        fee_account_id: int,
        closed_kept: int = 100_000,
        id_base: int = 0,
    ) -> None:
        """``id_base``: order and trade ids start above it (a shard's, so that ids are unique
        across the engines of a deployment)."""
        self.seq = 0
        self.fee_account_id = fee_account_id
        self.markets: dict[str, Market] = {}
        self.books: dict[str, OrderBook] = {}
        self.ledger = Ledger()
        self.open_orders: dict[int, Order] = {}
        # The latest state of the ``closed_kept`` most recently closed orders (memory stays
        # bounded; older ones live in the durable read models). An open order's is its
        # ``Order.state``: written once when the order closes, not at every change.
        self.last_state: dict[int, OrderUpdated] = {}
        # Closed ids in closing order from ``_closed_head`` on (a list, not a deque: compiled,
        # a deque's methods are generic calls); the part before the head is dropped now and then.
        self._closed_ids: list[int] = []
        self._closed_head = 0
        self._closed_kept = closed_kept
        self._client_ids: dict[tuple[int, str], tuple[tuple[Any, ...], int]] = {}
        self._refs: dict[str, tuple[str, int, str, int]] = {}
        self._used_quotes: dict[str, int] = {}
        # Cancel-on-disconnect: the open orders placed under each (account, session tag), in
        # placing order, and each such order's tag.
        self._sessions: dict[tuple[int, int], dict[int, None]] = {}
        self._order_session: dict[int, int] = {}
        # Dead-man's switches: account -> deadline (ms). The heap of (deadline, account) finds
        # the next one without a scan; entries a re-arm or a disarm made stale are skipped.
        self._deadlines: dict[int, int] = {}
        self._deadline_heap: list[tuple[int, int]] = []
        self._frozen: set[int] = set()  # accounts the operator froze
        self._next_order_id = id_base + 1
        self._next_trade_id = id_base + 1
        self._priority = 0
        # The command's ``at`` and ``seq`` as Python ints, boxed once per command: compiled,
        # every event built from an int attribute would otherwise allocate a new int object.
        self._at: Any = 0
        self._seq: Any = 0
        self._events: list[Event] = []
        # Insertion-ordered dicts used as sets: deterministic event order without sorting.
        # Levels and balances to report at the end of the command, in order of first change,
        # each once: a balance is listed when its mark is not the command's seq (then marked).
        self._touched_levels = Touched()  # shared by the books, which fill it
        # The first ``_touched_count`` are current; the rest are left from earlier commands, so
        # that the list keeps its storage (clearing a list frees it, the next append allocates).
        self._touched_balances: list[Balance] = []
        self._touched_count = 0
        for inst in instruments:
            self.list_instrument(inst)

    def list_instrument(self, inst: Instrument) -> None:
        """Make an instrument tradable. Instruments are immutable once listed."""
        if inst.symbol in self.markets:
            return
        market = self.markets[inst.symbol] = Market.of(inst, self._touched_levels)
        market.bind(self.ledger)
        self.books[inst.symbol] = market.book

    def _list(self, c: ListInstrument) -> Result:
        if c.symbol in self.markets:
            return Done()
        try:
            inst = Instrument(
                c.symbol,
                c.base,
                c.quote,
                Decimal(c.tick),
                Decimal(c.lot),
                Decimal(c.min_size),
                None if c.max_size is None else Decimal(c.max_size),
                Decimal(c.quote_size),
                Decimal(c.spread_bps),
            )
            self.list_instrument(inst)
        except (ValueError, ArithmeticError) as exc:
            return Rejected(Reject.UNKNOWN_SYMBOL, f"cannot list {c.symbol}: {exc}")
        return Done()

    # The one entry point --------------------------------------------------------------------

    def apply(self, cmd: AnyCommand) -> tuple[Result, list[Event]]:
        """Apply one command; return its result and the events it caused, in order.

        A refusal is a :class:`Rejected` result. :class:`InvariantViolation` (or any other
        exception) means a bug has left the state impossible or half-changed: the caller must
        stop applying commands and rebuild from the journal."""
        self.seq += 1
        self._seq = self.seq
        if self._events:  # left over by a command that raised
            self._events = []
        # The two commands most of the stream is made of by their exact type (an identity test;
        # isinstance on a msgspec class is a generic call), each reading its own ``at``.
        if type(cmd) is _PLACE_ORDER:
            result = self._place(cmd)
        elif type(cmd) is _CANCEL_ORDER:
            result = self._cancel(cmd)
        else:
            self._at = cmd.at
            result = self._apply_other(cmd)
        self._flush_touched()
        events = self._events
        self._events = []
        return result, events

    def _apply_other(self, cmd: AnyCommand) -> Result:
        if isinstance(cmd, PlaceOrder):
            result = self._place(cmd)
        elif isinstance(cmd, CancelOrder):
            result = self._cancel(cmd)
        elif isinstance(cmd, AmendOrder):
            result = self._amend(cmd)
        elif isinstance(cmd, CancelAll):
            result = self._cancel_all(cmd)
        elif isinstance(cmd, Deposit | Withdraw):
            result = self._move_funds(cmd)
        elif isinstance(cmd, AcceptQuote):
            result = self._accept_quote(cmd)
        elif isinstance(cmd, EndSession):
            result = self._end_session(cmd)
        elif isinstance(cmd, CancelAllAfter):
            result = self._cancel_all_after(cmd)
        elif isinstance(cmd, ExpireDeadlines):
            result = self._expire_deadlines()
        elif isinstance(cmd, ListInstrument):
            result = self._list(cmd)
        elif isinstance(cmd, FreezeAccount):
            result = self._freeze(cmd)
        else:  # pragma: no cover - the decoder admits nothing else
            raise TypeError(f"unknown command {cmd!r}")
        return result

    # Orders ---------------------------------------------------------------------------------

    def _place(self, c: PlaceOrder) -> Result:
        # The command's fields in one C call: compiled, reading each field is a generic
        # attribute lookup (the order of the fields is checked below the class).
        account_id: int
        symbol: str
        side: int
        otype: int
        price: int
        quantity: int
        tif: int
        post_only: bool
        client_order_id: str | None
        maker_fee_cbps: int
        taker_fee_cbps: int
        tag: int
        (self._at, account_id, symbol, side, otype, price, quantity, tif, post_only,
         client_order_id, maker_fee_cbps, taker_fee_cbps, tag) = _astuple(c)  # fmt: skip
        if self._frozen and account_id in self._frozen:
            return _account_frozen()
        market = self.markets.get(symbol)
        if market is None:
            return Rejected(Reject.UNKNOWN_SYMBOL, f"unknown symbol {symbol!r}")
        key = None
        if client_order_id is not None:
            key = (account_id, client_order_id)
            seen = self._client_ids.get(key)
            if seen is not None:
                fingerprint, order_id = seen
                if fingerprint == _fingerprint(c):
                    state = self.order_state(order_id)
                    return Duplicate(order_id) if state is None else OrderResult(state)
                return Rejected(
                    Reject.DUPLICATE_CLIENT_ORDER_ID,
                    f"clientOrderId {client_order_id!r} was used for a different order",
                )
        if not (_BUY <= side <= _SELL and _LIMIT <= otype <= _MARKET and _GTC <= tif <= _FOK):
            raise ValueError(f"side {side}, type {otype}, tif {tif}: not a valid order")
        problem = self._check_size(market, quantity)
        if problem is not None:
            return problem
        if otype == _LIMIT:
            if price <= 0:
                return Rejected(Reject.INVALID_PRICE, "a limit order needs a positive price")
            limit: int | None = price
        else:
            if price != 0:
                return Rejected(Reject.PRICE_NOT_ALLOWED, "a market order takes no price")
            limit = None
            if tif == _GTC:
                tif = _IOC
        book = market.book
        if post_only:
            if tif != _GTC or otype == _MARKET:
                return Rejected(Reject.POST_ONLY_NOT_GTC, "post-only orders must be GTC limits")
            if book.would_cross(side, price):
                return Rejected(Reject.POST_ONLY_WOULD_TAKE, "post-only order would take")
        if tif == _FOK:
            if book.fillable(side, limit, quantity, account_id) < quantity:
                return Rejected(Reject.FOK_NOT_FILLABLE, "not enough to fill the whole order now")
        elif otype == _MARKET and book.fillable(side, None, 1, account_id) == 0:
            return Rejected(Reject.NO_LIQUIDITY, "nothing to trade against")
        if _too_large((limit or 1) * quantity * market.notional_atoms) or _too_large(
            quantity * market.lot_atoms
        ):
            return Rejected(Reject.OUT_OF_RANGE, "the order is too large")
        if side == _SELL:
            asset, need, rows = market.base, quantity * market.lot_atoms, market.base_rows
        elif limit is not None:
            asset, need = market.quote, quantity * limit * market.notional_atoms
            rows = market.quote_rows
        else:
            asset, need = market.quote, self._market_buy_cost(book, market, c)
            rows = market.quote_rows
        pays = rows.get(account_id)
        if pays is None:
            pays = self.ledger.row(account_id, asset)
        if not self._lock(pays, need):
            return Rejected(Reject.INSUFFICIENT_FUNDS, f"not enough {asset} available")

        self._priority += 1
        order = Order(
            self._next_order_id,
            account_id,
            symbol,
            side,
            otype,
            price,
            quantity,
            tif,
            post_only,
            client_order_id,
            self._priority,
            self._at,
            maker_fee_cbps,
            taker_fee_cbps,
        )
        self._next_order_id += 1
        order.locked = need
        order.pays = pays
        self.open_orders[order.key] = order
        if key is not None:
            self._client_ids[key] = (_fingerprint(c), order.order_id)
        self._order_event(order, None)  # acknowledged before anything is filled
        self._take(book, market, order)
        if tag and order.is_open:
            self._order_session[order.order_id] = tag
            session = (account_id, tag)
            tagged = self._sessions.get(session)
            if tagged is None:
                tagged = self._sessions[session] = {}
            tagged[order.order_id] = None
        return OrderResult(order.state)

    def _take(self, book: OrderBook, market: Market, order: Order) -> None:
        """Match ``order`` as the taker, then rest or cancel what is left."""
        limit = order.price if order.type == _LIMIT else None
        self_trade = False
        # A limit that does not reach the other side (half the orders) has nothing to match.
        if limit is None or book.would_cross(order.side, limit):
            fills, self_trade = book.match(order.side, limit, order.remaining, order.account_id)
            for maker, quantity in fills:
                self._settle(market, maker, order, quantity)
            if not order.remaining:
                return
        if self_trade:
            self._close(order, _CANCELLED, "SELF_TRADE")
        elif order.tif == _GTC:
            book.rest(order)
        else:
            self._close(order, _CANCELLED, "UNFILLED")

    def _market_buy_cost(self, book: OrderBook, market: Market, c: PlaceOrder) -> int:
        left = c.quantity
        cost = 0
        for level in book.levels(Side.SELL):
            for maker in level.orders():
                if maker.account_id == c.account_id:
                    return cost * market.notional_atoms
                take = min(left, maker.remaining)
                cost += take * level.price
                left -= take
                if not left:
                    return cost * market.notional_atoms
        return cost * market.notional_atoms

    def _settle(self, market: Market, maker: Order, taker: Order, quantity: int) -> None:
        """Pay both sides of one fill at the maker's price, with fees, and update both orders."""
        price = maker.price
        notional = price * quantity * market.notional_atoms
        base = quantity * market.lot_atoms
        if taker.side == _BUY:
            buyer, seller = taker, maker
        else:
            buyer, seller = maker, taker
        buyer_pays = _pays(buyer)  # quote
        seller_pays = _pays(seller)  # base
        buyer_gets = buyer.gets
        if buyer_gets is None:
            buyer_gets = market.base_rows.get(buyer.account_id)
            if buyer_gets is None:
                buyer_gets = self.ledger.row(buyer.account_id, market.base)
            buyer.gets = buyer_gets
        seller_gets = seller.gets
        if seller_gets is None:
            seller_gets = market.quote_rows.get(seller.account_id)
            if seller_gets is None:
                seller_gets = self.ledger.row(seller.account_id, market.quote)
            seller.gets = seller_gets
        pay_from_locked(buyer_pays, notional, seller_gets)
        buyer.locked -= notional
        if buyer.type == _LIMIT and price < buyer.price:
            refund = (buyer.price - price) * quantity * market.notional_atoms
            unlock_row(buyer_pays, refund)
            buyer.locked -= refund
        pay_from_locked(seller_pays, base, buyer_gets)
        seller.locked -= base
        if maker is buyer:
            maker_fee = self._fee(market, True, buyer_gets, base, maker.maker_fee_cbps)
            taker_fee = self._fee(market, False, seller_gets, notional, taker.taker_fee_cbps)
        else:
            maker_fee = self._fee(market, False, seller_gets, notional, maker.maker_fee_cbps)
            taker_fee = self._fee(market, True, buyer_gets, base, taker.taker_fee_cbps)
        # First touches order the BalanceChanged events: the fee account's rows, then these.
        self._touch(buyer_pays)
        self._touch(buyer_gets)
        self._touch(seller_gets)
        self._touch(seller_pays)
        taker.remaining -= quantity
        self._events.append(
            _TRADE_EXECUTED(
                self._seq,
                self._next_trade_id,
                maker.symbol,
                price,
                quantity,
                taker.side,
                maker.key,
                taker.key,
                maker.account_id,
                taker.account_id,
                maker_fee,
                taker_fee,
                None,
                self._at,
            )
        )
        self._next_trade_id += 1
        self._filled(maker)  # maker first, then taker (not a loop over a tuple: one less object)
        self._filled(taker)

    def _filled(self, order: Order) -> None:
        if order.remaining:
            order.move_to(_PARTIAL)
            self._order_event(order, None)
        else:
            self._close(order, _FILLED, None)

    def _fee(
        self, market: Market, in_base: bool, payer: Balance, received: int, rate_cbps: int
    ) -> int:
        """Charge a fee out of what ``payer`` (a row in the market's base asset if ``in_base``,
        else its quote asset) has just received."""
        if not rate_cbps:
            return 0
        # Rounded up, to the atom: ceil(a / b) as floor((a + b - 1) / b), not -(-a // b): compiled,
        # multiplying a negative int takes the slow, boxing path.
        fee = (received * rate_cbps + _FEE_DIVISOR - 1) // _FEE_DIVISOR
        fee_row = market.fee_base if in_base else market.fee_quote
        if fee_row is None:
            if in_base:
                fee_row = market.fee_base = self.ledger.row(self.fee_account_id, market.base)
            else:
                fee_row = market.fee_quote = self.ledger.row(self.fee_account_id, market.quote)
        pay_from_available(payer, fee, fee_row)
        self._touch(fee_row)
        return fee

    def _close(self, order: Order, status: OrderStatus, reason: str | None) -> None:
        """Finish an order: release what it still holds locked, and forget it as open."""
        order.move_to(status)
        if order.locked:
            self._unlock(_pays(order), order.locked)
            order.locked = 0
        del self.open_orders[order.key]
        if self._order_session:
            tag = self._order_session.pop(order.order_id, 0)
            if tag:
                key = (order.account_id, tag)
                tagged = self._sessions[key]
                del tagged[order.order_id]
                if not tagged:
                    del self._sessions[key]
        self._order_event(order, reason)

    def order_state(self, order_id: int) -> OrderUpdated | None:
        """Read-only: the latest state of an open or recently closed order (else None)."""
        order = self.open_orders.get(order_id)
        if order is not None:
            state: OrderUpdated = order.state
            return state
        return self.last_state.get(order_id)

    def symbol_of(
        self, account_id: int, order_id: int | None, client_order_id: str | None
    ) -> str | None:
        """Read-only: the symbol of one of the account's orders, or None."""
        if order_id is None and client_order_id is not None:
            seen = self._client_ids.get((account_id, client_order_id))
            order_id = None if seen is None else seen[1]
        state = None if order_id is None else self.order_state(order_id)
        return state.symbol if state is not None and state.account_id == account_id else None

    def _find(
        self, account_id: int, order_id: int | None, client_order_id: str | None
    ) -> Order | Rejected:
        if order_id is None and client_order_id is not None:
            seen = self._client_ids.get((account_id, client_order_id))
            order_id = None if seen is None else seen[1]
        if order_id is None:
            return Rejected(Reject.UNKNOWN_ORDER, "no such order")
        order = self.open_orders.get(order_id)
        if order is not None and order.account_id == account_id:
            return order
        last = self.last_state.get(order_id)
        if last is not None and last.account_id == account_id:
            return Rejected(Reject.ORDER_CLOSED, f"order {order_id} is already {last.status}")
        return Rejected(Reject.UNKNOWN_ORDER, "no such order")  # others' orders: not revealed

    def _cancel(self, c: CancelOrder) -> Result:
        account_id: int
        order_id: int | None
        client_order_id: str | None
        self._at, account_id, order_id, client_order_id = _astuple(c)
        order = self._find(account_id, order_id, client_order_id)
        if isinstance(order, Rejected):
            return order
        self._cancel_resting(order, None)
        return OrderResult(order.state)

    def _cancel_resting(self, order: Order, reason: str | None) -> None:
        self.books[order.symbol].remove(order)
        self._close(order, _CANCELLED, reason)

    def _cancel_all(self, c: CancelAll) -> Result:
        if c.symbol is not None and c.symbol not in self.markets:
            return Rejected(Reject.UNKNOWN_SYMBOL, f"unknown symbol {c.symbol!r}")
        return Done(self._cancel_orders_of(c.account_id, c.symbol, None))

    def _cancel_orders_of(
        self, account_id: int, symbol: str | None, reason: str | None
    ) -> list[int]:
        """Cancel the account's open orders (of one symbol), oldest first; return their ids."""
        mine = [
            o
            for o in self.open_orders.values()
            if o.account_id == account_id and (symbol is None or o.symbol == symbol)
        ]
        mine.sort(key=lambda o: o.order_id)
        for order in mine:
            self._cancel_resting(order, reason)
        return [o.order_id for o in mine]

    # Liveness: cancel-on-disconnect and the dead-man's switch ----------------------------------

    def _end_session(self, c: EndSession) -> Result:
        tagged = self._sessions.pop((c.account_id, c.session), None)
        if tagged is None:
            return Done([])
        ids = sorted(tagged)
        for order_id in ids:
            del self._order_session[order_id]
        if not c.cancel:
            return Done([])
        for order_id in ids:
            self._cancel_resting(self.open_orders[order_id], CANCEL_ON_DISCONNECT)
        return Done(ids)

    def sessions(self) -> list[tuple[int, int]]:
        """Read-only: every (account, session tag) that still has open orders, in order."""
        return sorted(self._sessions)

    def _cancel_all_after(self, c: CancelAllAfter) -> Result:
        if c.timeout_ms <= 0:
            self._deadlines.pop(c.account_id, None)
            return Done(None)
        deadline = self._at + c.timeout_ms
        if deadline >= _INT64:
            return Rejected(Reject.OUT_OF_RANGE, "the deadline is too far away")
        self._deadlines[c.account_id] = deadline
        heap = self._deadline_heap
        heapq.heappush(heap, (deadline, c.account_id))
        if len(heap) > 2 * len(self._deadlines) + 64:  # mostly stale: re-arms as heartbeats
            self._deadline_heap = [(d, a) for a, d in self._deadlines.items()]
            heapq.heapify(self._deadline_heap)
        return Done(deadline)

    def next_deadline(self) -> int | None:
        """When the next dead-man's switch is due (ms since the epoch), or None if none is armed."""
        heap = self._deadline_heap
        deadlines = self._deadlines
        while heap:
            deadline, account_id = heap[0]
            if deadlines.get(account_id) == deadline:
                return deadline
            heapq.heappop(heap)  # re-armed or disarmed since
        return None

    def _expire_deadlines(self) -> Result:
        """Fire the switches due at the command's ``at``, earliest first (then by account)."""
        fired: list[tuple[int, list[int]]] = []
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > self._at:
                break
            _, account_id = heapq.heappop(self._deadline_heap)
            del self._deadlines[account_id]
            fired.append((account_id, self._cancel_orders_of(account_id, None, CANCEL_ALL_AFTER)))
        return Done(fired)

    def _amend(self, c: AmendOrder) -> Result:
        if c.account_id in self._frozen:
            return _account_frozen()
        order = self._find(c.account_id, c.order_id, c.client_order_id)
        if isinstance(order, Rejected):
            return order
        market = self.markets[order.symbol]
        new_price = order.price if c.price is None else c.price
        new_quantity = order.quantity if c.quantity is None else c.quantity
        if new_price <= 0:
            return Rejected(Reject.INVALID_PRICE, "price must be positive")
        if new_price == order.price and new_quantity == order.quantity:
            return Rejected(Reject.AMEND_NOTHING, "the amendment changes nothing")
        if new_quantity <= order.filled:
            return Rejected(
                Reject.AMEND_BELOW_FILLED, "new quantity must be above the filled quantity"
            )
        problem = self._check_size(market, new_quantity)
        if problem is not None:
            return problem
        if new_price * new_quantity * market.notional_atoms >= _INT64:
            return Rejected(Reject.OUT_OF_RANGE, "the order is too large")
        book = self.books[order.symbol]
        new_remaining = new_quantity - order.filled
        pays = _pays(order)
        per_lot = new_price * market.notional_atoms if order.side == _BUY else market.lot_atoms
        new_locked = new_remaining * per_lot
        if new_price == order.price and new_quantity < order.quantity:
            # Smaller, same price: stays where it is in the queue.
            book.reduce(order, new_remaining)
            order.quantity = new_quantity
            self._unlock(pays, order.locked - new_locked)
            order.locked = new_locked
            self._order_event(order, None)
            return OrderResult(order.state)
        if order.post_only and book.would_cross(order.side, new_price):
            return Rejected(Reject.POST_ONLY_WOULD_TAKE, "post-only order would take")
        extra = new_locked - order.locked
        if extra > 0 and not self._lock(pays, extra):
            return Rejected(Reject.INSUFFICIENT_FUNDS, f"not enough {pays.asset} available")
        if extra < 0:
            self._unlock(pays, -extra)
        order.locked = new_locked
        book.remove(order)
        order.set_price(new_price)
        order.quantity = new_quantity
        order.remaining = new_remaining
        self._priority += 1
        order.priority = self._priority
        self._order_event(order, None)
        self._take(book, market, order)
        return OrderResult(order.state)

    def _check_size(self, market: Market, quantity: int) -> Rejected | None:
        if quantity <= 0:
            return Rejected(Reject.INVALID_QUANTITY, "quantity must be positive")
        if quantity < market.min_lots:
            return Rejected(
                Reject.BELOW_MIN_SIZE, f"below the minimum size {market.instrument.min_size}"
            )
        if market.max_lots is not None and quantity > market.max_lots:
            return Rejected(
                Reject.ABOVE_MAX_SIZE, f"above the maximum size {market.instrument.max_size}"
            )
        return None

    # Funds ----------------------------------------------------------------------------------

    def _move_funds(self, c: Deposit | Withdraw) -> Result:
        kind = "deposit" if isinstance(c, Deposit) else "withdraw"
        terms = (kind, c.account_id, c.asset, c.amount)
        seen = self._refs.get(c.ref)
        if seen is not None:
            if seen == terms:
                return Done({"duplicate": True})
            return Rejected(
                Reject.DUPLICATE_REFERENCE, f"ref {c.ref!r} was used for another movement"
            )
        if c.amount <= 0:
            return Rejected(Reject.INVALID_AMOUNT, "amount must be positive")
        if isinstance(c, Withdraw) and c.account_id in self._frozen:
            return _account_frozen()
        if isinstance(c, Deposit):
            self.ledger.deposit(c.account_id, c.asset, c.amount)
            moved = c.amount
        else:
            try:
                self.ledger.withdraw(c.account_id, c.asset, c.amount)
            except InsufficientFunds:
                return Rejected(Reject.INSUFFICIENT_FUNDS, f"not enough {c.asset} available")
            moved = -c.amount
        self._refs[c.ref] = terms
        self._touch(self.ledger.row(c.account_id, c.asset))
        self._events.append(FundsMoved(self.seq, c.account_id, c.asset, moved, c.ref, self._at))
        return Done({"duplicate": False})

    def _freeze(self, c: FreezeAccount) -> Result:
        was = c.account_id in self._frozen
        if c.frozen:
            self._frozen.add(c.account_id)
        else:
            self._frozen.discard(c.account_id)
        return Done({"frozen": c.frozen, "changed": was != c.frozen})

    def is_frozen(self, account_id: int) -> bool:
        return account_id in self._frozen

    def _accept_quote(self, c: AcceptQuote) -> Result:
        market = self.markets.get(c.symbol)
        if market is None:
            return Rejected(Reject.UNKNOWN_SYMBOL, f"unknown symbol {c.symbol!r}")
        if c.account_id in self._frozen:
            return _account_frozen()
        if c.quote_id in self._used_quotes:
            return Rejected(Reject.QUOTE_USED, "this quote has already been executed")
        if c.account_id != c.quote_account_id or c.account_id == c.house_account_id:
            return Rejected(Reject.QUOTE_NOT_YOURS, "this quote was made for another account")
        if self._at >= c.valid_until:
            return Rejected(Reject.QUOTE_EXPIRED, "this quote has expired")
        inst = market.instrument
        notional = c.price * c.quantity * market.notional_atoms
        base = c.quantity * market.lot_atoms
        if Side(c.side) == _BUY:
            client_pays, client_amount = inst.quote, notional
            house_pays, house_amount = inst.base, base
        else:
            client_pays, client_amount = inst.base, base
            house_pays, house_amount = inst.quote, notional
        ledger = self.ledger
        if ledger.available(c.account_id, client_pays) < client_amount:
            return Rejected(Reject.INSUFFICIENT_FUNDS, f"not enough {client_pays} available")
        if ledger.available(c.house_account_id, house_pays) < house_amount:
            return Rejected(Reject.HOUSE_LIMIT, "the desk cannot take this trade now")
        ledger.pay_from_available(c.account_id, client_pays, client_amount, c.house_account_id)
        ledger.pay_from_available(c.house_account_id, house_pays, house_amount, c.account_id)
        self._used_quotes[c.quote_id] = c.valid_until
        if len(self._used_quotes) > 10_000:
            # Expired quotes are refused by their expiry anyway; forget the old ones.
            self._used_quotes = {q: v for q, v in self._used_quotes.items() if v > self._at}
        for account in (c.account_id, c.house_account_id):
            self._touch(ledger.row(account, inst.base))
            self._touch(ledger.row(account, inst.quote))
        trade = TradeExecuted(
            self.seq,
            self._next_trade_id,
            c.symbol,
            c.price,
            c.quantity,
            c.side,
            0,
            0,
            c.house_account_id,
            c.account_id,
            0,
            0,
            c.quote_id,
            self._at,
        )
        self._next_trade_id += 1
        self._events.append(trade)
        return Done(trade)

    # Bookkeeping ----------------------------------------------------------------------------

    def _lock(self, row: Balance, amount: int) -> bool:
        if lock_row(row, amount):
            self._touch(row)
            return True
        return False

    def _unlock(self, row: Balance, amount: int) -> None:
        if amount:
            unlock_row(row, amount)
            self._touch(row)

    def _order_event(self, order: Order, reason: str | None) -> None:
        event = _ORDER_UPDATED(
            self._seq,
            order.account_id,
            order.key,
            order.client_order_id,
            order.symbol,
            order.side,
            order.type,
            order.price_key,
            order.quantity,
            order.remaining,
            order.tif,
            order.post_only,
            _status_text(order.status),
            reason,
            order.created_at,
            self._at,
        )
        order.state = event
        self._events.append(event)
        if not order.is_open:
            self.last_state[order.key] = event
            closed = self._closed_ids
            closed.append(order.key)
            head = self._closed_head
            if len(closed) - head > self._closed_kept:
                del self.last_state[closed[head]]
                head += 1
                if head >= 4096 and 2 * head >= len(closed):
                    del closed[:head]
                    head = 0
                self._closed_head = head

    def _touch(self, row: Balance) -> None:
        if row.mark != self.seq:
            row.mark = self.seq
            n = self._touched_count
            if n < len(self._touched_balances):
                self._touched_balances[n] = row
            else:
                self._touched_balances.append(row)
            self._touched_count = n + 1

    def _flush_touched(self) -> None:
        events = self._events
        seq = self._seq
        touched = self._touched_levels
        if touched.count:
            levels = touched.levels
            for i in range(touched.count):
                level = levels[i]
                events.append(_BOOK_CHANGED(seq, level.symbol, level.side, level.key, level.total))
            touched.clear()
        if self._touched_count:
            rows = self._touched_balances
            for i in range(self._touched_count):
                row = rows[i]
                events.append(
                    _BALANCE_CHANGED(seq, row.account_id, row.asset, row.available, row.locked)
                )
            self._touched_count = 0

    # Checking -------------------------------------------------------------------------------

    def validate(self) -> None:
        """Check every invariant; raise :class:`InvariantViolation` on the first broken one.

        Plain ``if`` checks, not ``assert``: ``python -O`` must not turn this into a no-op."""
        locked: dict[tuple[int, str], int] = {}
        for book in self.books.values():
            book.validate()
            for order in book.resting():
                if self.open_orders.get(order.order_id) is not order:
                    raise InvariantViolation(f"{order!r} rests in the book but is not open")
        for order in self.open_orders.values():
            book = self.books[order.symbol]
            if not order.is_open or not book.holds(order):
                raise InvariantViolation(f"{order!r} is open but does not rest in the book")
            market = self.markets[order.symbol]
            inst = market.instrument
            asset = inst.quote if order.side == _BUY else inst.base
            if order.pays is not self.ledger.row(order.account_id, asset):
                raise InvariantViolation(f"{order!r} pays from another ledger row than {asset}")
            key = (order.account_id, asset)
            locked[key] = locked.get(key, 0) + order.locked
            per_lot = (
                order.price * market.notional_atoms if order.side == _BUY else market.lot_atoms
            )
            if order.locked != order.remaining * per_lot:
                raise InvariantViolation(
                    f"{order!r} holds {order.locked} {asset} locked, "
                    f"needs {order.remaining * per_lot}"
                )
        for (account_id, tag), tagged in self._sessions.items():
            for order_id in tagged:
                tagged_order = self.open_orders.get(order_id)
                if tagged_order is None or tagged_order.account_id != account_id:
                    raise InvariantViolation(
                        f"session {tag} of account {account_id} holds order {order_id}, "
                        "which is not an open order of that account"
                    )
                if self._order_session.get(order_id) != tag:
                    raise InvariantViolation(f"order {order_id} is not tagged {tag}")
        if len(self._order_session) != sum(len(t) for t in self._sessions.values()):
            raise InvariantViolation("an order has a session tag its session does not list")
        self.ledger.validate()
        needed = {k: v for k, v in locked.items() if v}
        held = self.ledger.locked_by_account()
        if needed != held:
            key, _ = min(needed.items() ^ held.items())  # the first (account, asset) that differs
            raise InvariantViolation(
                f"account {key[0]} has {held.get(key, 0)} {key[1]} locked, "
                f"its open orders need {needed.get(key, 0)}"
            )

    # Snapshots -------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """Everything :meth:`restore` needs to rebuild this engine (the bounded memory of closed
        orders aside: a retried id of one is answered from the read models)."""
        orders = sorted(self.open_orders.values(), key=lambda o: o.priority)
        state = {
            "v": 1,
            "seq": self.seq,
            "next_order_id": self._next_order_id,
            "next_trade_id": self._next_trade_id,
            "priority": self._priority,
            "orders": [
                (
                    o.order_id, o.account_id, o.symbol, int(o.side), int(o.type), o.price,
                    o.quantity, o.remaining, int(o.tif), o.post_only, o.client_order_id,
                    o.priority, o.locked, o.maker_fee_cbps, o.taker_fee_cbps, o.created_at,
                    o.status.value,
                )
                for o in orders
            ],
            "states": [o.state for o in orders],
            "balances": self.ledger.items(),
            "totals": self.ledger.totals(),
            "client_ids": [(a, c, list(f), oid) for (a, c), (f, oid) in self._client_ids.items()],
            "refs": [(ref, list(terms)) for ref, terms in self._refs.items()],
            "used_quotes": list(self._used_quotes.items()),
        }  # fmt: skip
        # Version 2 adds the liveness state, written only when there is some: without it, a
        # snapshot is exactly a version-1 one, as the servers before it wrote and read.
        liveness = self._liveness()
        if liveness:
            state["v"] = 2
            state.update(liveness)
        return msgspec.msgpack.encode(state)

    def _liveness(self) -> dict[str, Any]:
        """Cancel-on-disconnect tags, armed deadlines and frozen accounts, for snapshots and the
        state hash; an empty dict when there are none (so that such states hash as they always
        did)."""
        out: dict[str, Any] = {}
        if self._order_session:
            out["sessions"] = sorted(self._order_session.items())
        if self._deadlines:
            out["deadlines"] = sorted(self._deadlines.items())
        if self._frozen:
            out["frozen"] = sorted(self._frozen)
        return out

    @classmethod
    def restore(
        cls,
        instruments: Iterable[Instrument],
        blob: bytes,
        *,
        fee_account_id: int,
        closed_kept: int = 100_000,
    ) -> Engine:
        """The engine a :meth:`snapshot` was taken of (check it with :meth:`state_hash`)."""
        state = msgspec.msgpack.decode(blob)
        if state.get("v") not in (1, 2):
            raise ValueError(f"unknown snapshot version {state.get('v')!r}")
        engine = cls(instruments, fee_account_id=fee_account_id, closed_kept=closed_kept)
        engine.seq = state["seq"]
        engine._next_order_id = state["next_order_id"]
        engine._next_trade_id = state["next_trade_id"]
        engine._priority = state["priority"]
        states = msgspec.convert(state["states"], list[OrderUpdated])
        for row, last in zip(state["orders"], states, strict=True):
            (oid, acct, symbol, side, otype, price, qty, remaining, tif, post_only, coid,
             priority, locked, maker, taker, created_at, status) = row  # fmt: skip
            order = Order(oid, acct, symbol, side, otype, price, qty, tif,
                          post_only, coid, priority, created_at, maker, taker)  # fmt: skip
            order.remaining = remaining
            order.locked = locked
            order.status = OrderStatus(status)
            engine.books[symbol].rest(order)  # in priority order: queues come back as they were
            engine.open_orders[oid] = order
            order.state = last
        engine._touched_levels.clear()  # resting them again changed nothing to report
        engine.ledger = Ledger.restore(
            [((a, asset), (av, lk)) for (a, asset), (av, lk) in state["balances"]], state["totals"]
        )
        for market in engine.markets.values():
            market.bind(engine.ledger)
        for order in engine.open_orders.values():  # the rows of the ledger just restored
            market = engine.markets[order.symbol]
            asset = market.quote if order.side == _BUY else market.base
            order.pays = engine.ledger.row(order.account_id, asset)
        engine._client_ids = {(a, c): (tuple(f), oid) for a, c, f, oid in state["client_ids"]}
        engine._refs = {ref: tuple(terms) for ref, terms in state["refs"]}
        engine._used_quotes = dict(state["used_quotes"])
        for order_id, tag in state.get("sessions", ()):
            key = (engine.open_orders[order_id].account_id, tag)
            engine._order_session[order_id] = tag
            engine._sessions.setdefault(key, {})[order_id] = None
        engine._deadlines = {account_id: at for account_id, at in state.get("deadlines", ())}
        engine._deadline_heap = [(at, account_id) for account_id, at in engine._deadlines.items()]
        heapq.heapify(engine._deadline_heap)
        engine._frozen = set(state.get("frozen", ()))
        return engine

    def state_hash(self) -> str:
        """A digest of the whole trading state; equal states give equal digests."""
        orders = sorted(
            (
                o.order_id, o.account_id, o.symbol, int(o.side), int(o.type), o.price,
                o.quantity, o.remaining, int(o.tif), o.post_only, o.client_order_id,
                o.priority, o.locked, o.maker_fee_cbps, o.taker_fee_cbps, o.created_at,
            )
            for o in self.open_orders.values()
        )  # fmt: skip
        state: list[Any] = [
            self.seq,
            self._next_order_id,
            self._next_trade_id,
            self._priority,
            orders,
            self.ledger.items(),
            sorted(self.ledger.totals().items()),
            sorted((k, v) for k, v in self._client_ids.items()),
            sorted(self._refs.items()),
            sorted(self._used_quotes.items()),
        ]
        liveness = self._liveness()
        if liveness:  # absent when empty: states without it keep the digest they always had
            state.append(liveness)
        return hashlib.sha256(msgspec.msgpack.encode(state)).hexdigest()


def _status_text(status: OrderStatus) -> str:
    """``status.value``, by identity (see ``_NEW``)."""
    if status is _NEW:
        return "new"
    if status is _PARTIAL:
        return "partially_filled"
    return "filled" if status is _FILLED else "cancelled"


def _too_large(amount: int) -> bool:
    """Beyond a signed 64-bit integer? (See ``_SMALL``.)"""
    return amount >= _SMALL and amount >= _INT64


def _account_frozen() -> Rejected:
    return Rejected(Reject.ACCOUNT_FROZEN, "the account is frozen: no trading or withdrawals")


def _fingerprint(c: PlaceOrder) -> tuple[Any, ...]:
    return (c.symbol, c.side, c.type, c.price, c.quantity, c.tif, c.post_only)


def _pays(order: Order) -> Balance:
    """The ledger row ``order`` holds its locked funds in (set when it was placed)."""
    pays = order.pays
    if pays is None:  # pragma: no cover - every open order has one
        raise InvariantViolation(f"{order!r} has no ledger row")
    return pays
