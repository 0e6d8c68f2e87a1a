"""The protobuf encoding on the wire: negotiation, a client in another language, bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import node_available, require
from tradews.client import Client, ConnectionClosed
from tradews.codecs.pb import tradews_pb2 as pb
from tradews.testing import ServerProcess

ROOT = Path(__file__).resolve().parents[2]


def test_node_protobufjs_client_from_the_proto_file(server: ServerProcess) -> None:
    require(node_available(), "node and the npm packages are needed (run `make test`)")
    done = subprocess.run(
        ["node", str(ROOT / "tests" / "node" / "proto_client.mjs"), server.url, server.api_key,
         server.api_secret],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    by_request = {m.get("requestId"): m for m in messages if m.get("requestId")}
    assert "login" in by_request[1]
    assert by_request[2]["subscribed"]["subscription"] == "book.BTC_USD"
    ack = by_request[4]["orderResponse"]["order"]
    assert ack["symbol"] == "BTC_USD" and ack["side"] == "SIDE_BUY" and ack["status"] == "filled"
    books = [m["marketData"]["book"] for m in messages if "book" in m.get("marketData", {})]
    assert books and books[0]["snapshot"] is True and books[0]["asks"]
    fills = [m["orderResponse"]["fill"] for m in messages if "fill" in m.get("orderResponse", {})]
    assert fills[0]["orderId"] == ack["orderId"] and fills[0]["liquidity"] == "taker"


async def raw_proto(server: ServerProcess) -> Client:
    return await Client.connect(server.url, encoding="proto", raw=True)


async def reply(client: Client) -> pb.ServerMessage:
    return pb.ServerMessage.FromString(await client.recv_frame())


@pytest.mark.parametrize(
    "frame, code",
    [
        (b"\xff\xff\xff", -32700),  # not a message at all
        (pb.ClientMessage(request_id=7, login=pb.LoginRequest(api_key="k" * 40,
                                                               api_secret="s")).SerializeToString()[:-5],
         -32700),  # truncated
        (b"\xa2\x06\x02\x08\x01", -32600),  # field 100: a oneof member this server does not know
        (b"", -32600),  # an empty ClientMessage
        (b"\x0a\x03abc", -32700),  # subscribe (field 1) holding bytes that are no SubscribeRequest
        (b"\x08\x05", -32600),  # field 1 with the wrong wire type (varint): an unknown field
    ],
)  # fmt: skip
async def test_malformed_protobuf_gets_an_error_and_the_server_goes_on(
    server: ServerProcess, frame: bytes, code: int
) -> None:
    client = await raw_proto(server)
    client.send_binary(frame)
    answer = await reply(client)
    assert answer.WhichOneof("payload") == "error"
    assert answer.error.code == code, answer
    # The same connection still works.
    client.send_binary(pb.ClientMessage(request_id=9, heartbeat=pb.Heartbeat()).SerializeToString())
    beat = await reply(client)
    assert beat.request_id == 9 and beat.heartbeat.time > 0
    await client.close()


async def test_bad_values_are_refused_like_in_json(server: ServerProcess) -> None:
    client = await raw_proto(server)
    login = pb.LoginRequest(api_key=server.api_key, api_secret=server.api_secret)
    client.send_binary(pb.ClientMessage(request_id=1, login=login).SerializeToString())
    assert (await reply(client)).WhichOneof("payload") == "login"
    order = pb.OrderRequest(symbol="BTC_USD", side=pb.SIDE_UNSPECIFIED,
                            type=pb.ORDER_TYPE_LIMIT, quantity="1", price="1.00")  # fmt: skip
    client.send_binary(pb.ClientMessage(request_id=2, order=order).SerializeToString())
    answer = await reply(client)
    assert answer.request_id == 2 and answer.error.code == -32602 and "side" in answer.error.detail
    order.side, order.price = pb.SIDE_BUY, "1.001"
    client.send_binary(pb.ClientMessage(request_id=3, order=order).SerializeToString())
    answer = await reply(client)
    assert (answer.error.code, answer.error.reason) == (4001, "INVALID_PRICE")
    await client.close()


async def test_a_text_frame_on_a_protobuf_connection(server: ServerProcess) -> None:
    client = await raw_proto(server)
    client.send_text('{"jsonrpc":"2.0","method":"time","id":1}')
    answer = await reply(client)  # a binary ServerMessage, not JSON
    assert answer.error.code == -32600 and "binary" in answer.error.detail
    await client.close()


async def test_an_oversized_frame_closes_with_1009(server: ServerProcess) -> None:
    client = await raw_proto(server)
    client.send_binary(b"\x00" * ((1 << 20) + 1))
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await client.recv_frame(timeout=5)
    assert info.value.code in (1009, None)
    other = await Client.connect(server.url, encoding="proto")
    assert await other.time() > 0
    await other.close()


@pytest.mark.parametrize(
    "offer, expected",
    [("tradews.v1.proto", "tradews.v1.proto"), ("tradews.v1.json", "tradews.v1.json"),
     ("chat, tradews.v1.json", "tradews.v1.json"), ("", None), ("chat", None)],
)  # fmt: skip
async def test_subprotocol_negotiation(
    server: ServerProcess, offer: str, expected: str | None
) -> None:
    from picows import WSListener, ws_connect

    headers = {"Sec-WebSocket-Protocol": offer} if offer else None
    transport, _ = await ws_connect(WSListener, server.url, extra_headers=headers)
    try:
        assert transport.response.headers.get("Sec-WebSocket-Protocol") == expected
    finally:
        transport.disconnect()
