"""Bad input gets an answer, not a dead connection: nesting, exotic digits, huge strings,
control characters. Each over a real socket, in both encodings where the encoding can carry it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tradews.client import Client, RpcError
from tradews.testing import ServerProcess


async def test_json_nested_a_thousand_deep_is_a_parse_error(raw: Client) -> None:
    raw.send_text(b"[" * 1000 + b"]" * 1000)
    reply = json.loads(await raw.recv_frame())
    assert reply == {"jsonrpc": "2.0", "error": reply["error"], "id": None}
    assert reply["error"]["code"] == -32700 and "deep" in reply["error"]["data"]
    deep_params = (
        b'{"jsonrpc":"2.0","method":"time","id":7,"params":{"x":'
        + b"[" * 5000
        + b"]" * 5000
        + b"}}"
    )
    raw.send_text(deep_params)
    reply = json.loads(await raw.recv_frame())
    assert reply["error"]["code"] in (-32700, -32602)
    raw.send_text(json.dumps({"jsonrpc": "2.0", "method": "time", "id": 8}))
    assert json.loads(await raw.recv_frame())["id"] == 8  # the connection lives on


EXOTIC = [
    "١",  # ARABIC-INDIC DIGIT ONE
    "１",  # FULLWIDTH DIGIT ONE
    "1_000",
    " 1",
    "1 ",
    "+1",
    "NaN",
    "Infinity",
    "0x10",
    "1.",
    ".5",
]


@pytest.mark.parametrize("text", EXOTIC)
async def test_only_ascii_decimals_are_amounts(logged_in: Client, text: str) -> None:
    for call, params in (
        ("quote_request", {"symbol": "BTC_USD", "type": "RFQ", "quantity": text}),
        ("order_place", {"symbol": "BTC_USD", "side": "buy", "type": "limit",
                         "quantity": text, "price": "100.00"}),
        ("order_place", {"symbol": "BTC_USD", "side": "buy", "type": "limit",
                         "quantity": "0.0001", "price": text}),
    ):  # fmt: skip
        with pytest.raises(RpcError) as info:
            await logged_in.call(call, params)
        assert info.value.code == -32602, (call, params, info.value)
        assert "decimal" in str(info.value.data)


async def test_json_numbers_are_still_read_exactly(logged_in: Client) -> None:
    if logged_in.encoding == "proto":
        pytest.skip("protobuf carries amounts as strings")
    sub = await logged_in.call(
        "quote_request", {"symbol": "BTC_USD", "type": "RFQ", "quantity": 0.5}
    )
    assert sub["quantity"] == "0.5000"


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("quote_accept", {"quoteId": "q" * 200_000, "side": "buy"}),
        ("quote_request", {"symbol": "X" * 200_000, "type": "RFQ"}),
        ("quote_cancel", {"subscription": "s" * 200_000}),
        ("subscribe", {"channel": "book." + "Z" * 200_000}),
        ("order_status", {"clientOrderId": "c" * 200_000}),
        ("rpc.login", {"apiKey": "k" * 200_000, "apiSecret": "x"}),
    ],
)
async def test_error_replies_do_not_echo_big_input(
    logged_in: Client, method: str, params: dict[str, Any]
) -> None:
    with pytest.raises(RpcError) as info:
        await logged_in.call(method, params)
    assert len(str(info.value.message)) + len(str(info.value.data)) < 1000


async def test_an_unknown_method_name_is_not_echoed_whole(raw: Client) -> None:
    raw.send_text(json.dumps({"jsonrpc": "2.0", "method": "m" * 100_000, "id": 1}))
    frame = await raw.recv_frame()
    assert len(frame) < 1000 and json.loads(frame)["error"]["code"] == -32600


@pytest.mark.parametrize("client_order_id", ["a\x00b", "with space", "tab\t", "é", "x" * 65, ""])
async def test_client_order_ids_have_an_alphabet(logged_in: Client, client_order_id: str) -> None:
    if logged_in.encoding == "proto" and client_order_id == "":
        pytest.skip("protobuf cannot tell an empty string from none")
    with pytest.raises(RpcError) as info:
        await logged_in.place_order(
            "BTC_USD", "buy", "0.0001", price="1.00", client_order_id=client_order_id
        )
    assert info.value.code == -32602 and "clientOrderId" in str(info.value.data)


async def test_subscription_ids_reveal_no_other_connection(server: ServerProcess) -> None:
    """Ids are per connection: a client cannot count the server's other streams."""
    ids = []
    for _ in range(2):
        async with await Client.connect(server.url) as c:
            await c.login(server.api_key, server.api_secret)
            first = await c.quote_request("BTC_USD")
            second = await c.quote_request("ETH_USD")
            ids.append((first["subscription"], second["subscription"]))
    assert ids == [("q1", "q2"), ("q1", "q2")]


async def test_bad_input_leaves_no_traceback(server: ServerProcess) -> None:
    """Whatever the tests above sent, the server logged no traceback for it."""
    assert not [line for line in server.output if "Traceback" in line]
