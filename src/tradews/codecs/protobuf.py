"""The Protobuf encoding: ``ClientMessage`` / ``ServerMessage`` in binary frames.

Decoding maps each ``ClientMessage`` member to the same method name and params (as a dict in the
API's field names) that the JSON-RPC codec yields, so the session validates and handles both
alike. Encoding maps each method's result struct, each error, and each push to its
``ServerMessage`` member. This module holds no trading logic: only the two translations.

Malformed input never raises out of :meth:`ProtobufCodec.decode`: bytes that do not parse are
error -32700; a message with no (or an unknown) payload member is -32600; wrong values (an
unspecified enum, a bad decimal) are -32602 or a 4001 rejection, exactly as in JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from google.protobuf.message import DecodeError

from tradews.api import messages as api
from tradews.api.errors import ApiError, ErrorCode
from tradews.codecs.base import Call, Frame, Id, Invalid
from tradews.codecs.pb import tradews_pb2 as pb
from tradews.codecs.push import Push

SIDES: dict[int, str] = {pb.SIDE_BUY: "buy", pb.SIDE_SELL: "sell"}
SIDE_VALUES: dict[str, Any] = {v: k for k, v in SIDES.items()}
TYPES: dict[int, str] = {pb.ORDER_TYPE_LIMIT: "limit", pb.ORDER_TYPE_MARKET: "market"}
TYPE_VALUES: dict[str, Any] = {v: k for k, v in TYPES.items()}
TIFS: dict[int, str] = {
    pb.TIME_IN_FORCE_GTC: "GTC",
    pb.TIME_IN_FORCE_IOC: "IOC",
    pb.TIME_IN_FORCE_FOK: "FOK",
}
TIF_VALUES: dict[str, Any] = {v: k for k, v in TIFS.items()}


def _enum(table: dict[int, str], value: int) -> str:
    # An unspecified or unknown enum value becomes a string the params struct refuses, so the
    # client gets -32602 naming the field, as JSON clients do for a bad value.
    return table.get(value, f"<unspecified {value}>")


def _put(d: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Set ``key`` unless ``value`` is proto3's "not given" (empty string, zero)."""
    if value:
        d[key] = value
    return d


def _order_ref(m: Any) -> dict[str, Any]:
    d: dict[str, Any] = {}
    _put(d, "orderId", m.order_id)
    return _put(d, "clientOrderId", m.client_order_id)


def _subscribe(m: pb.SubscribeRequest) -> tuple[str, dict[str, Any]]:
    target = m.WhichOneof("target")
    if target == "channel":
        d = _put(_put({}, "channel", m.channel), "depth", m.depth)
        if m.HasField("since"):  # 0 is a value here: from the first message kept
            d["since"] = m.since
        return "subscribe", d
    if target == "quotes":
        q = m.quotes
        d = _put(_put({}, "symbol", q.symbol), "type", q.type)
        return "quote_request", _put(d, "quantity", q.quantity)
    if target == "market_data":
        return "market_data_request", {}
    raise ApiError(ErrorCode.INVALID_PARAMS, data="SubscribeRequest needs a target")


def _unsubscribe(m: pb.UnsubscribeRequest) -> tuple[str, dict[str, Any]]:
    sub = m.subscription
    if sub == "market_data":
        return "market_data_cancel", {}
    if sub.startswith("q") and sub[1:].isdigit():
        return "quote_cancel", {"subscription": sub}
    return "unsubscribe", {"channel": sub}


def _order(m: pb.OrderRequest) -> tuple[str, dict[str, Any]]:
    d: dict[str, Any] = {
        "side": _enum(SIDES, m.side),
        "type": _enum(TYPES, m.type),
        "postOnly": m.post_only,
    }
    # proto3 cannot tell an empty string from a missing one: leave empty required fields out,
    # so that the client hears "missing field" exactly as a JSON client would.
    _put(d, "symbol", m.symbol)
    _put(d, "quantity", m.quantity)
    _put(d, "price", m.price)
    if m.time_in_force:
        d["timeInForce"] = _enum(TIFS, m.time_in_force)
    _put(d, "clientOrderId", m.client_order_id)
    return "order_place", d


