"""One client connection's JSON-RPC session: login state, method dispatch, subscriptions.

Lifecycle (``SessionState``)::

    ANONYMOUS --rpc.login ok--> AUTHENTICATED --close()--> CLOSED
        |                            |                        ^
        |                            +--rpc.logout--> CLOSING-+
        +---- too many failed logins / close() ---------------+

Call :meth:`Session.receive` with each frame; send what it returns, in order. Replies
to commands that go through the engine come later, once durable, through the ``send`` callback
given at construction. If :attr:`Session.close_reason` is set, close the connection with it.
Call :meth:`Session.close` when the connection ends (or this side closes it): it releases every
subscription and, if cancel-on-disconnect is on, ends the session's orders.

Liveness (docs/architecture.md): ``cancel_on_disconnect`` draws a random session tag that every
order placed while it is on carries into the engine; :meth:`Session.close` then submits
``EndSession(cancel=True)`` for the tag, and ``rpc.logout`` or turning it off submits
``EndSession(cancel=False)``, which leaves the orders open. ``cancel_all_after`` arms the
account's dead-man's switch in the engine.
"""

from __future__ import annotations

import enum
import functools
import itertools
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, TypeVar

import msgspec

from tradews.api.errors import ApiError, ErrorCode
from tradews.api.messages import (
    CANCEL_ALL_AFTER_MAX_MS,
    CANCEL_ALL_AFTER_MIN_MS,
    Balance,
    CancelAllAfterParams,
    CancelAllAfterResult,
    CancelOnDisconnectParams,
    CancelOnDisconnectResult,
    ChannelParams,
    Fill,
    InstrumentInfo,
    LoginParams,
    MarketDataSubscription,
    NoParams,
    OrderAmendParams,
    OrderPlaceParams,
    OrderRefParams,
    OrderState,
    QuoteAcceptParams,
    QuoteRequestParams,
    QuoteSubscription,
    RateBudget,
    Subscribed,
    SubscribeParams,
    SubscriptionParams,
    SymbolFilterParams,
    TimeResult,
    TradesParams,
    decode_hook,
)
from tradews.codecs.base import Call, Codec, Invalid
from tradews.codecs.jsonrpc import JSON
from tradews.codecs.push import Push
from tradews.domain.instrument import Instrument, InvalidDecimal, OffStep, to_steps
from tradews.domain.orders import OrderType, Reject, Side, TimeInForce
from tradews.domain.pricing import NoQuote
from tradews.engine.commands import (
    AcceptQuote,
    AmendOrder,
    AnyCommand,
    CancelAll,
    CancelAllAfter,
    CancelOrder,
    EndSession,
    PlaceOrder,
)
from tradews.engine.engine import Done, Duplicate, OrderResult, Rejected, Result
from tradews.engine.events import TradeExecuted
from tradews.session.formats import fills_for, order_state
from tradews.session.limits import RateLimiter, RateLimits, TokenBucket
from tradews.session.login import LoginPolicy, proof_of
from tradews.session.login import authenticate as log_in
from tradews.session.market_data import MarketDataDesk
from tradews.session.ports import (
    Authenticator,
    History,
    InstrumentCatalog,
    Principal,
    Trading,
    Unavailable,
)
from tradews.session.quote_desk import QuoteDesk, QuoteStream
from tradews.session.stats import RequestStats
from tradews.session.view import TradingView

C = TypeVar("C")

log = logging.getLogger(__name__)

MARKET_DATA_SUBSCRIPTION = "market_data"
_SIDES = {"buy": Side.BUY, "sell": Side.SELL}
_TYPES = {"limit": OrderType.LIMIT, "market": OrderType.MARKET}
_TIFS = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}


class SessionState(enum.Enum):
    ANONYMOUS = "anonymous"
    AUTHENTICATED = "authenticated"
    CLOSING = "closing"  # the session asked to be closed: nothing more is processed
    CLOSED = "closed"


# Enum members read on every request, as module globals: read through its class, a member goes
# through EnumType.__getattr__ (Python 3.11), some 1,500 instructions each time.
_AUTHENTICATED = SessionState.AUTHENTICATED
_CLOSING = SessionState.CLOSING
_CLOSED = SessionState.CLOSED
_LIMIT = OrderType.LIMIT


@dataclass(frozen=True, slots=True)
class SessionLimits:
    max_batch: int = 100
    max_subscriptions: int = 50
    max_login_failures: int = 5
    max_sessions_per_key: int = 100


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """Maker and taker fees per account tier, in 1/100 of a basis point."""

    rates: dict[str, tuple[int, int]] = field(
        default_factory=lambda: {"enterprise": (500, 1000), "standard": (1000, 2000)}
    )

    def of(self, tier: str) -> tuple[int, int]:
        return self.rates.get(tier, (0, 0))


def new_session_tag() -> int:
    """A cancel-on-disconnect session tag: random, positive, 62 bits (0 means none)."""
    return secrets.randbelow(2**62 - 1) + 1


