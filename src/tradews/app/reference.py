"""The protocol reference (``docs/reference.md``): every method, notification, message and field
in both encodings, each with an example.

It is generated from the method table (``METHODS``), the message types (through the OpenRPC
document's JSON Schemas), the Protobuf codec and the ``.proto`` schema, so it cannot drift from
them: ``python -m tradews.app.reference > docs/reference.md`` (``make docs``) writes it, and
tests/unit/test_reference.py fails when the committed file is stale. The example requests
(:data:`EXAMPLES`) are real: tests/e2e/test_reference.py sends them, in order, to a demo server
in both encodings and checks each is answered with a result in the ``ServerMessage`` member
documented here (:data:`REPLY_MEMBER`).
"""

from __future__ import annotations

import functools
import json
import re
import sys
from dataclasses import dataclass
from typing import Any

import msgspec
from google.protobuf import text_format
from google.protobuf.descriptor import FieldDescriptor

from tradews.api.errors import ErrorCode
from tradews.app.asyncapi import STREAMS
from tradews.app.openrpc import NOTIFICATIONS, openrpc_document
from tradews.codecs.jsonrpc import JSON
from tradews.codecs.pb import tradews_pb2 as pb
from tradews.codecs.protobuf import (
    PROTOBUF,
    SIDES,
    TIFS,
    TYPES,
    NotInProtobuf,
    request_message,
)
from tradews.codecs.push import Push
from tradews.domain.orders import Reject
from tradews.session.session import METHODS, Method, rejected

# Placeholders the example requests carry where a live value goes; tests/e2e/test_reference.py
# puts the demo key, its secret and a quote id of the running stream in their place.
API_KEY = "tw_0123456789abcdef0123"
API_SECRET = "your-api-secret"
QUOTE_ID = "Yk3x9Qa1-1"


@dataclass(frozen=True, slots=True)
class Example:
    method: str
    params: dict[str, Any] | None = None


# One session that uses every method, in an order in which each call succeeds on a demo server:
# log in, read, stream quotes and accept one, place / amend / cancel an order, then log out.
EXAMPLES: list[Example] = [
    Example("rpc.login", {"apiKey": API_KEY, "apiSecret": API_SECRET}),
    Example("time"),
    Example("rpc.discover"),
    Example("instruments"),
    Example("quote_request", {"symbol": "BTC_USD", "type": "RFQ", "quantity": "0.0100"}),
    Example("quote_accept", {"quoteId": QUOTE_ID, "side": "buy"}),
    Example("quote_cancel", {"subscription": "q1"}),
    Example("market_data_request"),
    Example("market_data_cancel"),
    Example(
        "order_place",
        {
            "symbol": "BTC_USD",
            "side": "buy",
            "type": "limit",
            "quantity": "0.0100",
            "price": "30000.00",
            "timeInForce": "GTC",
            "clientOrderId": "ref-1",
        },
    ),  # fmt: skip
    Example("order_status", {"clientOrderId": "ref-1"}),
    Example("order_amend", {"clientOrderId": "ref-1", "price": "30100.00"}),
    Example("orders_open", {"symbol": "BTC_USD"}),
    Example("order_cancel", {"clientOrderId": "ref-1"}),
    Example("order_cancel_all", {"symbol": "BTC_USD"}),
    Example("balances"),
    Example("trades", {"symbol": "BTC_USD", "limit": 10}),
    Example("cancel_on_disconnect", {"enabled": True}),
    Example("cancel_all_after", {"timeoutMs": 60000}),
    Example("subscribe", {"channel": "book.BTC_USD", "depth": 10}),
    Example("unsubscribe", {"channel": "book.BTC_USD"}),
    Example("rpc.logout"),
]

