"""One client connection's JSON-RPC session: login state, method dispatch, subscriptions.

Lifecycle (``SessionState``)::

    ANONYMOUS --rpc.login ok--> AUTHENTICATED --close()--> CLOSED
        |                                                     ^
        +---- too many failed logins / close() ---------------+

Call :meth:`Session.receive_text` with each text frame; send what it returns, in order. If
:attr:`Session.close_reason` is set afterwards, close the connection with it. Call
:meth:`Session.close` exactly once when the connection ends: it releases every subscription.
"""

from __future__ import annotations

import enum
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, TypeVar

import msgspec

from tradews.api.errors import ApiError, ErrorCode
from tradews.api.messages import (
    LoginParams,
    MarketDataSubscription,
    NoParams,
    QuoteRequestParams,
    QuoteSubscription,
    SubscriptionParams,
    TimeResult,
)
from tradews.codecs import jsonrpc
from tradews.domain.instrument import Instrument, InvalidDecimal, OffStep, to_steps
from tradews.session.market_data import MarketDataDesk
from tradews.session.ports import Authenticator, InstrumentCatalog, Principal
from tradews.session.quote_desk import QuoteDesk, QuoteStream

C = TypeVar("C")

log = logging.getLogger(__name__)

MARKET_DATA_SUBSCRIPTION = "market_data"


class SessionState(enum.Enum):
    ANONYMOUS = "anonymous"
    AUTHENTICATED = "authenticated"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class SessionLimits:
    max_batch: int = 100
    max_subscriptions: int = 50
    max_login_failures: int = 5


@dataclass(slots=True)
class Services(Generic[C]):
    """Everything sessions share. One instance per server."""

    authenticator: Authenticator
    instruments: InstrumentCatalog
    quotes: QuoteDesk[C]
    market: MarketDataDesk[C]
    market_interval_ms: int
    limits: SessionLimits = field(default_factory=SessionLimits)
    openrpc: Callable[[], Any] | None = None


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    params: type[msgspec.Struct]
    summary: str
    result: type | None
    needs_login: bool = True


# The method table: the one place a method is declared. ``rpc.discover`` is generated from it.
METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "rpc.login",
            LoginParams,
            "Log in with an API key and secret. Returns true.",
            bool,
            needs_login=False,
        ),
        Method(
            "time",
            NoParams,
            "Server time in milliseconds since the Unix epoch.",
            TimeResult,
            needs_login=False,
        ),
        Method("rpc.discover", NoParams, "This API's OpenRPC document.", dict, needs_login=False),
        Method(
            "quote_request",
            QuoteRequestParams,
            "Start a stream of firm RFQ quotes (notifications 'quote') for a symbol.",
            QuoteSubscription,
        ),
        Method("quote_cancel", SubscriptionParams, "Stop a quote stream. Returns true.", bool),
        Method(
            "market_data_request",
            NoParams,
            "Start the market data stream (notifications 'market_data') for every instrument.",
            MarketDataSubscription,
        ),
        Method("market_data_cancel", NoParams, "Stop the market data stream. Returns true.", bool),
    )
}

_param_decoders = {name: msgspec.json.Decoder(m.params) for name, m in METHODS.items()}
_subscription_ids = itertools.count(1)