def _amend(m: pb.AmendOrderRequest) -> tuple[str, dict[str, Any]]:
    d = _order_ref(m)
    _put(d, "price", m.price)
    _put(d, "quantity", m.quantity)
    return "order_amend", d


def _trades(m: pb.TradesRequest) -> tuple[str, dict[str, Any]]:
    d: dict[str, Any] = {}
    _put(d, "symbol", m.symbol)
    _put(d, "limit", m.limit)
    _put(d, "before", m.before)
    return "trades", d


def _login(m: pb.LoginRequest) -> tuple[str, dict[str, Any]]:
    d: dict[str, Any] = {}
    for key, value in (("apiKey", m.api_key), ("apiSecret", m.api_secret),
                       ("timestamp", m.timestamp), ("nonce", m.nonce),
                       ("signature", m.signature)):  # fmt: skip
        _put(d, key, value)
    return "rpc.login", d


_REQUESTS: dict[str, Callable[[Any], tuple[str, dict[str, Any]]]] = {
    "login": _login,
    "subscribe": _subscribe,
    "unsubscribe": _unsubscribe,
    "order": _order,
    "cancel": lambda m: ("order_cancel", _order_ref(m)),
    "cancel_all": lambda m: ("order_cancel_all", _put({}, "symbol", m.symbol)),
    "amend": _amend,
    "quote_accept": lambda m: (
        "quote_accept",
        _put({"side": _enum(SIDES, m.side)}, "quoteId", m.quote_id),
    ),
    "order_status": lambda m: ("order_status", _order_ref(m)),
    "open_orders": lambda m: ("orders_open", _put({}, "symbol", m.symbol)),
    "balances": lambda m: ("balances", {}),
    "trades": _trades,
    "heartbeat": lambda m: ("time", {}),
    "instruments": lambda m: ("instruments", {}),
    # proto3's false and 0 are values here (off, disarm), not "not given": always passed on.
    "cancel_on_disconnect": lambda m: ("cancel_on_disconnect", {"enabled": m.enabled}),
    "cancel_all_after": lambda m: ("cancel_all_after", {"timeoutMs": m.timeout_ms}),
    "logout": lambda m: ("rpc.logout", {}),
}


# Results -> ServerMessage ------------------------------------------------------------------


def _s(value: str | None) -> str:
    return "" if value is None else value


def order_state(o: api.OrderState) -> pb.OrderState:
    return pb.OrderState(
        order_id=o.order_id,
        client_order_id=_s(o.client_order_id),
        symbol=o.symbol,
        side=SIDE_VALUES[o.side],
        type=TYPE_VALUES[o.type],
        price=_s(o.price),
        quantity=o.quantity,
        filled_quantity=o.filled_quantity,
        remaining_quantity=o.remaining_quantity,
        time_in_force=TIF_VALUES[o.time_in_force],
        post_only=o.post_only,
        status=o.status,
        reason=_s(o.reason),
        created_at=o.created_at,
        updated_at=o.updated_at,
        seq=o.seq,
        stream_seq=o.stream_seq or 0,
    )


def fill(f: api.Fill) -> pb.Fill:
    return pb.Fill(
        trade_id=f.trade_id,
        order_id=f.order_id or 0,
        symbol=f.symbol,
        side=SIDE_VALUES[f.side],
        price=f.price,
        quantity=f.quantity,
        fee=f.fee,
        fee_asset=f.fee_asset,
        liquidity=f.liquidity,
        quote_id=_s(f.quote_id),
        timestamp=f.timestamp,
        seq=f.seq,
        stream_seq=f.stream_seq or 0,
    )


def balance(b: api.Balance) -> pb.Balance:
    return pb.Balance(
        asset=b.asset, available=b.available, locked=b.locked, stream_seq=b.stream_seq or 0
    )


def _fields(struct: msgspec.Struct, message: type[Any], **overrides: Any) -> Any:
    """Copy same-named fields (None -> proto3 default), for the plain market data messages."""
    values = {}
    for name in struct.__struct_fields__:
        value = overrides[name] if name in overrides else getattr(struct, name)
        if value is not None:
            values[name] = value
    return message(**values)