# The ServerMessage member each method's reply arrives in ("member.kind" for OrderResponse's
# oneof); None: the method has no Protobuf form.
REPLY_MEMBER: dict[str, str | None] = {
    "rpc.login": "login",
    "time": "heartbeat",
    "rpc.logout": "ack",
    "rpc.discover": None,
    "instruments": "instruments",
    "quote_request": "subscribed",
    "quote_cancel": "ack",
    "quote_accept": "order_response.fill",
    "market_data_request": "subscribed",
    "market_data_cancel": "ack",
    "order_place": "order_response.order",
    "order_cancel": "order_response.order",
    "order_cancel_all": "cancelled",
    "order_amend": "order_response.order",
    "order_status": "order_response.order",
    "orders_open": "order_response.orders",
    "balances": "balances",
    "trades": "trades",
    "cancel_on_disconnect": "cancel_on_disconnect",
    "cancel_all_after": "cancel_all_after",
    "subscribe": "subscribed",
    "unsubscribe": "ack",
}

# The ServerMessage member each notification arrives in ("member.kind" for the oneof of
# MarketUpdate or OrderResponse).
PUSH_MEMBER: dict[str, str] = {
    "quote": "market_data.quote",
    "market_data": "market_data.snapshot",
    "book": "market_data.book",
    "trades": "market_data.trade",
    "ticker": "market_data.ticker",
    "orders": "order_response.order",
    "fills": "order_response.fill",
    "balances": "balances",
    "warning": "warning",
}

# The Protobuf message that carries each JSON type's fields (same names in snake_case).
PROTO_MESSAGES: dict[str, Any] = {  # descriptors
    "LoginParams": pb.LoginRequest.DESCRIPTOR,
    "QuoteRequestParams": pb.QuoteStreamRequest.DESCRIPTOR,
    "SubscriptionParams": pb.UnsubscribeRequest.DESCRIPTOR,
    "QuoteAcceptParams": pb.QuoteAcceptRequest.DESCRIPTOR,
    "OrderPlaceParams": pb.OrderRequest.DESCRIPTOR,
    "OrderRefParams": pb.OrderStatusRequest.DESCRIPTOR,
    "OrderAmendParams": pb.AmendOrderRequest.DESCRIPTOR,
    "SymbolFilterParams": pb.OpenOrdersRequest.DESCRIPTOR,
    "TradesParams": pb.TradesRequest.DESCRIPTOR,
    "CancelOnDisconnectParams": pb.CancelOnDisconnectRequest.DESCRIPTOR,
    "CancelAllAfterParams": pb.CancelAllAfterRequest.DESCRIPTOR,
    "SubscribeParams": pb.SubscribeRequest.DESCRIPTOR,
    "ChannelParams": pb.UnsubscribeRequest.DESCRIPTOR,
    "TimeResult": pb.Heartbeat.DESCRIPTOR,
    "InstrumentInfo": pb.Instrument.DESCRIPTOR,
    "QuoteSubscription": pb.SubscribeResponse.DESCRIPTOR,
    "MarketDataSubscription": pb.SubscribeResponse.DESCRIPTOR,
    "Subscribed": pb.SubscribeResponse.DESCRIPTOR,
    "Fill": pb.Fill.DESCRIPTOR,
    "OrderState": pb.OrderState.DESCRIPTOR,
    "Balance": pb.Balance.DESCRIPTOR,
    "CancelOnDisconnectResult": pb.CancelOnDisconnectResponse.DESCRIPTOR,
    "CancelAllAfterResult": pb.CancelAllAfterResponse.DESCRIPTOR,
    "Quote": pb.Quote.DESCRIPTOR,
    "MarketData": pb.MarketDataSnapshot.DESCRIPTOR,
    "InstrumentMarketData": pb.InstrumentMarketData.DESCRIPTOR,
    "BookUpdate": pb.BookUpdate.DESCRIPTOR,
    "PublicTrade": pb.PublicTrade.DESCRIPTOR,
    "Ticker": pb.Ticker.DESCRIPTOR,
    "ConnectionWarning": pb.ConnectionWarning.DESCRIPTOR,
}

# Fields whose Protobuf form is not the same name in snake_case.
PROTO_FIELD: dict[tuple[str, str], str] = {
    ("QuoteSubscription", "subscription"): "subscription",
    ("Subscribed", "channel"): "subscription",
    ("BookUpdate", "type"): "snapshot (true for a snapshot)",
    ("SubscriptionParams", "subscription"): "subscription",
    ("ChannelParams", "channel"): "subscription",
}