@dataclass(slots=True)
class Services(Generic[C]):
    """Everything sessions share. One instance per server."""

    authenticator: Authenticator
    instruments: InstrumentCatalog
    quotes: QuoteDesk[C]
    market: MarketDataDesk[C]
    view: TradingView[C]
    market_interval_ms: int
    trading: Trading | None = None
    history: History | None = None
    house_account_id: int = 0
    fees: FeeSchedule = field(default_factory=FeeSchedule)
    limits: SessionLimits = field(default_factory=SessionLimits)
    rates: RateLimiter = field(default_factory=lambda: RateLimiter(RateLimits()))
    sessions_per_key: dict[str, int] = field(default_factory=dict)  # logged-in sessions now
    openrpc: Callable[[], Any] | None = None
    login: LoginPolicy = field(default_factory=LoginPolicy)
    session_tags: Callable[[], int] = new_session_tag  # injected by tests
    stats: RequestStats = field(default_factory=lambda: RequestStats(METHODS))


class Scope(enum.Enum):
    """What an API key must be allowed to do to call a method (None: no login needed)."""

    READ = "read"  # market data, quote streams, your own orders, balances and trades
    TRADE = "trade"  # anything that changes your orders or balances


@dataclass(frozen=True, slots=True)
class Method:
    """One API method. ``scope`` None means it needs no login; ``cost`` is what one call takes
    from the caller's rate-limit budget (heavier work and bigger replies cost more)."""

    name: str
    params: type[msgspec.Struct]
    summary: str
    result: Any
    scope: Scope | None = Scope.READ
    cost: int = 1

    @property
    def needs_login(self) -> bool:
        return self.scope is not None


class Deferred:
    """A reply that comes later: ``start(done)`` is called once; ``done`` takes the result value
    or an :class:`ApiError`."""

    __slots__ = ("start",)

    def __init__(self, start: Callable[[Callable[[Any], None]], None]) -> None:
        self.start = start


# The method table: the one place a method is declared. ``rpc.discover`` is generated from it.
METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("rpc.login", LoginParams,
               "Log in with an API key and its secret, or a signature (docs/protocol.md). "
               "Returns true.", bool, scope=None, cost=5),
        Method("time", NoParams, "Server time in milliseconds since the Unix epoch.", TimeResult,
               scope=None),
        Method("rpc.logout", NoParams,
               "End the session cleanly: cancel-on-disconnect is turned off without cancelling "
               "anything, then the server closes the connection (1000). Returns true.", bool,
               scope=None),
        Method("rpc.discover", NoParams, "This API's OpenRPC document.", dict, scope=None,
               cost=20),
        Method("instruments", NoParams, "Listed instruments: tick, lot and size limits.",
               list[InstrumentInfo], scope=None, cost=2),
        Method("quote_request", QuoteRequestParams,
               "Start a stream of firm RFQ quotes (notifications 'quote') for a symbol.",
               QuoteSubscription, cost=2),
        Method("quote_cancel", SubscriptionParams, "Stop a quote stream. Returns true.", bool),
        Method("quote_accept", QuoteAcceptParams,
               "Execute a firm quote before it expires, all or nothing. Returns the fill.", Fill,
               scope=Scope.TRADE),
        Method("market_data_request", NoParams,
               "Start the market data stream (notifications 'market_data') for every instrument.",
               MarketDataSubscription, cost=2),
        Method("market_data_cancel", NoParams, "Stop the market data stream. Returns true.", bool),
        Method("order_place", OrderPlaceParams,
               "Place a limit or market order. Returns the order once durable.", OrderState,
               scope=Scope.TRADE),
        Method("order_cancel", OrderRefParams, "Cancel an open order.", OrderState,
               scope=Scope.TRADE),
        Method("order_cancel_all", SymbolFilterParams,
               "Cancel every open order (of one symbol). Returns the cancelled ids.", dict,
               scope=Scope.TRADE),
        Method("order_amend", OrderAmendParams,
               "Change an open order's price and/or total quantity.", OrderState,
               scope=Scope.TRADE),
        Method("order_status", OrderRefParams, "An order's current state.", OrderState),
        Method("orders_open", SymbolFilterParams, "Your open orders.", list[OrderState],
               cost=2),
        Method("balances", NoParams, "Your balances per asset.", list[Balance]),
        Method("trades", TradesParams, "Your trades, newest first, paginated by 'before'.",
               list[Fill], cost=5),
        Method("cancel_on_disconnect", CancelOnDisconnectParams,
               "While enabled, the orders this connection places are cancelled if it ends "
               "without rpc.logout. Returns {enabled}.", CancelOnDisconnectResult,
               scope=Scope.TRADE),
        Method("cancel_all_after", CancelAllAfterParams,
               "Dead-man's switch: cancel all your open orders at now + timeoutMs unless called "
               "again before (0 disarms). Returns {deadline}.", CancelAllAfterResult,
               scope=Scope.TRADE),
        Method("subscribe", SubscribeParams,
               "Subscribe to book.SYMBOL, trades.SYMBOL, ticker.SYMBOL, orders or balances; "
               "orders and balances resume after a streamSeq given as 'since'.",
               Subscribed, cost=2),
        Method("unsubscribe", ChannelParams, "Stop a channel subscription. Returns true.", bool),
    )
}  # fmt: skip

_param_decoders = {
    name: msgspec.json.Decoder(m.params, dec_hook=decode_hook, float_hook=Decimal)
    for name, m in METHODS.items()
}
_session_ids = itertools.count(1)  # internal keys only; never shown to a client


def rejected(reason: Reject, message: str) -> ApiError:
    # A frozen account is not a refused order but a state the operator must lift: its own code.
    code = ErrorCode.ACCOUNT_FROZEN if reason is Reject.ACCOUNT_FROZEN else ErrorCode.REJECTED
    return ApiError(code, message, {"reason": reason.value})


