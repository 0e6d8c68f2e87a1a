"""The OpenRPC document served by ``rpc.discover``, generated from the session's method table."""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from tradews import __version__
from tradews.api.errors import ErrorCode
from tradews.api.messages import InstrumentMarketData, MarketData, Quote, schema_hook
from tradews.session.session import METHODS


@functools.cache
def openrpc_raw() -> msgspec.Raw:
    """The document as JSON, encoded once: ``rpc.discover`` is then as cheap as any reply."""
    return msgspec.Raw(msgspec.json.encode(openrpc_document()))


@functools.cache
def openrpc_document() -> dict[str, Any]:
    param_types = [m.params for m in METHODS.values()]
    result_types = [m.result for m in METHODS.values() if m.result not in (None, bool, dict)]
    extra = [Quote, MarketData, InstrumentMarketData]
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
            "description": "Server pushes are notifications: 'quote' (see Quote) and "
            "'market_data' (see MarketData). Error codes: "
            + ", ".join(f"{int(c)} {c.name}" for c in ErrorCode),
        },
        "methods": methods,
        "components": {"schemas": components},
    }