# Params types more than one request message carries (the same fields in each).
PROTO_ALSO: dict[str, str] = {
    "OrderRefParams": "CancelOrderRequest",
    "SymbolFilterParams": "CancelAllRequest",
}

# Results whose schema is a plain object or boolean, described in words.
RESULT_TEXT: dict[str, str] = {
    "rpc.discover": "the OpenRPC document of this API (an object)",
    "order_cancel_all": '`{"cancelled": [orderId, ...]}`: the ids of the orders cancelled',
}

# An example of each notification's params, in JSON; the Protobuf form is encoded from it.
NOTIFICATION_EXAMPLES: dict[str, dict[str, Any]] = {
    "quote": {"subscription": "q1", "symbol": "BTC_USD", "buyPrice": "64967.50",
              "sellPrice": "65032.50", "quantity": "1.0000", "quoteId": "Yk3x9Qa1-7",
              "validUntil": 1767225600500, "seq": 7, "timestamp": 1767225600000},
    "market_data": {"seq": 42, "timestamp": 1767225600000, "instruments": [
        {"symbol": "BTC_USD", "last": "65010.00", "bid": "65000.00", "ask": "65020.00",
         "open24h": "64000.00", "high24h": "65500.00", "low24h": "63900.00",
         "volume24h": "12.5000", "change24h": "1010.00", "change24hPct": "1.58",
         "timestamp": 1767225600000}]},
    "book": {"channel": "book.BTC_USD", "type": "delta", "symbol": "BTC_USD", "seq": 1043,
             "prevSeq": 1042, "bids": [["65000.00", "0.5000"]], "asks": [["65020.00", "0"]],
             "checksum": 2387411053},
    "trades": {"tradeId": 981, "symbol": "BTC_USD", "price": "65010.00", "quantity": "0.2500",
               "takerSide": "buy", "timestamp": 1767225600000, "seq": 981},
    "ticker": {"channel": "ticker.BTC_USD", "symbol": "BTC_USD", "last": "65010.00",
               "bid": "65000.00", "bidSize": "0.5000", "ask": "65020.00", "askSize": "1.2000",
               "open24h": "64000.00", "high24h": "65500.00", "low24h": "63900.00",
               "volume24h": "12.5000", "change24h": "1010.00", "change24hPct": "1.58",
               "timestamp": 1767225600000},
    "orders": {"orderId": 17, "clientOrderId": "ref-1", "symbol": "BTC_USD", "side": "buy",
               "type": "limit", "price": "30000.00", "quantity": "0.0100",
               "filledQuantity": "0.0000", "remainingQuantity": "0.0100", "timeInForce": "GTC",
               "postOnly": False, "status": "open", "reason": None, "createdAt": 1767225600000,
               "updatedAt": 1767225600000, "seq": 311, "streamSeq": 5},
    "fills": {"tradeId": 982, "orderId": 18, "symbol": "BTC_USD", "side": "buy",
              "price": "65020.00", "quantity": "0.0100", "fee": "0.65", "feeAsset": "USD",
              "liquidity": "taker", "quoteId": None, "timestamp": 1767225600000, "seq": 312,
              "streamSeq": 6},
    "balances": {"asset": "USD", "available": "99349.35", "locked": "300.00", "streamSeq": 7},
    "warning": {"code": "slow_consumer", "message": "the connection is falling behind",
                "bufferedBytes": 4194304, "limitBytes": 8388608},
}  # fmt: skip

_DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$"
_INT64_MAX = 2**63 - 1


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9_ -]", "", name.lower()).replace(" ", "-")


def _type_link(name: str) -> str:
    return f"[`{name}`](#{_anchor(name + ' type')})"


