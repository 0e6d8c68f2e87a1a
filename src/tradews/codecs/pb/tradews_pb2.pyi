from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Side(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIDE_UNSPECIFIED: _ClassVar[Side]
    SIDE_BUY: _ClassVar[Side]
    SIDE_SELL: _ClassVar[Side]

class OrderType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_TYPE_UNSPECIFIED: _ClassVar[OrderType]
    ORDER_TYPE_LIMIT: _ClassVar[OrderType]
    ORDER_TYPE_MARKET: _ClassVar[OrderType]

class TimeInForce(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIME_IN_FORCE_UNSPECIFIED: _ClassVar[TimeInForce]
    TIME_IN_FORCE_GTC: _ClassVar[TimeInForce]
    TIME_IN_FORCE_IOC: _ClassVar[TimeInForce]
    TIME_IN_FORCE_FOK: _ClassVar[TimeInForce]
SIDE_UNSPECIFIED: Side
SIDE_BUY: Side
SIDE_SELL: Side
ORDER_TYPE_UNSPECIFIED: OrderType
ORDER_TYPE_LIMIT: OrderType
ORDER_TYPE_MARKET: OrderType
TIME_IN_FORCE_UNSPECIFIED: TimeInForce
TIME_IN_FORCE_GTC: TimeInForce
TIME_IN_FORCE_IOC: TimeInForce
TIME_IN_FORCE_FOK: TimeInForce

class ClientMessage(_message.Message):
    __slots__ = ("request_id", "subscribe", "order", "login", "unsubscribe", "cancel", "cancel_all", "amend", "quote_accept", "order_status", "open_orders", "balances", "trades", "heartbeat", "instruments", "cancel_on_disconnect", "cancel_all_after", "logout")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    LOGIN_FIELD_NUMBER: _ClassVar[int]
    UNSUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    CANCEL_ALL_FIELD_NUMBER: _ClassVar[int]
    AMEND_FIELD_NUMBER: _ClassVar[int]
    QUOTE_ACCEPT_FIELD_NUMBER: _ClassVar[int]
    ORDER_STATUS_FIELD_NUMBER: _ClassVar[int]
    OPEN_ORDERS_FIELD_NUMBER: _ClassVar[int]
    BALANCES_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    CANCEL_ON_DISCONNECT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_ALL_AFTER_FIELD_NUMBER: _ClassVar[int]
    LOGOUT_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    subscribe: SubscribeRequest
    order: OrderRequest
    login: LoginRequest
    unsubscribe: UnsubscribeRequest
    cancel: CancelOrderRequest
    cancel_all: CancelAllRequest
    amend: AmendOrderRequest
    quote_accept: QuoteAcceptRequest
    order_status: OrderStatusRequest
    open_orders: OpenOrdersRequest
    balances: BalancesRequest
    trades: TradesRequest
    heartbeat: Heartbeat
    instruments: InstrumentsRequest
    cancel_on_disconnect: CancelOnDisconnectRequest
    cancel_all_after: CancelAllAfterRequest
    logout: LogoutRequest
    def __init__(self, request_id: _Optional[int] = ..., subscribe: _Optional[_Union[SubscribeRequest, _Mapping]] = ..., order: _Optional[_Union[OrderRequest, _Mapping]] = ..., login: _Optional[_Union[LoginRequest, _Mapping]] = ..., unsubscribe: _Optional[_Union[UnsubscribeRequest, _Mapping]] = ..., cancel: _Optional[_Union[CancelOrderRequest, _Mapping]] = ..., cancel_all: _Optional[_Union[CancelAllRequest, _Mapping]] = ..., amend: _Optional[_Union[AmendOrderRequest, _Mapping]] = ..., quote_accept: _Optional[_Union[QuoteAcceptRequest, _Mapping]] = ..., order_status: _Optional[_Union[OrderStatusRequest, _Mapping]] = ..., open_orders: _Optional[_Union[OpenOrdersRequest, _Mapping]] = ..., balances: _Optional[_Union[BalancesRequest, _Mapping]] = ..., trades: _Optional[_Union[TradesRequest, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., instruments: _Optional[_Union[InstrumentsRequest, _Mapping]] = ..., cancel_on_disconnect: _Optional[_Union[CancelOnDisconnectRequest, _Mapping]] = ..., cancel_all_after: _Optional[_Union[CancelAllAfterRequest, _Mapping]] = ..., logout: _Optional[_Union[LogoutRequest, _Mapping]] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("request_id", "market_data", "order_response", "error", "login", "subscribed", "ack", "balances", "trades", "heartbeat", "instruments", "cancelled", "warning", "cancel_on_disconnect", "cancel_all_after", "rate_limit")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MARKET_DATA_FIELD_NUMBER: _ClassVar[int]
    ORDER_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LOGIN_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBED_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    BALANCES_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    WARNING_FIELD_NUMBER: _ClassVar[int]
    CANCEL_ON_DISCONNECT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_ALL_AFTER_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    market_data: MarketUpdate
    order_response: OrderResponse
    error: Error
    login: LoginResponse
    subscribed: SubscribeResponse
    ack: Ack
    balances: BalancesResponse
    trades: TradesResponse
    heartbeat: Heartbeat
    instruments: InstrumentsResponse
    cancelled: CancelAllResponse
    warning: ConnectionWarning
    cancel_on_disconnect: CancelOnDisconnectResponse
    cancel_all_after: CancelAllAfterResponse
    rate_limit: RateLimit
    def __init__(self, request_id: _Optional[int] = ..., market_data: _Optional[_Union[MarketUpdate, _Mapping]] = ..., order_response: _Optional[_Union[OrderResponse, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., login: _Optional[_Union[LoginResponse, _Mapping]] = ..., subscribed: _Optional[_Union[SubscribeResponse, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., balances: _Optional[_Union[BalancesResponse, _Mapping]] = ..., trades: _Optional[_Union[TradesResponse, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., instruments: _Optional[_Union[InstrumentsResponse, _Mapping]] = ..., cancelled: _Optional[_Union[CancelAllResponse, _Mapping]] = ..., warning: _Optional[_Union[ConnectionWarning, _Mapping]] = ..., cancel_on_disconnect: _Optional[_Union[CancelOnDisconnectResponse, _Mapping]] = ..., cancel_all_after: _Optional[_Union[CancelAllAfterResponse, _Mapping]] = ..., rate_limit: _Optional[_Union[RateLimit, _Mapping]] = ...) -> None: ...

class LoginRequest(_message.Message):
    __slots__ = ("api_key", "api_secret", "timestamp", "nonce", "signature")
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    API_SECRET_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    api_key: str
    api_secret: str
    timestamp: int
    nonce: str
    signature: str
    def __init__(self, api_key: _Optional[str] = ..., api_secret: _Optional[str] = ..., timestamp: _Optional[int] = ..., nonce: _Optional[str] = ..., signature: _Optional[str] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("channel", "quotes", "market_data", "depth", "since")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    QUOTES_FIELD_NUMBER: _ClassVar[int]
    MARKET_DATA_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    channel: str
    quotes: QuoteStreamRequest
    market_data: bool
    depth: int
    since: int
    def __init__(self, channel: _Optional[str] = ..., quotes: _Optional[_Union[QuoteStreamRequest, _Mapping]] = ..., market_data: _Optional[bool] = ..., depth: _Optional[int] = ..., since: _Optional[int] = ...) -> None: ...

class QuoteStreamRequest(_message.Message):
    __slots__ = ("symbol", "type", "quantity")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    type: str
    quantity: str
    def __init__(self, symbol: _Optional[str] = ..., type: _Optional[str] = ..., quantity: _Optional[str] = ...) -> None: ...

class UnsubscribeRequest(_message.Message):
    __slots__ = ("subscription",)
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    subscription: str
    def __init__(self, subscription: _Optional[str] = ...) -> None: ...

class OrderRequest(_message.Message):
    __slots__ = ("symbol", "side", "type", "quantity", "price", "time_in_force", "post_only", "client_order_id")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    POST_ONLY_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    side: Side
    type: OrderType
    quantity: str
    price: str
    time_in_force: TimeInForce
    post_only: bool
    client_order_id: str
    def __init__(self, symbol: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., type: _Optional[_Union[OrderType, str]] = ..., quantity: _Optional[str] = ..., price: _Optional[str] = ..., time_in_force: _Optional[_Union[TimeInForce, str]] = ..., post_only: _Optional[bool] = ..., client_order_id: _Optional[str] = ...) -> None: ...

class CancelOrderRequest(_message.Message):
    __slots__ = ("order_id", "client_order_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    client_order_id: str
    def __init__(self, order_id: _Optional[int] = ..., client_order_id: _Optional[str] = ...) -> None: ...

class CancelAllRequest(_message.Message):
    __slots__ = ("symbol",)
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    def __init__(self, symbol: _Optional[str] = ...) -> None: ...

class AmendOrderRequest(_message.Message):
    __slots__ = ("order_id", "client_order_id", "price", "quantity")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    client_order_id: str
    price: str
    quantity: str
    def __init__(self, order_id: _Optional[int] = ..., client_order_id: _Optional[str] = ..., price: _Optional[str] = ..., quantity: _Optional[str] = ...) -> None: ...

class QuoteAcceptRequest(_message.Message):
    __slots__ = ("quote_id", "side")
    QUOTE_ID_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    quote_id: str
    side: Side
    def __init__(self, quote_id: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ...) -> None: ...

class OrderStatusRequest(_message.Message):
    __slots__ = ("order_id", "client_order_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    client_order_id: str
    def __init__(self, order_id: _Optional[int] = ..., client_order_id: _Optional[str] = ...) -> None: ...

class OpenOrdersRequest(_message.Message):
    __slots__ = ("symbol",)
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    def __init__(self, symbol: _Optional[str] = ...) -> None: ...

class BalancesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TradesRequest(_message.Message):
    __slots__ = ("symbol", "limit", "before")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    limit: int
    before: int
    def __init__(self, symbol: _Optional[str] = ..., limit: _Optional[int] = ..., before: _Optional[int] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("time",)
    TIME_FIELD_NUMBER: _ClassVar[int]
    time: int
    def __init__(self, time: _Optional[int] = ...) -> None: ...

class InstrumentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CancelOnDisconnectRequest(_message.Message):
    __slots__ = ("enabled",)
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    def __init__(self, enabled: _Optional[bool] = ...) -> None: ...

class CancelAllAfterRequest(_message.Message):
    __slots__ = ("timeout_ms",)
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    timeout_ms: int
    def __init__(self, timeout_ms: _Optional[int] = ...) -> None: ...

class LogoutRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message", "reason", "detail", "server_time", "retry_after_ms")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    reason: str
    detail: str
    server_time: int
    retry_after_ms: int
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ..., server_time: _Optional[int] = ..., retry_after_ms: _Optional[int] = ...) -> None: ...

class RateLimit(_message.Message):
    __slots__ = ("remaining", "limit", "reset_ms")
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    RESET_MS_FIELD_NUMBER: _ClassVar[int]
    remaining: int
    limit: int
    reset_ms: int
    def __init__(self, remaining: _Optional[int] = ..., limit: _Optional[int] = ..., reset_ms: _Optional[int] = ...) -> None: ...

class ConnectionWarning(_message.Message):
    __slots__ = ("code", "message", "buffered_bytes", "limit_bytes")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    BUFFERED_BYTES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    buffered_bytes: int
    limit_bytes: int
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., buffered_bytes: _Optional[int] = ..., limit_bytes: _Optional[int] = ...) -> None: ...

class LoginResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("subscription", "symbol", "quantity", "valid_for_ms", "symbols", "interval_ms", "stream_seq")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    VALID_FOR_MS_FIELD_NUMBER: _ClassVar[int]
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    STREAM_SEQ_FIELD_NUMBER: _ClassVar[int]
    subscription: str
    symbol: str
    quantity: str
    valid_for_ms: int
    symbols: _containers.RepeatedScalarFieldContainer[str]
    interval_ms: int
    stream_seq: int
    def __init__(self, subscription: _Optional[str] = ..., symbol: _Optional[str] = ..., quantity: _Optional[str] = ..., valid_for_ms: _Optional[int] = ..., symbols: _Optional[_Iterable[str]] = ..., interval_ms: _Optional[int] = ..., stream_seq: _Optional[int] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CancelOnDisconnectResponse(_message.Message):
    __slots__ = ("enabled",)
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    def __init__(self, enabled: _Optional[bool] = ...) -> None: ...

class CancelAllAfterResponse(_message.Message):
    __slots__ = ("deadline",)
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    deadline: int
    def __init__(self, deadline: _Optional[int] = ...) -> None: ...

class CancelAllResponse(_message.Message):
    __slots__ = ("order_ids",)
    ORDER_IDS_FIELD_NUMBER: _ClassVar[int]
    order_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, order_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class Balance(_message.Message):
    __slots__ = ("asset", "available", "locked", "stream_seq")
    ASSET_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    LOCKED_FIELD_NUMBER: _ClassVar[int]
    STREAM_SEQ_FIELD_NUMBER: _ClassVar[int]
    asset: str
    available: str
    locked: str
    stream_seq: int
    def __init__(self, asset: _Optional[str] = ..., available: _Optional[str] = ..., locked: _Optional[str] = ..., stream_seq: _Optional[int] = ...) -> None: ...

class BalancesResponse(_message.Message):
    __slots__ = ("balances",)
    BALANCES_FIELD_NUMBER: _ClassVar[int]
    balances: _containers.RepeatedCompositeFieldContainer[Balance]
    def __init__(self, balances: _Optional[_Iterable[_Union[Balance, _Mapping]]] = ...) -> None: ...

class TradesResponse(_message.Message):
    __slots__ = ("fills",)
    FILLS_FIELD_NUMBER: _ClassVar[int]
    fills: _containers.RepeatedCompositeFieldContainer[Fill]
    def __init__(self, fills: _Optional[_Iterable[_Union[Fill, _Mapping]]] = ...) -> None: ...

class Instrument(_message.Message):
    __slots__ = ("symbol", "base", "quote", "tick", "lot", "min_size", "max_size", "quote_size")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    TICK_FIELD_NUMBER: _ClassVar[int]
    LOT_FIELD_NUMBER: _ClassVar[int]
    MIN_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_SIZE_FIELD_NUMBER: _ClassVar[int]
    QUOTE_SIZE_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    base: str
    quote: str
    tick: str
    lot: str
    min_size: str
    max_size: str
    quote_size: str
    def __init__(self, symbol: _Optional[str] = ..., base: _Optional[str] = ..., quote: _Optional[str] = ..., tick: _Optional[str] = ..., lot: _Optional[str] = ..., min_size: _Optional[str] = ..., max_size: _Optional[str] = ..., quote_size: _Optional[str] = ...) -> None: ...

class InstrumentsResponse(_message.Message):
    __slots__ = ("instruments",)
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedCompositeFieldContainer[Instrument]
    def __init__(self, instruments: _Optional[_Iterable[_Union[Instrument, _Mapping]]] = ...) -> None: ...

class OrderResponse(_message.Message):
    __slots__ = ("order", "fill", "orders")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    FILL_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    order: OrderState
    fill: Fill
    orders: OrderList
    def __init__(self, order: _Optional[_Union[OrderState, _Mapping]] = ..., fill: _Optional[_Union[Fill, _Mapping]] = ..., orders: _Optional[_Union[OrderList, _Mapping]] = ...) -> None: ...

class OrderState(_message.Message):
    __slots__ = ("order_id", "client_order_id", "symbol", "side", "type", "price", "quantity", "filled_quantity", "remaining_quantity", "time_in_force", "post_only", "status", "reason", "created_at", "updated_at", "seq", "stream_seq")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    FILLED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    REMAINING_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    POST_ONLY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STREAM_SEQ_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    price: str
    quantity: str
    filled_quantity: str
    remaining_quantity: str
    time_in_force: TimeInForce
    post_only: bool
    status: str
    reason: str
    created_at: int
    updated_at: int
    seq: int
    stream_seq: int
    def __init__(self, order_id: _Optional[int] = ..., client_order_id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., type: _Optional[_Union[OrderType, str]] = ..., price: _Optional[str] = ..., quantity: _Optional[str] = ..., filled_quantity: _Optional[str] = ..., remaining_quantity: _Optional[str] = ..., time_in_force: _Optional[_Union[TimeInForce, str]] = ..., post_only: _Optional[bool] = ..., status: _Optional[str] = ..., reason: _Optional[str] = ..., created_at: _Optional[int] = ..., updated_at: _Optional[int] = ..., seq: _Optional[int] = ..., stream_seq: _Optional[int] = ...) -> None: ...

class OrderList(_message.Message):
    __slots__ = ("orders",)
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[OrderState]
    def __init__(self, orders: _Optional[_Iterable[_Union[OrderState, _Mapping]]] = ...) -> None: ...

class Fill(_message.Message):
    __slots__ = ("trade_id", "order_id", "symbol", "side", "price", "quantity", "fee", "fee_asset", "liquidity", "quote_id", "timestamp", "seq", "stream_seq")
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    FEE_FIELD_NUMBER: _ClassVar[int]
    FEE_ASSET_FIELD_NUMBER: _ClassVar[int]
    LIQUIDITY_FIELD_NUMBER: _ClassVar[int]
    QUOTE_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STREAM_SEQ_FIELD_NUMBER: _ClassVar[int]
    trade_id: int
    order_id: int
    symbol: str
    side: Side
    price: str
    quantity: str
    fee: str
    fee_asset: str
    liquidity: str
    quote_id: str
    timestamp: int
    seq: int
    stream_seq: int
    def __init__(self, trade_id: _Optional[int] = ..., order_id: _Optional[int] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., price: _Optional[str] = ..., quantity: _Optional[str] = ..., fee: _Optional[str] = ..., fee_asset: _Optional[str] = ..., liquidity: _Optional[str] = ..., quote_id: _Optional[str] = ..., timestamp: _Optional[int] = ..., seq: _Optional[int] = ..., stream_seq: _Optional[int] = ...) -> None: ...

class MarketUpdate(_message.Message):
    __slots__ = ("book", "trade", "ticker", "quote", "snapshot")
    BOOK_FIELD_NUMBER: _ClassVar[int]
    TRADE_FIELD_NUMBER: _ClassVar[int]
    TICKER_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    book: BookUpdate
    trade: PublicTrade
    ticker: Ticker
    quote: Quote
    snapshot: MarketDataSnapshot
    def __init__(self, book: _Optional[_Union[BookUpdate, _Mapping]] = ..., trade: _Optional[_Union[PublicTrade, _Mapping]] = ..., ticker: _Optional[_Union[Ticker, _Mapping]] = ..., quote: _Optional[_Union[Quote, _Mapping]] = ..., snapshot: _Optional[_Union[MarketDataSnapshot, _Mapping]] = ...) -> None: ...

class Level(_message.Message):
    __slots__ = ("price", "quantity")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    price: str
    quantity: str
    def __init__(self, price: _Optional[str] = ..., quantity: _Optional[str] = ...) -> None: ...

class BookUpdate(_message.Message):
    __slots__ = ("channel", "snapshot", "symbol", "seq", "prev_seq", "bids", "asks", "checksum")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PREV_SEQ_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    channel: str
    snapshot: bool
    symbol: str
    seq: int
    prev_seq: int
    bids: _containers.RepeatedCompositeFieldContainer[Level]
    asks: _containers.RepeatedCompositeFieldContainer[Level]
    checksum: int
    def __init__(self, channel: _Optional[str] = ..., snapshot: _Optional[bool] = ..., symbol: _Optional[str] = ..., seq: _Optional[int] = ..., prev_seq: _Optional[int] = ..., bids: _Optional[_Iterable[_Union[Level, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[Level, _Mapping]]] = ..., checksum: _Optional[int] = ...) -> None: ...

class PublicTrade(_message.Message):
    __slots__ = ("trade_id", "symbol", "price", "quantity", "taker_side", "timestamp", "seq")
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TAKER_SIDE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    trade_id: int
    symbol: str
    price: str
    quantity: str
    taker_side: Side
    timestamp: int
    seq: int
    def __init__(self, trade_id: _Optional[int] = ..., symbol: _Optional[str] = ..., price: _Optional[str] = ..., quantity: _Optional[str] = ..., taker_side: _Optional[_Union[Side, str]] = ..., timestamp: _Optional[int] = ..., seq: _Optional[int] = ...) -> None: ...

class Ticker(_message.Message):
    __slots__ = ("channel", "symbol", "last", "bid", "bid_size", "ask", "ask_size", "open24h", "high24h", "low24h", "volume24h", "change24h", "change24h_pct", "timestamp")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    BID_FIELD_NUMBER: _ClassVar[int]
    BID_SIZE_FIELD_NUMBER: _ClassVar[int]
    ASK_FIELD_NUMBER: _ClassVar[int]
    ASK_SIZE_FIELD_NUMBER: _ClassVar[int]
    OPEN24H_FIELD_NUMBER: _ClassVar[int]
    HIGH24H_FIELD_NUMBER: _ClassVar[int]
    LOW24H_FIELD_NUMBER: _ClassVar[int]
    VOLUME24H_FIELD_NUMBER: _ClassVar[int]
    CHANGE24H_FIELD_NUMBER: _ClassVar[int]
    CHANGE24H_PCT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    channel: str
    symbol: str
    last: str
    bid: str
    bid_size: str
    ask: str
    ask_size: str
    open24h: str
    high24h: str
    low24h: str
    volume24h: str
    change24h: str
    change24h_pct: str
    timestamp: int
    def __init__(self, channel: _Optional[str] = ..., symbol: _Optional[str] = ..., last: _Optional[str] = ..., bid: _Optional[str] = ..., bid_size: _Optional[str] = ..., ask: _Optional[str] = ..., ask_size: _Optional[str] = ..., open24h: _Optional[str] = ..., high24h: _Optional[str] = ..., low24h: _Optional[str] = ..., volume24h: _Optional[str] = ..., change24h: _Optional[str] = ..., change24h_pct: _Optional[str] = ..., timestamp: _Optional[int] = ...) -> None: ...

class Quote(_message.Message):
    __slots__ = ("subscription", "symbol", "buy_price", "sell_price", "quantity", "quote_id", "valid_until", "seq", "timestamp")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    BUY_PRICE_FIELD_NUMBER: _ClassVar[int]
    SELL_PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    QUOTE_ID_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    subscription: str
    symbol: str
    buy_price: str
    sell_price: str
    quantity: str
    quote_id: str
    valid_until: int
    seq: int
    timestamp: int
    def __init__(self, subscription: _Optional[str] = ..., symbol: _Optional[str] = ..., buy_price: _Optional[str] = ..., sell_price: _Optional[str] = ..., quantity: _Optional[str] = ..., quote_id: _Optional[str] = ..., valid_until: _Optional[int] = ..., seq: _Optional[int] = ..., timestamp: _Optional[int] = ...) -> None: ...

class InstrumentMarketData(_message.Message):
    __slots__ = ("symbol", "last", "bid", "ask", "open24h", "high24h", "low24h", "volume24h", "change24h", "change24h_pct", "timestamp")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    BID_FIELD_NUMBER: _ClassVar[int]
    ASK_FIELD_NUMBER: _ClassVar[int]
    OPEN24H_FIELD_NUMBER: _ClassVar[int]
    HIGH24H_FIELD_NUMBER: _ClassVar[int]
    LOW24H_FIELD_NUMBER: _ClassVar[int]
    VOLUME24H_FIELD_NUMBER: _ClassVar[int]
    CHANGE24H_FIELD_NUMBER: _ClassVar[int]
    CHANGE24H_PCT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    last: str
    bid: str
    ask: str
    open24h: str
    high24h: str
    low24h: str
    volume24h: str
    change24h: str
    change24h_pct: str
    timestamp: int
    def __init__(self, symbol: _Optional[str] = ..., last: _Optional[str] = ..., bid: _Optional[str] = ..., ask: _Optional[str] = ..., open24h: _Optional[str] = ..., high24h: _Optional[str] = ..., low24h: _Optional[str] = ..., volume24h: _Optional[str] = ..., change24h: _Optional[str] = ..., change24h_pct: _Optional[str] = ..., timestamp: _Optional[int] = ...) -> None: ...

class MarketDataSnapshot(_message.Message):
    __slots__ = ("seq", "timestamp", "instruments")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    timestamp: int
    instruments: _containers.RepeatedCompositeFieldContainer[InstrumentMarketData]
    def __init__(self, seq: _Optional[int] = ..., timestamp: _Optional[int] = ..., instruments: _Optional[_Iterable[_Union[InstrumentMarketData, _Mapping]]] = ...) -> None: ...
