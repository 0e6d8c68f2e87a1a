"""The AsyncAPI 3 document of the server's streams (``docs/asyncapi.json``).

OpenRPC (``rpc.discover``) describes the calls; this describes what the server pushes: each
stream a client can follow, its address (the ``subscribe`` channel name, or the method that
starts it), and its messages as the JSON-RPC notifications they arrive as. It is generated from
the same message types the server encodes, so it cannot drift from them:
``python -m tradews.app.asyncapi > docs/asyncapi.json`` (``make docs``) writes it, and
tests/unit/test_asyncapi.py fails when the committed file is stale or not valid AsyncAPI 3.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import msgspec

from tradews import __version__
from tradews.api.messages import schema_hook
from tradews.app.openrpc import NOTIFICATIONS

_SYMBOL = {"symbol": {"description": "An instrument's symbol, e.g. BTC_USD."}}

# stream -> (address, how a client starts it, its notifications)
STREAMS: dict[str, tuple[str | None, str, tuple[str, ...]]] = {
    "quote": (None, "quote_request {symbol, type: RFQ}; ends with quote_cancel", ("quote",)),
    "marketData": (None, "market_data_request; ends with market_data_cancel", ("market_data",)),
    "book": ("book.{symbol}", "subscribe {channel: book.SYMBOL, depth?}", ("book",)),
    "trades": ("trades.{symbol}", "subscribe {channel: trades.SYMBOL}", ("trades",)),
    "ticker": ("ticker.{symbol}", "subscribe {channel: ticker.SYMBOL}", ("ticker",)),
    "orders": ("orders", "subscribe {channel: orders, since?} (private)", ("orders", "fills")),
    "balances": ("balances", "subscribe {channel: balances, since?} (private)", ("balances",)),
    "warning": (None, "every connection, unasked", ("warning",)),
}


@functools.cache
def asyncapi_document() -> dict[str, Any]:
    types = [kind for kind, _ in NOTIFICATIONS.values()]
    refs, schemas = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}", schema_hook=schema_hook
    )
    params_of = dict(zip(NOTIFICATIONS, refs, strict=True))
    messages = {
        name: {
            "name": name,
            "title": f"the {name} notification",
            "summary": summary,
            "payload": {
                "type": "object",
                "required": ["jsonrpc", "method", "params"],
                "properties": {
                    "jsonrpc": {"const": "2.0"},
                    "method": {"const": name},
                    "params": params_of[name],
                },
            },
        }
        for name, (_, summary) in NOTIFICATIONS.items()
    }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for stream, (address, started_by, notes) in STREAMS.items():
        channel: dict[str, Any] = {
            "address": address,
            "description": f"Started by {started_by}.",
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in notes},
        }
        if address is not None and "{symbol}" in address:
            channel["parameters"] = _SYMBOL
        channels[stream] = channel
        operations[f"send_{stream}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{stream}"},
            "messages": [{"$ref": f"#/channels/{stream}/messages/{n}"} for n in notes],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "tradews streams",
            "version": __version__,
            "description": "What a tradews server pushes over its WebSocket API, as JSON-RPC 2.0 "
            "notifications (the calls are in the OpenRPC document rpc.discover serves; the "
            "Protobuf encoding carries the same messages in ServerMessage, see "
            "proto/tradews/v1/tradews.proto). Private streams need a login.",
        },
        "servers": {
            "demo": {
                "host": "127.0.0.1:8765",
                "protocol": "ws",
                "description": "`make demo`; clients log in with rpc.login first.",
            }
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render() -> str:
    return msgspec.json.format(msgspec.json.encode(asyncapi_document()), indent=2).decode() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