def describe(schema: dict[str, Any]) -> str:
    """A JSON Schema fragment as a short phrase for a table cell."""
    if "$ref" in schema:
        return _type_link(schema["$ref"].rsplit("/", 1)[-1])
    if "anyOf" in schema:
        kinds = [s for s in schema["anyOf"] if s != {"type": "null"}]
        text = " or ".join(describe(s) for s in kinds)
        return text + " or null" if len(kinds) < len(schema["anyOf"]) else text
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return "array of " + describe(schema.get("items", {}))
    if kind == "string":
        if schema.get("pattern") == _DECIMAL_PATTERN:
            return f"decimal string (at most {schema['maxLength']} characters)"
        limits = []
        if "pattern" in schema:
            limits.append("matching `" + schema["pattern"].replace("|", "\\|") + "`")
        low, high = schema.get("minLength"), schema.get("maxLength")
        if high is not None:
            limits.append(f"{low}-{high} characters" if low else f"at most {high} characters")
        return "string" + (f" ({', '.join(limits)})" if limits else "")
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is None and high is None:
            return "integer"
        top = "2^63-1" if high == _INT64_MAX else str(high)
        return f"integer, {low} to {top}" if high is not None else f"integer, at least {low}"
    if kind == "boolean":
        return "boolean"
    return str(kind or "any")


def _default(schema: dict[str, Any]) -> str:
    if "default" not in schema or schema["default"] is None:
        return ""
    return f"; default `{json.dumps(schema['default'])}`"


_SCALARS = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_DOUBLE: "double",
    FieldDescriptor.TYPE_BYTES: "bytes",
}


def _proto_type(field: Any) -> str:
    """A field's declaration as the .proto writes it: ``repeated Level``, ``optional uint64``."""
    if field.enum_type is not None:
        kind = field.enum_type.name
    elif field.message_type is not None:
        kind = field.message_type.name
    else:
        kind = _SCALARS.get(field.type, "?")
    if field.is_repeated:
        return f"repeated {kind}"
    oneof = field.containing_oneof  # proto3 `optional` is a oneof "_name" of its own
    explicit = oneof is None or oneof.name == f"_{field.name}"
    return (
        f"optional {kind}"
        if explicit and field.message_type is None and field.has_presence
        else kind
    )


def _proto_field(type_name: str, field: str) -> str:
    message = PROTO_MESSAGES.get(type_name)
    name = PROTO_FIELD.get((type_name, field), _snake(field))
    note = ""
    if " " in name:  # "snapshot (true for a snapshot)"
        name, note = name.split(" ", 1)
        note = " " + note
    if message is None or name not in message.fields_by_name:
        return "-"
    declared = message.fields_by_name[name]
    return f"`{name}` = {declared.number}, `{_proto_type(declared)}`{note}"


def _schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = openrpc_document()["components"]["schemas"][name]
    return schema


def _fields_table(name: str, schema: dict[str, Any], *, params: bool) -> list[str]:
    props: dict[str, Any] = schema.get("properties", {})
    if not props:
        return ["No fields."]
    required = set(schema.get("required", []))
    head = "required" if params else "always present"
    proto = PROTO_MESSAGES.get(name)
    carriers = [f"`{proto.name}`"] if proto is not None else []
    if name in PROTO_ALSO:
        carriers.append(f"`{PROTO_ALSO[name]}`")
    proto_head = f"Protobuf ({', '.join(carriers)})" if carriers else "Protobuf"
    lines = [f"| field | type | {head} | {proto_head} |", "|---|---|---|---|"]
    for field, sub in props.items():
        lines.append(
            f"| `{field}` | {describe(sub)}{_default(sub)} | {'yes' if field in required else 'no'}"
            f" | {_proto_field(name, field)} |"
        )
    return lines


def json_request(example: Example, request_id: int) -> str:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": example.method}
    if example.params is not None:
        message["params"] = example.params
    message["id"] = request_id
    return json.dumps(message)


def proto_request(example: Example, request_id: int) -> str | None:
    """The example as a ClientMessage in text format; None if the method is JSON-RPC only."""
    try:
        message = request_message(example.method, example.params, request_id)
    except NotInProtobuf:
        return None
    return str(text_format.MessageToString(message)).rstrip("\n")


def proto_push(kind: str) -> str:
    """The example of a notification as the ServerMessage the server sends for it."""
    body: Any = msgspec.convert(NOTIFICATION_EXAMPLES[kind], NOTIFICATIONS[kind][0])
    message = pb.ServerMessage.FromString(PROTOBUF.push(Push(kind, body)))
    return str(text_format.MessageToString(message)).rstrip("\n")