_KEY_ID = re.compile(r"tw_[0-9a-f]{8,40}")


def error_label(exc: ApiError) -> str:
    """An error's name for the metrics: its code's, with the reason of an order rejection."""
    if exc.code is ErrorCode.REJECTED and isinstance(exc.data, dict):
        return f"REJECTED:{exc.data.get('reason')}"
    return exc.code.name


class Session(Generic[C]):
    def __init__(
        self,
        services: Services[C],
        conn: C,
        send: Callable[[bytes], None] | None = None,
        codec: Codec = JSON,
        *,
        peer: str | None = None,
        close: Callable[[int, str], None] | None = None,
    ) -> None:
        self._services = services
        self._conn = conn
        self.codec = codec
        self.peer = peer  # the client's IP address, for per-address limits and allow-lists
        self._send = send or (lambda data: None)
        # Asks the adapter to close the connection with a code and reason, after every frame
        # sent or returned so far (rpc.logout: 1000).
        self._close_connection = close or (lambda code, reason: None)
        self.state = SessionState.ANONYMOUS
        self.principal: Principal | None = None
        self.close_reason: str | None = None
        self._login_failures = 0
        self._quote_streams: dict[str, QuoteStream[C]] = {}
        self._channels: dict[str, str] = {}  # channel name -> view key
        self._market_data = False
        self._follow_ups: list[bytes | Push] = []
        # Run once the reply and follow-ups they come with are sent (private streams start).
        self._after_reply: list[Callable[[], None]] = []
        self._id = next(_session_ids)
        self._quote_ids = itertools.count(1)  # per connection: ids reveal no one else's activity
        self._bucket = TokenBucket(services.rates.limits.connection, 0)
        self._refusals = 0
        self._last_now = 0
        self._cod_tag = 0  # cancel-on-disconnect: the tag of this session's orders; 0 when off
        self._logged_out = False
        self._frames_waiting = 0  # replies waiting for durability (see _await_deferred)
        self._error: ApiError | None = None  # the error of the call just dispatched, if any
        # Set by the adapter when the client asked for it: every reply then carries the
        # remaining rate-limit budget.
        self.report_budget = False

    @property
    def log_extra(self) -> dict[str, Any]:
        """The fields of a log line about this connection (``app/logs.py``)."""
        account = None if self.principal is None else self.principal.account_name
        return {"conn": self._id, "peer": self.peer, "account": account}

    # Input ---------------------------------------------------------------------------------

    def receive(self, data: bytes, now_ms: int) -> list[bytes]:
        """Handle one frame; return the frames to send now, in order.

        If :attr:`close_reason` is set afterwards, close the connection with it: from then on
        nothing the client sent, in this frame or any other, is processed."""
        if self.state is _CLOSING or self.state is _CLOSED:
            return []
        self._last_now = now_ms
        started = time.perf_counter_ns()
        codec = self.codec
        frame = codec.decode(data, max_batch=self._services.limits.max_batch)
        out: list[bytes] = []
        if frame.error is not None:
            refusal = self._charge(1, now_ms)
            out.append(codec.pack([codec.error(None, refusal or frame.error)], False))
            return out
        replies: list[Any] = []
        # Deferred calls (slot None: a notification) are started after the loop, in the
        # order they came, so the engine sees a batch's commands in the batch's order.
        deferred: list[tuple[int | None, Call, Deferred]] = []
        awaited = 0  # deferred calls whose reply the frame's reply waits for
        stats, encoding = self._services.stats, codec.name
        for item in frame.items:
            if self.closing:
                break  # the failed-login limit tripped, or rpc.logout: the rest is ignored
            method = METHODS.get(item.method) if isinstance(item, Call) else None
            refusal = self._charge(1 if method is None else method.cost, now_ms)
            self._error = None
            if refusal is not None:
                reply = codec.error(item.id, refusal)
                self._error = refusal
            elif isinstance(item, Invalid):
                reply = codec.error(item.id, item.error)
                self._error = item.error
            else:
                reply = self._dispatch(item, now_ms)
            if not isinstance(reply, Deferred):
                error = self._error
                stats.record(
                    item.method if isinstance(item, Call) else "invalid",
                    encoding,
                    time.perf_counter_ns() - started,
                    None if error is None else error_label(error),
                )
            if isinstance(reply, Deferred):
                assert isinstance(item, Call)
                if item.is_notification:
                    deferred.append((None, item, reply))
                else:
                    deferred.append((len(replies), item, reply))
                    replies.append(None)
                    awaited += 1
            elif not (isinstance(item, Call) and item.is_notification):
                replies.append(self._with_budget(reply, now_ms))
        follow_ups: list[bytes] = []
        if self._follow_ups:
            follow_ups = [f if isinstance(f, bytes) else codec.push(f) for f in self._follow_ups]
            self._follow_ups.clear()
        after_reply: list[Callable[[], None]] = []
        if self._after_reply:
            after_reply, self._after_reply = self._after_reply, []
        if awaited:
            # The reply waits for durability; what follows it (a stream's first message) waits
            # with it, so that a reply always comes before its stream.
            self._await_deferred(
                frame.is_batch, replies, deferred, awaited, follow_ups, after_reply, started
            )
            return out
        for _, _, d in deferred:
            d.start(lambda value: None)
        if replies:
            out.append(codec.pack(replies, frame.is_batch))
        out.extend(follow_ups)
        # Nothing is published before the caller sends ``out``: streams may start now.
        for start in after_reply:
            start()
        return out

    # Rate limits ---------------------------------------------------------------------------

    def _shared_bucket(self, now_ms: int) -> TokenBucket | None:
        """The key's bucket once logged in, else the client address's (if known)."""
        rates = self._services.rates
        if self.principal is not None:
            return rates.keys.get(self.principal.key_id, now_ms)
        if self.peer is not None:
            return rates.addresses.get(self.peer, now_ms)
        return None

    def _buckets(self, now_ms: int) -> list[TokenBucket]:
        shared = self._shared_bucket(now_ms)
        return [self._bucket] if shared is None else [self._bucket, shared]

    def _charge(self, cost: int, now_ms: int) -> ApiError | None:
        """Take ``cost`` from every bucket that applies, or none and return the refusal.
        (On every call: the common case is two calls, one per bucket.)"""
        own = self._bucket
        wait = own.try_take(cost, now_ms)
        if not wait:
            shared = self._shared_bucket(now_ms)
            if shared is not None:
                wait = shared.try_take(cost, now_ms)
                if wait:
                    own.tokens += cost if cost < own.limit else own.limit  # give it back
        if not wait:
            self._refusals = 0
            return None
        self._refusals += 1
        self._services.rates.refused += 1
        if self._refusals >= self._services.rates.limits.max_refusals:
            self._close("rate limit ignored")
        return ApiError(
            ErrorCode.RATE_LIMITED,
            f"rate limit: retry in {wait} ms",
            {"retryAfter": wait},
        )

    def budget(self, now_ms: int) -> RateBudget:
        """What is left of the tightest bucket, for clients that asked to see it."""
        tightest = min(self._buckets(now_ms), key=lambda b: b.tokens)
        return RateBudget(
            remaining=max(0, int(tightest.tokens)),
            limit=tightest.limit,
            reset_ms=tightest.full_at(now_ms) - now_ms,
        )

    def _with_budget(self, reply: Any, now_ms: int) -> Any:
        if self.report_budget:
            return self.codec.with_budget(reply, self.budget(now_ms))
        return reply

    @property
    def closing(self) -> bool:
        """The session asked to be closed (see :meth:`_close`, ``rpc.logout``)."""
        return self.state is _CLOSING

    def _close(self, reason: str) -> None:
        """Ask the adapter to close the connection, and process nothing more."""
        if self.close_reason is None:
            self.close_reason = reason
        if self.state is not SessionState.CLOSED:
            self.state = SessionState.CLOSING

    def _await_deferred(
        self,
        is_batch: bool,
        replies: list[Any],
        deferred: list[tuple[int | None, Call, Deferred]],
        awaited: int,
        follow_ups: list[bytes],
        after_reply: list[Callable[[], None]],
        started: int,
    ) -> None:
        """Send the reply (or the whole batch's reply), then the follow-ups, when every deferred
        part is done (``awaited`` of them have a slot in ``replies``)."""
        waiting = [awaited]
        codec = self.codec
        stats = self._services.stats
        self._frames_waiting += 1

        def finish(slot: int, call: Call, value: Any) -> None:
            if self.state is _CLOSED:
                return
            elapsed = time.perf_counter_ns() - started
            if isinstance(value, ApiError):
                replies[slot] = codec.error(call.id, value)
                stats.record(call.method, codec.name, elapsed, error_label(value))
            else:
                replies[slot] = codec.result(call, value)
                stats.record(call.method, codec.name, elapsed, None)
            replies[slot] = self._with_budget(replies[slot], self._last_now)
            waiting[0] -= 1
            if waiting[0] == 0:
                self._send(codec.pack(replies, is_batch))
                for frame in follow_ups:
                    self._send(frame)
                for start in after_reply:
                    start()
                self._frames_waiting -= 1
                self._close_if_logged_out()

        for slot, call, d in deferred:
            if slot is None:
                d.start(lambda value: None)
            else:
                d.start(functools.partial(finish, slot, call))

    def _dispatch(self, call: Call, now_ms: int) -> Any:
        method = METHODS.get(call.method)
        codec = self.codec
        try:
            if method is None:
                raise ApiError(ErrorCode.METHOD_NOT_FOUND, data=f"no method {call.method!r}")
            if method.needs_login and self.state is not _AUTHENTICATED:
                raise ApiError(ErrorCode.AUTH_REQUIRED, f"{call.method} requires rpc.login first")
            if method.scope is not None and method.scope.value not in self._principal().scopes:
                scopes = ", ".join(sorted(self._principal().scopes)) or "none"
                raise ApiError(
                    ErrorCode.PERMISSION_DENIED,
                    f"{call.method} needs the '{method.scope.value}' permission, which this API "
                    f"key lacks (it has: {scopes})",
                )
            params = self._decode_params(call)
            value = getattr(self, "_m_" + call.method.replace(".", "_"))(params, now_ms)
            if isinstance(value, Deferred):
                return value
            return codec.result(call, value)
        except ApiError as exc:
            self._error = exc
            return codec.error(call.id, exc)
        except Unavailable as exc:
            self._error = error = unavailable(exc)
            return codec.error(call.id, error)
        except Exception:
            log.exception("internal error in %s", call.method, extra=self.log_extra)
            self._error = error = ApiError(ErrorCode.INTERNAL_ERROR)
            return codec.error(call.id, error)

    @staticmethod
    def _decode_params(call: Call) -> Any:
        raw = call.params
        try:
            if isinstance(raw, dict):
                return msgspec.convert(raw, METHODS[call.method].params, dec_hook=decode_hook)
            if raw is None or bytes(raw).strip() == b"[]":
                raw = msgspec.Raw(b"{}")
            return _param_decoders[call.method].decode(raw)
        except msgspec.ValidationError as exc:
            raise ApiError(ErrorCode.INVALID_PARAMS, data=str(exc)) from None
        except RecursionError:  # unknown fields nested thousands deep
            raise ApiError(ErrorCode.INVALID_PARAMS, data="params are nested too deeply") from None
        except UnicodeDecodeError:  # the adapter refuses text that is not UTF-8 before this
            raise ApiError(ErrorCode.INVALID_PARAMS, data="params are not UTF-8") from None

    # Login and discovery -------------------------------------------------------------------

    def _m_rpc_login(self, p: LoginParams, now_ms: int) -> bool:
        if self.state is SessionState.AUTHENTICATED:
            raise ApiError(ErrorCode.ALREADY_LOGGED_IN, "this connection is already logged in")
        proof = proof_of(p)  # malformed params (-32602) do not count as a failed login
        services = self._services
        try:
            principal = log_in(
                p.api_key, proof, services.authenticator, services.login, self.peer, now_ms
            )
            if principal.tier != "enterprise":
                raise ApiError(
                    ErrorCode.TIER_NOT_ALLOWED, "websocket access requires the enterprise tier"
                )
        except ApiError as exc:
            # the key id only where it looks like one: a secret pasted into apiKey stays out
            key = p.api_key if _KEY_ID.fullmatch(p.api_key) else "(not a key id)"
            log.warning("login refused for key %s: %s", key, exc.message, extra=self.log_extra)
            self._login_failures += 1
            if self._login_failures >= self._services.limits.max_login_failures:
                self._close("too many failed logins")
                raise ApiError(
                    ErrorCode.TOO_MANY_LOGIN_FAILURES,
                    "too many failed logins; closing the connection",
                ) from None
            raise
        open_sessions = services.sessions_per_key.get(principal.key_id, 0)
        if open_sessions >= services.limits.max_sessions_per_key:
            raise ApiError(
                ErrorCode.SESSION_LIMIT,
                f"this API key has {open_sessions} sessions open, the most it may; "
                "close one or use another key",
            )
        services.sessions_per_key[principal.key_id] = open_sessions + 1
        self.principal = principal
        self.state = SessionState.AUTHENTICATED
        log.info("logged in with key %s", principal.key_id, extra=self.log_extra)
        return True

    def _m_rpc_logout(self, p: NoParams, now_ms: int) -> Deferred:
        """Turn cancel-on-disconnect off without cancelling (once that is durable), reply, then
        have the adapter close the connection with 1000. Nothing after it is processed."""
        command = self._end_session(now_ms, cancel=False)
        disarm = None if command is None else self._submit(command, lambda result: True)
        self.state = SessionState.CLOSING

        def start(done: Callable[[Any], None]) -> None:
            def finish(value: Any) -> None:
                done(value)
                self._logged_out = True
                self._close_if_logged_out()

            if disarm is None:
                finish(True)
            else:
                disarm.start(finish)

        return Deferred(start)

    def _close_if_logged_out(self) -> None:
        if self._logged_out and not self._frames_waiting:
            self._logged_out = False  # once
            self._close_connection(1000, "logged out")

    def _m_time(self, p: NoParams, now_ms: int) -> TimeResult:
        return TimeResult(time=now_ms)

    def _m_rpc_discover(self, p: NoParams, now_ms: int) -> Any:
        doc = self._services.openrpc
        return doc() if doc is not None else {}

    def _m_instruments(self, p: NoParams, now_ms: int) -> list[InstrumentInfo]:
        return [
            InstrumentInfo(
                symbol=i.symbol,
                base=i.base,
                quote=i.quote,
                tick=str(i.tick),
                lot=str(i.lot),
                min_size=str(i.min_size),
                max_size=None if i.max_size is None else str(i.max_size),
                quote_size=str(i.quote_size),
            )
            for i in self._services.instruments.all()
        ]

    # RFQ -----------------------------------------------------------------------------------

    def _m_quote_request(self, p: QuoteRequestParams, now_ms: int) -> QuoteSubscription:
        services = self._services
        inst = self._instrument(p.symbol)
        lots = inst.quote_size_lots if p.quantity is None else _quantity_lots(inst, p.quantity)
        price = services.quotes.price(inst, lots, self._account(), now_ms)
        if isinstance(price, NoQuote):
            code = ErrorCode.DESK_LIMIT if price.desk_limit else ErrorCode.NO_PRICE
            raise ApiError(code, price.reason)
        self._check_subscription_room()
        sub_id = f"q{next(self._quote_ids)}"
        stream = QuoteStream(self._conn, sub_id, self._account(), inst, lots, self.codec)
        self._quote_streams[sub_id] = stream
        self._follow_ups.append(services.quotes.open(stream, price, now_ms))
        return QuoteSubscription(
            subscription=sub_id,
            symbol=inst.symbol,
            quantity=stream.quantity_text,
            valid_for_ms=services.quotes.ttl_ms,
        )

    def _m_quote_cancel(self, p: SubscriptionParams, now_ms: int) -> bool:
        stream = self._quote_streams.pop(p.subscription, None)
        if stream is None:
            raise ApiError(
                ErrorCode.UNKNOWN_SUBSCRIPTION, f"no quote subscription {p.subscription!r}"
            )
        self._services.quotes.close(stream)
        return True

    def _m_quote_accept(self, p: QuoteAcceptParams, now_ms: int) -> Deferred:
        services = self._services
        quote = services.quotes.lookup(p.quote_id, now_ms)
        if quote is None:
            raise rejected(Reject.QUOTE_UNKNOWN, f"no quote {p.quote_id!r}")
        side = _SIDES[p.side]
        command = AcceptQuote(
            now_ms,
            self._account(),
            quote.quote_id,
            quote.account_id,
            quote.symbol,
            int(side),
            quote.sell_ticks if side is Side.BUY else quote.buy_ticks,
            quote.quantity_lots,
            quote.valid_until,
            services.house_account_id,
        )
        account = self._account()
        inst = self._instrument(quote.symbol)

        def reply(result: Result) -> Any:
            if isinstance(result, Done) and isinstance(result.value, TradeExecuted):
                return fills_for(account, result.value, inst)[0]
            return _unexpected(result)

        return self._submit(command, reply)

    # Market data ---------------------------------------------------------------------------

    def _m_market_data_request(self, p: NoParams, now_ms: int) -> MarketDataSubscription:
        market = self._services.market
        if self._market_data:
            raise ApiError(ErrorCode.ALREADY_SUBSCRIBED, "market data is already streaming")
        self._check_subscription_room()
        market.subscribe(self._id, self._conn)
        self._market_data = True
        self._follow_ups.append(market.snapshot(now_ms))
        return MarketDataSubscription(
            subscription=MARKET_DATA_SUBSCRIPTION,
            symbols=market.symbols(),
            interval_ms=self._services.market_interval_ms,
        )

    def _m_market_data_cancel(self, p: NoParams, now_ms: int) -> bool:
        if not self._market_data:
            raise ApiError(ErrorCode.UNKNOWN_SUBSCRIPTION, "no market data subscription")
        self._services.market.unsubscribe(self._id)
        self._market_data = False
        return True

    def _m_subscribe(self, p: SubscribeParams, now_ms: int) -> Subscribed:
        view = self._services.view
        key = view.channel_key(p.channel, self._account(), p.depth)
        private = view.private(key)
        if p.since is not None and private is None:
            raise ApiError(
                ErrorCode.INVALID_PARAMS, data="since applies to the orders and balances channels"
            )
        if p.channel in self._channels:
            raise ApiError(
                ErrorCode.ALREADY_SUBSCRIBED,
                f"already subscribed to {p.channel}; unsubscribe first to start over",
            )
        self._check_subscription_room()
        if private is None:
            self._channels[p.channel] = key
            self._follow_ups.extend(view.subscribe(key, self._id, self._conn, now_ms))
            return Subscribed(channel=p.channel)
        # A private stream: from ``since``, or from now with the current balances first. It is
        # served once this reply is sent, from where the stream stands now (the reply says).
        streams = view.streams
        head = streams.subscribe(*private, self._id, self._conn, p.since)
        self._channels[p.channel] = key
        if p.since is None:
            self._follow_ups.extend(view.current(key, now_ms))
        self._after_reply.append(functools.partial(streams.start, *private, self._id))
        return Subscribed(channel=p.channel, stream_seq=head)

    def _m_unsubscribe(self, p: ChannelParams, now_ms: int) -> bool:
        key = self._channels.pop(p.channel, None)
        if key is None:
            raise ApiError(ErrorCode.UNKNOWN_SUBSCRIPTION, f"not subscribed to {p.channel!r}")
        self._services.view.unsubscribe(key, self._id)
        return True

    # Orders --------------------------------------------------------------------------------

    def _m_order_place(self, p: OrderPlaceParams, now_ms: int) -> Deferred:
        inst = self._instrument_or_reject(p.symbol)
        otype = _TYPES[p.type]
        if otype is _LIMIT:
            if p.price is None:
                raise rejected(Reject.INVALID_PRICE, "a limit order needs a price")
            price = _price_ticks(inst, p.price)
        else:
            if p.price is not None:
                raise rejected(Reject.PRICE_NOT_ALLOWED, "a market order takes no price")
            price = 0
        lots = _order_lots(inst, p.quantity)
        maker, taker = self._services.fees.of(self._principal().tier)
        command = PlaceOrder(
            now_ms,
            self._account(),
            inst.symbol,
            int(_SIDES[p.side]),
            int(otype),
            price,
            lots,
            int(_TIFS[p.time_in_force]),
            p.post_only,
            p.client_order_id,
            maker,
            taker,
            self._cod_tag,
        )
        return self._submit(command, self._order_reply)

    def _m_order_cancel(self, p: OrderRefParams, now_ms: int) -> Deferred:
        order_id, client_id = _order_ref(p.order_id, p.client_order_id)
        command = CancelOrder(now_ms, self._account(), order_id, client_id)
        return self._submit(command, self._order_reply)

    def _m_order_cancel_all(self, p: SymbolFilterParams, now_ms: int) -> Deferred:
        if p.symbol is not None:
            self._instrument_or_reject(p.symbol)
        command = CancelAll(now_ms, self._account(), p.symbol)

        def reply(result: Result) -> Any:
            if isinstance(result, Done):
                return {"cancelled": result.value}
            return _unexpected(result)

        return self._submit(command, reply)

    def _m_order_amend(self, p: OrderAmendParams, now_ms: int) -> Deferred:
        order_id, client_id = _order_ref(p.order_id, p.client_order_id)
        if p.price is None and p.quantity is None:
            raise ApiError(ErrorCode.INVALID_PARAMS, data="give a new price, quantity or both")
        trading = self._services.trading
        symbol = (
            None if trading is None else trading.symbol_of(self._account(), order_id, client_id)
        )
        if symbol is None:
            raise rejected(Reject.UNKNOWN_ORDER, "no such order")
        inst = self._instrument(symbol)
        price = None if p.price is None else _price_ticks(inst, p.price)
        lots = None if p.quantity is None else _order_lots(inst, p.quantity)
        command = AmendOrder(now_ms, self._account(), order_id, client_id, price, lots)
        return self._submit(command, self._order_reply)

    def _m_order_status(self, p: OrderRefParams, now_ms: int) -> OrderState:
        order_id, client_id = _order_ref(p.order_id, p.client_order_id)
        view = self._services.view
        account = self._account()
        state = None
        for o in view.open_orders(account, None):
            if o.order_id == order_id or (client_id is not None and o.client_order_id == client_id):
                state = o
                break
        history = self._services.history
        if state is None and history is not None:
            state = history.closed_order(account, order_id, client_id)
        if state is None:
            raise rejected(Reject.UNKNOWN_ORDER, "no such order")
        return order_state(state, self._instrument(state.symbol))

    def _m_orders_open(self, p: SymbolFilterParams, now_ms: int) -> list[OrderState]:
        if p.symbol is not None:
            self._instrument_or_reject(p.symbol)
        return [
            order_state(o, self._instrument(o.symbol))
            for o in self._services.view.open_orders(self._account(), p.symbol)
        ]

    def _m_balances(self, p: NoParams, now_ms: int) -> list[Balance]:
        return self._services.view.balances(self._account())

    def _m_trades(self, p: TradesParams, now_ms: int) -> list[Fill]:
        history = self._services.history
        if history is None:
            return []
        if p.symbol is not None:
            self._instrument_or_reject(p.symbol)
        account = self._account()
        rows = history.trades_of(account, symbol=p.symbol, before=p.before, limit=p.limit)
        out: list[Fill] = []
        for t in rows:
            out.extend(fills_for(account, t, self._instrument(t.symbol)))
        return out

    # Liveness ------------------------------------------------------------------------------

    def _m_cancel_on_disconnect(
        self, p: CancelOnDisconnectParams, now_ms: int
    ) -> CancelOnDisconnectResult | Deferred:
        if p.enabled:
            # The engine learns the tag from the first order placed with it.
            if not self._cod_tag:
                self._cod_tag = self._services.session_tags()
            return CancelOnDisconnectResult(enabled=True)
        command = self._end_session(now_ms, cancel=False)
        if command is None:
            return CancelOnDisconnectResult(enabled=False)
        # Answered once durable: a crash before would cancel the orders at the next start.
        return self._submit(command, lambda result: CancelOnDisconnectResult(enabled=False))

    def _m_cancel_all_after(self, p: CancelAllAfterParams, now_ms: int) -> Deferred:
        if 0 < p.timeout_ms < CANCEL_ALL_AFTER_MIN_MS:
            raise ApiError(
                ErrorCode.INVALID_PARAMS,
                data=f"timeoutMs must be 0 (disarm) or from {CANCEL_ALL_AFTER_MIN_MS} to "
                f"{CANCEL_ALL_AFTER_MAX_MS} - at `$.timeoutMs`",
            )
        command = CancelAllAfter(now_ms, self._account(), p.timeout_ms)

        def reply(result: Result) -> Any:
            if isinstance(result, Done):
                return CancelAllAfterResult(deadline=result.value)
            return _unexpected(result)

        return self._submit(command, reply)

    def _end_session(self, now_ms: int, *, cancel: bool) -> EndSession | None:
        """The command that ends this session's cancel-on-disconnect (None if it is off), which
        is then off: a session ends it once."""
        tag = self._cod_tag
        if not tag or self.principal is None:
            return None
        self._cod_tag = 0
        return EndSession(now_ms, self.principal.account_id, tag, cancel)

    # Helpers -------------------------------------------------------------------------------

    def _submit(self, command: AnyCommand, to_value: Callable[[Result], Any]) -> Deferred:
        trading = self._services.trading
        if trading is None:
            raise ApiError(ErrorCode.ENGINE_UNAVAILABLE, "trading is not available")

        def start(done: Callable[[Any], None]) -> None:
            def reply(result: Result | ApiError) -> None:
                if isinstance(result, ApiError):
                    done(result)
                    return
                if isinstance(result, Rejected):
                    done(rejected(result.reason, result.message))
                    return
                try:
                    done(to_value(result))
                except ApiError as exc:
                    done(exc)
                except Unavailable as exc:  # a read the reply needs (a closed order's state)
                    done(unavailable(exc))

            if not trading.submit(command, reply):
                done(ApiError(ErrorCode.ENGINE_UNAVAILABLE, "trading is halted"))

        return Deferred(start)

    def _order_reply(self, result: Result) -> OrderState:
        if isinstance(result, OrderResult):
            return order_state(result.order, self._instrument(result.order.symbol))
        history = self._services.history
        if isinstance(result, Duplicate) and history is not None:
            # A retried clientOrderId whose order closed long ago: its state is in the read
            # models, which were committed with (or before) this reply's batch.
            state = history.closed_order(self._account(), result.order_id, None)
            if state is not None:
                return order_state(state, self._instrument(state.symbol))
        return _unexpected(result)  # type: ignore[no-any-return]

    def _principal(self) -> Principal:
        assert self.principal is not None
        return self.principal

    def _account(self) -> int:
        return self._principal().account_id

    def _instrument(self, symbol: str) -> Instrument:
        inst = self._services.instruments.get(symbol)
        if inst is None:
            raise ApiError(ErrorCode.UNKNOWN_SYMBOL, self._services.instruments.unknown(symbol))
        return inst

    def _instrument_or_reject(self, symbol: str) -> Instrument:
        inst = self._services.instruments.get(symbol)
        if inst is None:
            raise rejected(Reject.UNKNOWN_SYMBOL, self._services.instruments.unknown(symbol))
        return inst

    def _check_subscription_room(self) -> None:
        limit = self._services.limits.max_subscriptions
        if self.subscription_count >= limit:
            raise ApiError(
                ErrorCode.SUBSCRIPTION_LIMIT, f"at most {limit} subscriptions per connection"
            )

    def refresh(self, channels: set[str], now_ms: int) -> list[Push]:
        """The current state of ``channels`` (perishable streams the connection skipped while
        it did not keep up): a book snapshot, the latest ticker."""
        view = self._services.view
        out: list[Push] = []
        for channel in channels:
            key = self._channels.get(channel)
            if key is not None:
                out.extend(view.current(key, now_ms))
        return out

    # Lifecycle -----------------------------------------------------------------------------

    @property
    def subscription_count(self) -> int:
        return len(self._quote_streams) + int(self._market_data) + len(self._channels)

    def close(self, now_ms: int | None = None) -> None:
        """The connection ended (or this side is closing it): with cancel-on-disconnect on,
        cancel the orders placed under it; release every subscription. Idempotent."""
        if self.state is SessionState.CLOSED:
            return
        command = self._end_session(self._last_now if now_ms is None else now_ms, cancel=True)
        trading = self._services.trading
        if command is not None and trading is not None:
            trading.submit(command, _ignore)  # refused once trading has stopped: see the server
        for stream in self._quote_streams.values():
            self._services.quotes.close(stream)
        self._quote_streams.clear()
        if self._market_data:
            self._services.market.unsubscribe(self._id)
            self._market_data = False
        for key in self._channels.values():
            self._services.view.unsubscribe(key, self._id)
        self._channels.clear()
        if self.principal is not None:
            counts = self._services.sessions_per_key
            left = counts.get(self.principal.key_id, 1) - 1
            if left > 0:
                counts[self.principal.key_id] = left
            else:
                counts.pop(self.principal.key_id, None)
        self.state = SessionState.CLOSED