def _result(method: str, value: Any) -> pb.ServerMessage:
    m = pb.ServerMessage()
    if method == "rpc.login":
        m.login.SetInParent()
    elif method == "time":
        m.heartbeat.time = value.time
    elif method in ("quote_request", "market_data_request", "subscribe"):
        if isinstance(value, api.QuoteSubscription):
            m.subscribed.subscription = value.subscription
            m.subscribed.symbol = value.symbol
            m.subscribed.quantity = value.quantity
            m.subscribed.valid_for_ms = value.valid_for_ms
        elif isinstance(value, api.MarketDataSubscription):
            m.subscribed.subscription = value.subscription
            m.subscribed.symbols.extend(value.symbols)
            m.subscribed.interval_ms = value.interval_ms
        else:
            m.subscribed.subscription = value.channel
            if value.stream_seq is not None:
                m.subscribed.stream_seq = value.stream_seq
    elif method in ("order_place", "order_cancel", "order_amend", "order_status"):
        return pb.ServerMessage(order_response=pb.OrderResponse(order=order_state(value)))
    elif method == "quote_accept":
        return pb.ServerMessage(order_response=pb.OrderResponse(fill=fill(value)))
    elif method == "orders_open":
        m.order_response.orders.orders.extend(order_state(o) for o in value)
    elif method == "order_cancel_all":
        m.cancelled.order_ids.extend(value["cancelled"])
    elif method == "balances":
        m.balances.balances.extend(balance(b) for b in value)
    elif method == "trades":
        m.trades.fills.extend(fill(f) for f in value)
    elif method == "instruments":
        m.instruments.instruments.extend(_fields(i, pb.Instrument) for i in value)
    elif method == "cancel_on_disconnect":
        m.cancel_on_disconnect.SetInParent()
        m.cancel_on_disconnect.enabled = value.enabled
    elif method == "cancel_all_after":
        m.cancel_all_after.SetInParent()
        m.cancel_all_after.deadline = value.deadline or 0
    else:  # quote_cancel, market_data_cancel, unsubscribe, rpc.logout
        m.ack.SetInParent()
    return m


# Quote frames written straight to wire bytes (see QuoteDesk): a quote is the one message built
# per client, thousands per pulse. The desk encodes what streams share once per pulse and splices
# in the per-stream fields; the bytes equal SerializeToString of the same ServerMessage (fields
# in number order, defaults left out), which a property test checks.

_ONE_BYTE = [bytes((n,)) for n in range(0x80)]


