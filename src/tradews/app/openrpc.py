"""The OpenRPC document served by ``rpc.discover``, generated from the session's method table."""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from tradews import __version__
from tradews.api.errors import ErrorCode
from tradews.api.messages import (
    Balance,
    BookUpdate,
    ConnectionWarning,
    Fill,
    MarketData,
    OrderState,
    PublicTrade,
    Quote,
    Ticker,
    schema_hook,
)
from tradews.session.session import METHODS

# Every notification the server pushes: method -> (params type, summary). OpenRPC describes only
# calls, so these go in the document's ``x-notifications`` extension, with their schemas among
# the components; docs/protocol.md's tables list the same names (tests/unit/test_docs.py).
NOTIFICATIONS: dict[str, tuple[type, str]] = {
    "quote": (Quote, "A firm RFQ quote of a quote_request subscription."),
    "market_data": (MarketData, "Every instrument's last, bid and ask, each interval."),
    "book": (BookUpdate, "book.SYMBOL: a snapshot, then deltas, checked by seq and checksum."),
    "trades": (PublicTrade, "trades.SYMBOL: every public trade."),
    "ticker": (Ticker, "ticker.SYMBOL: the ticker, on change."),
    "orders": (OrderState, "orders: your order updates, numbered by streamSeq."),
    "fills": (Fill, "orders: your trade confirmations, numbered by streamSeq."),
    "balances": (Balance, "balances: your balances as they change, numbered by streamSeq."),
    "warning": (ConnectionWarning, "The connection is falling behind (slow_consumer)."),
}


@functools.cache
def openrpc_raw() -> msgspec.Raw:
    """The document as JSON, encoded once: ``rpc.discover`` is then as cheap as any reply."""
    return msgspec.Raw(msgspec.json.encode(openrpc_document()))


@functools.cache
def openrpc_document() -> dict[str, Any]:
    param_types = [m.params for m in METHODS.values()]
    result_types = [m.result for m in METHODS.values() if m.result not in (None, bool, dict)]
    extra = [t for t, _ in NOTIFICATIONS.values() if t not in result_types]
    schemas, components = msgspec.json.schema_components(
        [*param_types, *result_types, *extra],
        ref_template="#/components/schemas/{name}",
        schema_hook=schema_hook,
    )
    by_type = dict(zip([*param_types, *result_types, *extra], schemas, strict=True))

    methods = []
    for m in METHODS.values():
        fields = components.get(m.params.__name__, {})
        required = set(fields.get("required", []))
        params = [
            {"name": name, "required": name in required, "schema": schema}
            for name, schema in fields.get("properties", {}).items()
        ]
        if m.result is bool:
            result_schema: dict[str, Any] = {"type": "boolean"}
        elif m.result is dict or m.result is None:
            result_schema = {"type": "object"}
        else:
            result_schema = by_type[m.result]
        methods.append(
            {
                "name": m.name,
                "summary": m.summary,
                "paramStructure": "by-name",
                "params": params,
                "result": {"name": "result", "schema": result_schema},
            }
        )
    return {
        "openrpc": "1.3.2",
        "info": {
            "title": "tradews JSON-RPC WebSocket API",
            "version": __version__,
            "description": "Server pushes are JSON-RPC notifications, listed with their "
            "params in x-notifications: "
            + ", ".join(NOTIFICATIONS)
            + ". Error codes: "
            + ", ".join(f"{int(c)} {c.name}" for c in ErrorCode),
        },
        "methods": methods,
        "x-notifications": [
            {"name": name, "summary": summary, "params": by_type[kind]}
            for name, (kind, summary) in NOTIFICATIONS.items()
        ],
        "components": {"schemas": components},
    }