def _scope(method: Method) -> str:
    return "none (no login needed)" if method.scope is None else f"`{method.scope.value}`"


def _member(member: str | None) -> str:
    if member is None:
        return "none: JSON-RPC only"
    return " / ".join(f"`{part}`" for part in member.split("."))


def _request_member(example: Example) -> str:
    """The ClientMessage member a request goes in ("subscribe.quotes": with its target)."""
    message = request_message(example.method, example.params, 0)
    top = message.WhichOneof("payload")
    assert top is not None
    target = message.subscribe.WhichOneof("target") if top == "subscribe" else None
    return f"{top}.{target}" if target else top


def _method_section(method: Method, spec: dict[str, Any], request_id: int) -> list[str]:
    example = next(e for e in EXAMPLES if e.method == method.name)
    out = [f"### `{method.name}`", "", method.summary, ""]
    out += ["| permission | rate-limit cost | Protobuf request | Protobuf reply |",
            "|---|---|---|---|"]  # fmt: skip
    proto = proto_request(example, request_id)
    request_member = _member(None if proto is None else _request_member(example))
    out += [f"| {_scope(method)} | {method.cost} | {request_member} | "
            f"{_member(REPLY_MEMBER[method.name])} |", ""]  # fmt: skip
    params_name = method.params.__name__
    if spec["params"]:
        out += [f"Params ({_type_link(params_name)}):", ""]
        out += _fields_table(params_name, _schema(params_name), params=True)
    else:
        out.append("Params: none.")
    result = spec["result"]["schema"]
    if method.name in RESULT_TEXT:
        text = RESULT_TEXT[method.name]
    elif result == {"type": "boolean"}:
        text = "`true`"
    else:
        text = describe(result)
    out += ["", f"Result: {text}.", ""]
    ref = result.get("$ref") or result.get("items", {}).get("$ref")
    if ref is not None:
        name = ref.rsplit("/", 1)[-1]
        out += _fields_table(name, _schema(name), params=False)
        out.append("")
    out += ["Example (JSON-RPC):", "", "```json", json_request(example, request_id), "```", ""]
    if proto is None:
        out += ["No Protobuf form: this method exists in JSON-RPC only.", ""]
    else:
        out += ["The same request in Protobuf (`ClientMessage`, text format):", "",
                "```protobuf", proto, "```", ""]  # fmt: skip
    return out


def _channel_of(kind: str) -> tuple[str, str]:
    for stream, (address, started_by, notes) in STREAMS.items():
        if kind in notes:
            return (f"`{address}`" if address else f"none (the {stream} stream)"), started_by
    raise KeyError(kind)


def _notification_section(kind: str, type_: type, summary: str) -> list[str]:
    channel, started_by = _channel_of(kind)
    note = {"jsonrpc": "2.0", "method": kind, "params": NOTIFICATION_EXAMPLES[kind]}
    return [
        f"### `{kind}` notification", "", summary, "",
        "| channel | started by | params | Protobuf (`ServerMessage`) |", "|---|---|---|---|",
        f"| {channel} | {started_by} | {_type_link(type_.__name__)} | "
        f"{_member(PUSH_MEMBER[kind])} |", "",
        *_fields_table(type_.__name__, _schema(type_.__name__), params=False),
        "", "Example (JSON-RPC notification):", "", "```json", json.dumps(note), "```", "",
        "The same message in Protobuf (`ServerMessage`, text format):", "",
        "```protobuf", proto_push(kind), "```", "",
    ]  # fmt: skip


# Each Protobuf enum and the JSON string of each of its values.
ENUMS: dict[str, dict[int, str]] = {"Side": SIDES, "OrderType": TYPES, "TimeInForce": TIFS}