def varint(n: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int."""
    if n < 0x80:
        return _ONE_BYTE[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def text_field(number: int, text: str) -> bytes:
    """A string field (wire type 2); proto3 leaves out an empty one."""
    if not text:
        return b""
    data = text.encode()
    return varint(number << 3 | 2) + varint(len(data)) + data


def int_field(number: int, value: int) -> bytes:
    """A non-negative integer field (wire type 0); proto3 leaves out a zero."""
    return varint(number << 3) + varint(value) if value else b""


def quote_frame(head: bytes, middle: bytes, id_prefix: bytes, seq_text: bytes,
                valid_until: bytes, seq: int, timestamp: bytes) -> bytes:  # fmt: skip
    """Assemble ``ServerMessage{market_data{quote{...}}}``: ``head`` is field 1 (subscription),
    ``middle`` fields 2-5 (symbol, prices, quantity), ``valid_until`` and ``timestamp`` fields 7
    and 9, all pre-encoded; the quote id (6), ``id_prefix`` then ``seq_text`` (``seq`` in ASCII
    decimal), and seq (8) are encoded here (seq is never 0). Lengths under 128 (a quote's,
    nearly always) take their one-byte varint without a call."""
    id_size = len(id_prefix) + len(seq_text)
    body = b"".join(
        (head, middle, b"\x32", _ONE_BYTE[id_size] if id_size < 0x80 else varint(id_size),
         id_prefix, seq_text, valid_until, b"\x40", varint(seq), timestamp)
    )  # fmt: skip
    size = len(body)
    update = b"".join((b"\x22", _ONE_BYTE[size] if size < 0x80 else varint(size), body))
    size = len(update)
    return b"".join((b"\x0a", _ONE_BYTE[size] if size < 0x80 else varint(size), update))


def _quote(q: api.Quote) -> pb.ServerMessage:
    # Built in one constructor call: no intermediate message is copied (the fan-out hot path).
    return pb.ServerMessage(
        market_data=pb.MarketUpdate(
            quote=pb.Quote(
                subscription=q.subscription,
                symbol=q.symbol,
                buy_price=q.buy_price,
                sell_price=q.sell_price,
                quantity=q.quantity,
                quote_id=q.quote_id,
                valid_until=q.valid_until,
                seq=q.seq,
                timestamp=q.timestamp,
            )
        )
    )


def _book(b: api.BookUpdate) -> pb.ServerMessage:
    level = pb.Level
    return pb.ServerMessage(
        market_data=pb.MarketUpdate(
            book=pb.BookUpdate(
                channel=b.channel,
                snapshot=b.type == "snapshot",
                symbol=b.symbol,
                seq=b.seq,
                prev_seq=b.prev_seq or 0,
                bids=[level(price=p, quantity=q) for p, q in b.bids],
                asks=[level(price=p, quantity=q) for p, q in b.asks],
                checksum=b.checksum,
            )
        )
    )


_PUSHES: dict[str, Callable[[Any], pb.ServerMessage]] = {
    "quote": _quote,
    "book": _book,
    "trades": lambda t: pb.ServerMessage(
        market_data=pb.MarketUpdate(
            trade=_fields(t, pb.PublicTrade, taker_side=SIDE_VALUES[t.taker_side])
        )
    ),
    "ticker": lambda t: pb.ServerMessage(market_data=pb.MarketUpdate(ticker=_fields(t, pb.Ticker))),
    "market_data": lambda d: pb.ServerMessage(
        market_data=pb.MarketUpdate(
            snapshot=pb.MarketDataSnapshot(
                seq=d.seq,
                timestamp=d.timestamp,
                instruments=[_fields(i, pb.InstrumentMarketData) for i in d.instruments],
            )
        )
    ),
    "orders": lambda o: pb.ServerMessage(order_response=pb.OrderResponse(order=order_state(o))),
    "fills": lambda f: pb.ServerMessage(order_response=pb.OrderResponse(fill=fill(f))),
    "balances": lambda b: pb.ServerMessage(balances=pb.BalancesResponse(balances=[balance(b)])),
    "warning": lambda w: pb.ServerMessage(warning=_fields(w, pb.ConnectionWarning)),
}


def _push(push: Push) -> pb.ServerMessage:
    return _PUSHES[push.kind](push.body)


def _error(call_id: Id, err: ApiError) -> pb.ServerMessage:
    m = pb.ServerMessage(request_id=call_id if isinstance(call_id, int) else 0)
    m.error.code = int(err.code)
    m.error.message = err.message
    if isinstance(err.data, dict):
        if "reason" in err.data:
            m.error.reason = str(err.data["reason"])
        if "retryAfter" in err.data:
            m.error.retry_after_ms = int(err.data["retryAfter"])
        if "serverTime" in err.data:
            m.error.server_time = int(err.data["serverTime"])
    elif err.data is not None:
        m.error.detail = str(err.data)
    return m


class ProtobufCodec:
    """``tradews.v1.proto``: one ClientMessage / ServerMessage per binary frame."""

    name = "proto"
    binary = True

    def decode(self, data: bytes, *, max_batch: int) -> Frame:
        try:
            message = pb.ClientMessage.FromString(data)
        except (DecodeError, ValueError) as exc:
            return Frame(
                [], False, ApiError(ErrorCode.PARSE_ERROR, data=f"not a ClientMessage: {exc}")
            )
        request_id = message.request_id
        member = message.WhichOneof("payload")
        if member is None:
            error = ApiError(
                ErrorCode.INVALID_REQUEST,
                data="ClientMessage has no payload this server knows",
            )
            return Frame([Invalid(error, request_id)], False)
        try:
            method, params = _REQUESTS[member](getattr(message, member))
        except ApiError as exc:
            return Frame([Invalid(exc, request_id)], False)
        return Frame([Call(method, params, request_id)], False)

    def result(self, call: Call, value: Any) -> Any:
        m = _result(call.method, value)
        m.request_id = call.id if isinstance(call.id, int) else 0
        return m

    def error(self, call_id: Id, err: ApiError) -> Any:
        return _error(call_id, err)

    def with_budget(self, reply: Any, budget: Any) -> Any:
        reply.rate_limit.remaining = budget.remaining
        reply.rate_limit.limit = budget.limit
        reply.rate_limit.reset_ms = budget.reset_ms
        return reply

    def pack(self, replies: list[Any], is_batch: bool) -> bytes:
        (reply,) = replies  # protobuf has no batches
        return bytes(reply.SerializeToString())

    def push(self, push: Push) -> bytes:
        return push.encoded("proto", lambda p: bytes(_push(p).SerializeToString()))


PROTOBUF = ProtobufCodec()


# The client's side: the same translations the other way round ------------------------------
# (used by tradews.client so that one client interface speaks both encodings)


class NotInProtobuf(Exception):
    """A JSON-RPC method with no protobuf form (``rpc.discover``)."""


def _str(params: dict[str, Any], key: str) -> str:
    value = params.get(key)
    return "" if value is None else str(value)


def request_message(
    method: str, params: dict[str, Any] | None, request_id: int
) -> pb.ClientMessage:
    """The ClientMessage for a JSON-RPC style call (method name and camelCase params)."""
    p = params or {}
    m = pb.ClientMessage(request_id=request_id)
    if method == "rpc.login":
        login = m.login
        login.api_key, login.api_secret = _str(p, "apiKey"), _str(p, "apiSecret")
        login.timestamp = int(p.get("timestamp") or 0)
        login.nonce, login.signature = _str(p, "nonce"), _str(p, "signature")
    elif method == "time":
        m.heartbeat.SetInParent()
    elif method == "instruments":
        m.instruments.SetInParent()
    elif method == "quote_request":
        q = m.subscribe.quotes
        q.symbol, q.type, q.quantity = _str(p, "symbol"), _str(p, "type"), _str(p, "quantity")
    elif method == "market_data_request":
        m.subscribe.market_data = True
    elif method == "subscribe":
        m.subscribe.channel = _str(p, "channel")
        m.subscribe.depth = int(p.get("depth") or 0)
        if p.get("since") is not None:
            m.subscribe.since = int(p["since"])
    elif method in ("quote_cancel", "market_data_cancel", "unsubscribe"):
        key = {"quote_cancel": "subscription", "unsubscribe": "channel"}.get(method)
        m.unsubscribe.subscription = _str(p, key) if key else "market_data"
    elif method == "order_place":
        o = m.order
        o.symbol, o.quantity, o.price = _str(p, "symbol"), _str(p, "quantity"), _str(p, "price")
        o.side = SIDE_VALUES.get(_str(p, "side"), 0)
        o.type = TYPE_VALUES.get(_str(p, "type"), 0)
        o.time_in_force = TIF_VALUES.get(_str(p, "timeInForce") or "GTC", 0)
        o.post_only = bool(p.get("postOnly", False))
        o.client_order_id = _str(p, "clientOrderId")
    elif method in ("order_cancel", "order_status", "order_amend"):
        target: Any = {"order_cancel": m.cancel, "order_status": m.order_status}.get(
            method, m.amend
        )
        target.order_id = int(p.get("orderId") or 0)
        target.client_order_id = _str(p, "clientOrderId")
        if method == "order_amend":
            m.amend.price, m.amend.quantity = _str(p, "price"), _str(p, "quantity")
    elif method == "order_cancel_all":
        m.cancel_all.symbol = _str(p, "symbol")
    elif method == "orders_open":
        m.open_orders.symbol = _str(p, "symbol")
    elif method == "balances":
        m.balances.SetInParent()
    elif method == "trades":
        m.trades.symbol = _str(p, "symbol")
        m.trades.limit = int(p.get("limit") or 0)
        m.trades.before = int(p.get("before") or 0)
    elif method == "quote_accept":
        m.quote_accept.quote_id = _str(p, "quoteId")
        m.quote_accept.side = SIDE_VALUES.get(_str(p, "side"), 0)
    elif method == "cancel_on_disconnect":
        m.cancel_on_disconnect.SetInParent()
        m.cancel_on_disconnect.enabled = bool(p.get("enabled"))
    elif method == "cancel_all_after":
        m.cancel_all_after.SetInParent()
        m.cancel_all_after.timeout_ms = int(p.get("timeoutMs") or 0)
    elif method == "rpc.logout":
        m.logout.SetInParent()
    else:
        raise NotInProtobuf(f"{method} has no protobuf form; use the JSON-RPC encoding")
    return m


def _none(value: str) -> str | None:
    return value or None


def order_dict(o: pb.OrderState) -> dict[str, Any]:
    return {
        "orderId": o.order_id,
        "clientOrderId": _none(o.client_order_id),
        "symbol": o.symbol,
        "side": SIDES.get(o.side),
        "type": TYPES.get(o.type),
        "price": _none(o.price),
        "quantity": o.quantity,
        "filledQuantity": o.filled_quantity,
        "remainingQuantity": o.remaining_quantity,
        "timeInForce": TIFS.get(o.time_in_force),
        "postOnly": o.post_only,
        "status": o.status,
        "reason": _none(o.reason),
        "createdAt": o.created_at,
        "updatedAt": o.updated_at,
        "seq": o.seq,
        **_stream_seq(o),
    }


def fill_dict(f: pb.Fill) -> dict[str, Any]:
    return {
        "tradeId": f.trade_id,
        "orderId": f.order_id or None,
        "symbol": f.symbol,
        "side": SIDES.get(f.side),
        "price": f.price,
        "quantity": f.quantity,
        "fee": f.fee,
        "feeAsset": f.fee_asset,
        "liquidity": f.liquidity,
        "quoteId": _none(f.quote_id),
        "timestamp": f.timestamp,
        "seq": f.seq,
        **_stream_seq(f),
    }


def _balance_dict(b: pb.Balance) -> dict[str, Any]:
    return {"asset": b.asset, "available": b.available, "locked": b.locked, **_stream_seq(b)}


def _stream_seq(m: Any) -> dict[str, int]:
    """``streamSeq`` where JSON has it: on private stream pushes, which start at 1."""
    return {"streamSeq": m.stream_seq} if m.stream_seq else {}


_TICKER_FIELDS = ("last", "bid", "bid_size", "ask", "ask_size", "open24h", "high24h", "low24h",
                  "change24h", "change24h_pct")  # fmt: skip
_MD_FIELDS = ("last", "bid", "ask", "open24h", "high24h", "low24h", "change24h", "change24h_pct")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _optional_fields(m: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {_camel(n): _none(getattr(m, n)) for n in names}


class ServerError(Exception):
    """An Error payload, for the client to raise as its own RpcError."""

    def __init__(self, code: int, message: str, data: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def response_value(method: str, m: pb.ServerMessage) -> Any:
    """The JSON-RPC ``result`` a ServerMessage answering ``method`` stands for; raises
    :class:`ServerError` for an Error payload."""
    member = m.WhichOneof("payload")
    if member == "error":
        e = m.error
        fields = {"reason": e.reason, "retryAfter": e.retry_after_ms, "serverTime": e.server_time}
        data: Any = {k: v for k, v in fields.items() if v} or e.detail or None
        raise ServerError(e.code, e.message, data)
    if member in ("login", "ack"):
        return True
    if member == "heartbeat":
        return {"time": m.heartbeat.time}
    if member == "subscribed":
        s = m.subscribed
        if method == "quote_request":
            return {"subscription": s.subscription, "symbol": s.symbol, "quantity": s.quantity,
                    "validForMs": s.valid_for_ms}  # fmt: skip
        if method == "market_data_request":
            return {"subscription": s.subscription, "symbols": list(s.symbols),
                    "intervalMs": s.interval_ms}  # fmt: skip
        if s.HasField("stream_seq"):
            return {"channel": s.subscription, "streamSeq": s.stream_seq}
        return {"channel": s.subscription}
    if member == "order_response":
        r = m.order_response
        kind = r.WhichOneof("kind")
        if kind == "order":
            return order_dict(r.order)
        if kind == "fill":
            return fill_dict(r.fill)
        return [order_dict(o) for o in r.orders.orders]
    if member == "cancelled":
        return {"cancelled": list(m.cancelled.order_ids)}
    if member == "cancel_on_disconnect":
        return {"enabled": m.cancel_on_disconnect.enabled}
    if member == "cancel_all_after":
        return {"deadline": m.cancel_all_after.deadline or None}
    if member == "balances":
        return [_balance_dict(b) for b in m.balances.balances]
    if member == "trades":
        return [fill_dict(f) for f in m.trades.fills]
    if member == "instruments":
        return [
            {"symbol": i.symbol, "base": i.base, "quote": i.quote, "tick": i.tick, "lot": i.lot,
             "minSize": i.min_size, "maxSize": _none(i.max_size), "quoteSize": i.quote_size}
            for i in m.instruments.instruments
        ]  # fmt: skip
    raise ValueError(f"unexpected reply {member!r} to {method}")


def push_notifications(m: pb.ServerMessage) -> list[tuple[str, Any]]:
    """The JSON-RPC notifications (method, params) a pushed ServerMessage stands for."""
    member = m.WhichOneof("payload")
    if member == "market_data":
        u = m.market_data
        kind = u.WhichOneof("update")
        if kind == "quote":
            q = u.quote
            return [("quote", {
                "subscription": q.subscription, "symbol": q.symbol, "buyPrice": q.buy_price,
                "sellPrice": q.sell_price, "quantity": q.quantity, "quoteId": q.quote_id,
                "validUntil": q.valid_until, "seq": q.seq, "timestamp": q.timestamp,
            })]  # fmt: skip
        if kind == "book":
            b = u.book
            return [("book", {
                "channel": b.channel, "type": "snapshot" if b.snapshot else "delta",
                "symbol": b.symbol, "seq": b.seq,
                "prevSeq": None if b.snapshot else b.prev_seq,
                "bids": [[lv.price, lv.quantity] for lv in b.bids],
                "asks": [[lv.price, lv.quantity] for lv in b.asks], "checksum": b.checksum,
            })]  # fmt: skip
        if kind == "trade":
            t = u.trade
            return [("trades", {
                "tradeId": t.trade_id, "symbol": t.symbol, "price": t.price,
                "quantity": t.quantity, "takerSide": SIDES.get(t.taker_side),
                "timestamp": t.timestamp, "seq": t.seq,
            })]  # fmt: skip
        if kind == "ticker":
            k = u.ticker
            return [("ticker", {"channel": k.channel, "symbol": k.symbol,
                                **_optional_fields(k, _TICKER_FIELDS),
                                "volume24h": k.volume24h, "timestamp": k.timestamp})]  # fmt: skip
        s = u.snapshot
        rows = [
            {"symbol": i.symbol, **_optional_fields(i, _MD_FIELDS), "volume24h": i.volume24h,
             "timestamp": i.timestamp}
            for i in s.instruments
        ]  # fmt: skip
        return [("market_data", {"seq": s.seq, "timestamp": s.timestamp, "instruments": rows})]
    if member == "order_response":
        r = m.order_response
        if r.WhichOneof("kind") == "fill":
            return [("fills", fill_dict(r.fill))]
        return [("orders", order_dict(r.order))]
    if member == "balances":
        return [("balances", _balance_dict(b)) for b in m.balances.balances]
    if member == "warning":
        w = m.warning
        return [
            (
                "warning",
                {
                    "code": w.code,
                    "message": w.message,
                    "bufferedBytes": w.buffered_bytes,
                    "limitBytes": w.limit_bytes,
                },
            )
        ]
    return []
