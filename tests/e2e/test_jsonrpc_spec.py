"""Every example of the JSON-RPC 2.0 specification, sent over a real socket.

The specification's examples call methods of its own (``subtract``, ``sum``); where an example is
about protocol behaviour, the same frame is sent with tradews methods in their place and the
reply is held to what the specification requires.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tradews.client import Client


async def exchange(raw: Client, frame: str) -> Any:
    raw.send_text(frame)
    return json.loads(await raw.recv_frame())


async def assert_silent(raw: Client) -> None:
    """Nothing comes back: prove it by a following call whose reply is the next frame."""
    raw.send_text('{"jsonrpc":"2.0","method":"time","id":"probe"}')
    reply = json.loads(await raw.recv_frame())
    assert reply["id"] == "probe"


async def test_call_with_named_params(raw: Client) -> None:
    reply = await exchange(raw, '{"jsonrpc":"2.0","method":"time","params":{},"id":3}')
    assert reply["jsonrpc"] == "2.0" and reply["id"] == 3
    assert isinstance(reply["result"]["time"], int)


async def test_positional_params_to_a_by_name_method_are_invalid_params(raw: Client) -> None:
    reply = await exchange(
        raw, '{"jsonrpc":"2.0","method":"rpc.login","params":["key","secret"],"id":1}'
    )
    assert reply == {
        "jsonrpc": "2.0",
        "error": {"code": -32602, "message": "Invalid params", "data": reply["error"]["data"]},
        "id": 1,
    }
    assert "object" in reply["error"]["data"]


async def test_notification_gets_no_reply(raw: Client) -> None:
    raw.send_text('{"jsonrpc":"2.0","method":"update","params":[1,2,3,4,5]}')
    raw.send_text('{"jsonrpc":"2.0","method":"time"}')
    await assert_silent(raw)


async def test_non_existent_method(raw: Client) -> None:
    reply = await exchange(raw, '{"jsonrpc":"2.0","method":"foobar","id":"1"}')
    assert reply["error"]["code"] == -32601
    assert reply["error"]["message"] == "Method not found"
    assert reply["id"] == "1"


async def test_invalid_json(raw: Client) -> None:
    reply = await exchange(raw, '{"jsonrpc":"2.0","method":"foobar, "params":"bar", "baz]')
    assert reply == {
        "jsonrpc": "2.0",
        "error": {"code": -32700, "message": "Parse error"},
        "id": None,
    }


async def test_invalid_request_object(raw: Client) -> None:
    reply = await exchange(raw, '{"jsonrpc":"2.0","method":1,"params":"bar"}')
    assert reply["error"]["code"] == -32600
    assert reply["error"]["message"] == "Invalid Request"
    assert reply["id"] is None


async def test_batch_with_invalid_json(raw: Client) -> None:
    frame = '[{"jsonrpc":"2.0","method":"sum","params":[1,2,4],"id":"1"},{"jsonrpc":"2.0","method"]'
    reply = await exchange(raw, frame)
    assert reply == {
        "jsonrpc": "2.0",
        "error": {"code": -32700, "message": "Parse error"},
        "id": None,
    }


async def test_empty_batch_is_one_invalid_request(raw: Client) -> None:
    reply = await exchange(raw, "[]")
    assert isinstance(reply, dict)
    assert reply["error"]["code"] == -32600 and reply["id"] is None


async def test_invalid_batch_not_empty(raw: Client) -> None:
    reply = await exchange(raw, "[1]")
    assert isinstance(reply, list) and len(reply) == 1
    assert reply[0]["error"]["code"] == -32600 and reply[0]["id"] is None


async def test_invalid_batch(raw: Client) -> None:
    reply = await exchange(raw, "[1,2,3]")
    assert [r["error"]["code"] for r in reply] == [-32600] * 3
    assert [r["id"] for r in reply] == [None] * 3


async def test_mixed_batch(raw: Client) -> None:
    frame = json.dumps(
        [
            {"jsonrpc": "2.0", "method": "time", "id": "1"},
            {"jsonrpc": "2.0", "method": "time"},  # a notification: no reply
            {"jsonrpc": "2.0", "method": "time", "params": {}, "id": "2"},
            {"foo": "boo"},
            {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
            {"jsonrpc": "2.0", "method": "time", "id": "9"},
        ]
    )
    reply = await exchange(raw, frame)
    assert isinstance(reply, list) and len(reply) == 5
    by_id = {r["id"]: r for r in reply if r["id"] is not None}
    assert set(by_id) == {"1", "2", "5", "9"}
    assert "result" in by_id["1"] and "result" in by_id["2"] and "result" in by_id["9"]
    assert by_id["5"]["error"]["code"] == -32601
    invalid = [r for r in reply if r["id"] is None]
    assert len(invalid) == 1 and invalid[0]["error"]["code"] == -32600


async def test_batch_of_notifications_returns_nothing(raw: Client) -> None:
    raw.send_text(
        '[{"jsonrpc":"2.0","method":"notify_sum","params":[1,2,4]},'
        '{"jsonrpc":"2.0","method":"notify_hello","params":[7]}]'
    )
    await assert_silent(raw)


@pytest.mark.parametrize("request_id", ["abc", 7, 0, -3, 2.5, 12345678901234567, None, ""])
async def test_ids_are_echoed_with_their_type(raw: Client, request_id: Any) -> None:
    reply = await exchange(raw, json.dumps({"jsonrpc": "2.0", "method": "time", "id": request_id}))
    assert reply["id"] == request_id
    assert type(reply["id"]) is type(request_id)


async def test_error_replies_echo_the_id_too(raw: Client) -> None:
    reply = await exchange(raw, '{"jsonrpc":"2.0","method":"nope","id":4.75}')
    assert reply["id"] == 4.75 and reply["error"]["code"] == -32601


@pytest.mark.parametrize(
    "frame",
    [
        '{"jsonrpc":"1.0","method":"time","id":1}',
        '{"method":"time","id":1}',
        '{"jsonrpc":"2.0","id":1}',
        '{"jsonrpc":"2.0","method":"time","params":"x","id":1}',
        '{"jsonrpc":"2.0","method":"time","id":{"a":1}}',
        '{"jsonrpc":"2.0","method":"time","id":true}',
        '"just a string"',
        "42",
        "null",
    ],
)
async def test_malformed_requests_are_invalid_request(raw: Client, frame: str) -> None:
    reply = await exchange(raw, frame)
    assert reply["error"]["code"] == -32600
    assert reply["jsonrpc"] == "2.0"


async def test_params_errors_report_the_path(logged_in: Client) -> None:
    from tradews.client import RpcError

    if logged_in.encoding == "proto":
        pytest.skip("a number where the schema has a string cannot be sent in protobuf")
    with pytest.raises(RpcError) as info:
        await logged_in.call("quote_request", {"symbol": 5, "type": "RFQ"})
    assert info.value.code == -32602
    assert "$.symbol" in str(info.value.data)


async def test_binary_frame_gets_an_error_not_a_crash(raw: Client) -> None:
    raw.send_binary(b"\x08\x01\x12\x00")
    reply = json.loads(await raw.recv_frame())
    assert reply["error"]["code"] == -32600
    assert "binary" in reply["error"]["data"]
    await assert_silent(raw)


async def test_oversized_batch_is_refused(raw: Client) -> None:
    frame = json.dumps([{"jsonrpc": "2.0", "method": "time", "id": i} for i in range(101)])
    reply = await exchange(raw, frame)
    assert reply["error"]["code"] == 3001 and reply["id"] is None


async def test_many_requests_in_flight_all_answered(raw: Client) -> None:
    for i in range(200):
        raw.send_text(json.dumps({"jsonrpc": "2.0", "method": "time", "id": i}))
    ids = [json.loads(await raw.recv_frame())["id"] for _ in range(200)]
    assert ids == list(range(200))