class Session(Generic[C]):
    def __init__(self, services: Services[C], conn: C) -> None:
        self._services = services
        self._conn = conn
        self.state = SessionState.ANONYMOUS
        self.principal: Principal | None = None
        self.close_reason: str | None = None
        self._login_failures = 0
        self._quote_streams: dict[str, QuoteStream[C]] = {}
        self._market_data = False
        self._follow_ups: list[bytes] = []

    # Input ---------------------------------------------------------------------------------

    def receive_text(self, data: bytes, now_ms: int) -> list[bytes]:
        """Handle one text frame; return the frames to send, in order."""
        if self.state is SessionState.CLOSED:
            return []
        frame = jsonrpc.parse_frame(data, max_batch=self._services.limits.max_batch)
        out: list[bytes] = []
        if frame.error is not None:
            out.append(jsonrpc.encode_error(None, frame.error))
            return out
        replies = []
        for item in frame.items:
            if isinstance(item, jsonrpc.Invalid):
                replies.append(jsonrpc.error(item.id, item.error))
                continue
            reply = self._dispatch(item, now_ms)
            if not item.is_notification:
                replies.append(reply)
        if frame.is_batch:
            if replies:
                out.append(jsonrpc.encode(replies))
        elif replies:
            out.append(jsonrpc.encode(replies[0]))
        if self._follow_ups:
            out.extend(self._follow_ups)
            self._follow_ups.clear()
        return out

    def _dispatch(self, call: jsonrpc.Call, now_ms: int) -> Any:
        method = METHODS.get(call.method)
        try:
            if method is None:
                raise ApiError(ErrorCode.METHOD_NOT_FOUND, data=f"no method {call.method!r}")
            if method.needs_login and self.state is not SessionState.AUTHENTICATED:
                raise ApiError(ErrorCode.AUTH_REQUIRED, f"{call.method} requires rpc.login first")
            params = self._decode_params(call)
            value = getattr(self, "_m_" + call.method.replace(".", "_"))(params, now_ms)
            return jsonrpc.result(call.id, value)
        except ApiError as exc:
            return jsonrpc.error(call.id, exc)
        except Exception:
            log.exception("internal error in %s", call.method)
            return jsonrpc.error(call.id, ApiError(ErrorCode.INTERNAL_ERROR))

    @staticmethod
    def _decode_params(call: jsonrpc.Call) -> Any:
        raw = call.params
        if raw is None or bytes(raw).strip() == b"[]":
            raw = msgspec.Raw(b"{}")
        try:
            return _param_decoders[call.method].decode(raw)
        except msgspec.ValidationError as exc:
            raise ApiError(ErrorCode.INVALID_PARAMS, data=str(exc)) from None

    # Methods -------------------------------------------------------------------------------

    def _m_rpc_login(self, p: LoginParams, now_ms: int) -> bool:
        if self.state is SessionState.AUTHENTICATED:
            raise ApiError(ErrorCode.ALREADY_LOGGED_IN, "this connection is already logged in")
        try:
            principal = self._services.authenticator.authenticate(p.api_key, p.api_secret, now_ms)
            if principal.tier != "enterprise":
                raise ApiError(
                    ErrorCode.TIER_NOT_ALLOWED, "websocket access requires the enterprise tier"
                )
        except ApiError:
            self._login_failures += 1
            if self._login_failures >= self._services.limits.max_login_failures:
                self.close_reason = "too many failed logins"
                raise ApiError(
                    ErrorCode.TOO_MANY_LOGIN_FAILURES,
                    "too many failed logins; closing the connection",
                ) from None
            raise
        self.principal = principal
        self.state = SessionState.AUTHENTICATED
        return True

    def _m_time(self, p: NoParams, now_ms: int) -> TimeResult:
        return TimeResult(time=now_ms)

    def _m_rpc_discover(self, p: NoParams, now_ms: int) -> Any:
        doc = self._services.openrpc
        return doc() if doc is not None else {}

    def _m_quote_request(self, p: QuoteRequestParams, now_ms: int) -> QuoteSubscription:
        services = self._services
        inst = services.instruments.get(p.symbol)
        if inst is None:
            raise ApiError(ErrorCode.UNKNOWN_SYMBOL, f"unknown symbol {p.symbol!r}")
        lots = inst.quote_size_lots if p.quantity is None else _quantity_lots(inst, p.quantity)
        if services.quotes.reference(inst.symbol) is None:
            raise ApiError(ErrorCode.NO_PRICE, f"no price is available for {inst.symbol} yet")
        self._check_subscription_room()
        assert self.principal is not None
        sub_id = f"q{next(_subscription_ids)}"
        stream = QuoteStream(self._conn, sub_id, self.principal.account_id, inst, lots)
        self._quote_streams[sub_id] = stream
        first = services.quotes.open(stream, now_ms)
        if first is not None:
            self._follow_ups.append(first)
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

    def _m_market_data_request(self, p: NoParams, now_ms: int) -> MarketDataSubscription:
        market = self._services.market
        if not self._market_data:
            self._check_subscription_room()
            market.subscribe(id(self), self._conn)
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
        self._services.market.unsubscribe(id(self))
        self._market_data = False
        return True

    def _check_subscription_room(self) -> None:
        limit = self._services.limits.max_subscriptions
        if len(self._quote_streams) + int(self._market_data) >= limit:
            raise ApiError(
                ErrorCode.SUBSCRIPTION_LIMIT, f"at most {limit} subscriptions per connection"
            )

    # Lifecycle -----------------------------------------------------------------------------

    @property
    def subscription_count(self) -> int:
        return len(self._quote_streams) + int(self._market_data)

    def close(self) -> None:
        """Release every subscription. Idempotent."""
        if self.state is SessionState.CLOSED:
            return
        for stream in self._quote_streams.values():
            self._services.quotes.close(stream)
        self._quote_streams.clear()
        if self._market_data:
            self._services.market.unsubscribe(id(self))
            self._market_data = False
        self.state = SessionState.CLOSED


def _quantity_lots(inst: Instrument, quantity: Decimal) -> int:
    try:
        if not quantity.is_finite() or quantity <= 0:
            raise InvalidDecimal(f"quantity must be a positive decimal, got {quantity}")
        lots = to_steps(quantity, inst.lot, what="quantity")
        inst.check_quantity(lots)
    except (InvalidDecimal, OffStep) as exc:
        raise ApiError(ErrorCode.INVALID_QUANTITY, str(exc)) from None
    return lots