def _ignore(result: Result | ApiError) -> None:
    pass


def unavailable(exc: Unavailable) -> ApiError:
    """What a client is told when a port cannot answer now: retry later, nothing is wrong with
    the request (ENGINE_UNAVAILABLE, as when trading is halted)."""
    return ApiError(ErrorCode.ENGINE_UNAVAILABLE, str(exc))


def _unexpected(result: Result) -> Any:
    log.error("unexpected engine result %r", result)
    raise ApiError(ErrorCode.INTERNAL_ERROR)


def _order_ref(order_id: int | None, client_id: str | None) -> tuple[int | None, str | None]:
    if (order_id is None) == (client_id is None):
        raise ApiError(ErrorCode.INVALID_PARAMS, data="give exactly one of orderId, clientOrderId")
    return order_id, client_id


# No price or quantity needs more than 10^15 ticks or lots; bounding them keeps every product
# the engine forms (price x quantity x atoms) inside the 64-bit integers the journal stores.
MAX_STEPS = 10**15


def _steps(value: Decimal, step: Decimal, what: str) -> int:
    """A client's decimal as a whole number of ``step``s; raises InvalidDecimal or OffStep."""
    if not value.is_finite() or value <= 0:
        raise InvalidDecimal(f"{what} must be a positive decimal, got {value}")
    steps = to_steps(value, step, what=what)
    if steps > MAX_STEPS:
        raise OffStep(f"{what} {value} is out of range")
    return steps


def _price_ticks(inst: Instrument, price: Decimal) -> int:
    try:
        return _steps(price, inst.tick, "price")
    except (InvalidDecimal, OffStep) as exc:
        raise rejected(Reject.INVALID_PRICE, str(exc)) from None


def _order_lots(inst: Instrument, quantity: Decimal) -> int:
    """Quantity in lots; size limits are the engine's to check (with their own reasons)."""
    try:
        return _steps(quantity, inst.lot, "quantity")
    except (InvalidDecimal, OffStep) as exc:
        raise rejected(Reject.INVALID_QUANTITY, str(exc)) from None


def _quantity_lots(inst: Instrument, quantity: Decimal) -> int:
    """An RFQ quantity: in lots and within the size limits (error 2002 otherwise)."""
    try:
        lots = _steps(quantity, inst.lot, "quantity")
        inst.check_quantity(lots)
    except (InvalidDecimal, OffStep) as exc:
        raise ApiError(ErrorCode.INVALID_QUANTITY, str(exc)) from None
    return lots