def _enums_section() -> list[str]:
    out = ["## Enums", "",
           "Where JSON has a string, Protobuf has an enum; its `*_UNSPECIFIED` value (0) is "
           "refused with `-32602` naming the field.", ""]  # fmt: skip
    for name, json_of in ENUMS.items():
        out += [f"### `{name}`", "", "| Protobuf | number | JSON |", "|---|---|---|"]
        for value in pb.DESCRIPTOR.enum_types_by_name[name].values:
            text = f"`{json.dumps(json_of[value.number])}`" if value.number in json_of else "-"
            out.append(f"| `{value.name}` | {value.number} | {text} |")
        out.append("")
    return out


def _errors_section() -> list[str]:
    err = rejected(Reject.INSUFFICIENT_FUNDS, "not enough USD available")
    json_reply = JSON.pack([JSON.error(10, err)], False).decode()
    proto_reply = str(text_format.MessageToString(PROTOBUF.error(10, err))).rstrip("\n")
    codes = ", ".join(f"`{int(c)}` {c.name}" for c in ErrorCode)
    return [
        "## Errors and close codes", "",
        "An error reply carries the same `code`, `message` and reason in both encodings. Every "
        "code with its meaning is in the [error table](protocol.md#errors); the close codes the "
        "server sends are in the [close-code table](protocol.md#close-codes), and the limits "
        "behind them in [Connection limits](protocol.md#connection-limits-and-close-codes).", "",
        f"Codes: {codes}.", "",
        "An order refused for lack of funds (JSON-RPC):", "",
        "```json", json_reply, "```", "",
        "The same error in Protobuf (`ServerMessage.error`, text format):", "",
        "```protobuf", proto_reply, "```", "",
    ]  # fmt: skip


@functools.cache
def render() -> str:
    doc = openrpc_document()
    specs = {m["name"]: m for m in doc["methods"]}
    ids = {e.method: n for n, e in enumerate(EXAMPLES, 1)}
    out = [
        "# Protocol reference", "",
        "<!-- Generated by `python -m tradews.app.reference > docs/reference.md` (`make docs`) "
        "from the server's method table, message types and Protobuf codec; do not edit. -->", "",
        "Every method, notification, message and field of the WebSocket API in both encodings, "
        "JSON-RPC 2.0 and Protobuf (`proto/tradews/v1/tradews.proto`). The guide to using them "
        "(connecting, logging in, streams, resuming, limits) is [protocol.md](protocol.md).", "",
        "The example requests are one session against a demo server (`make demo`), numbered "
        "by their request id: `tests/e2e/test_reference.py` sends them in this order in both "
        "encodings and checks each gets a result in the reply member shown, with the demo "
        f"key and its secret in place of `{API_KEY}` and `{API_SECRET}` and a quote id of the "
        f"running stream in place of `{QUOTE_ID}`.", "",
        "- [Methods](#methods): " + ", ".join(f"[`{n}`](#{_anchor(n)})" for n in METHODS),
        "- [Notifications](#notifications): "
        + ", ".join(f"[`{n}`](#{_anchor(n + ' notification')})" for n in NOTIFICATIONS),
        "- [Types](#types): every params, result and notification message with its fields",
        "- [Enums](#enums): the Protobuf enums and their JSON strings",
        "- [Errors and close codes](#errors-and-close-codes)", "",
        "## Methods", "",
    ]  # fmt: skip
    for name, method in METHODS.items():
        out += _method_section(method, specs[name], ids[name])
    out += ["## Notifications", "",
            "Server pushes: JSON-RPC notifications (no `id`), or in Protobuf a `ServerMessage` "
            "with `request_id` 0.", ""]  # fmt: skip
    for kind, (type_, summary) in NOTIFICATIONS.items():
        out += _notification_section(kind, type_, summary)
    out += ["## Types", "",
            "Field names are the JSON ones; the Protobuf column names the same field in the "
            "message that carries it (`-`: not in that message).", ""]  # fmt: skip
    for name, schema in doc["components"]["schemas"].items():
        out += [f"### `{name}` type", ""]
        if "description" in schema:
            out += [" ".join(schema["description"].replace("``", "`").split()), ""]
        out += _fields_table(name, schema, params=name.endswith("Params"))
        out.append("")
    out += _enums_section()
    out += _errors_section()
    return "\n".join(out).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
