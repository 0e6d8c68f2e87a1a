"""RFC 6455 framing of the real API server, probed with raw frames as an attacker would send them.

Every malformed frame must fail the connection with the close code the RFC names (1002 protocol
error, 1007 invalid UTF-8, 1009 too big), an empty CLOSE must be answered with an empty one, a PING
with a PONG carrying its payload, and the server must keep serving everyone else.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from picows import WSMsgType

from tests.e2e.autobahn_echo import echo_factory
from tests.raw_websocket import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    RawWebSocket,
    close_payload,
    encode,
)
from tradews.adapters.ws_server import MAX_MESSAGE_BYTES, create_server, server_frames
from tradews.codecs.pb import tradews_pb2 as pb
from tradews.testing import ServerProcess

TIME_JSON = b'{"jsonrpc":"2.0","id":1,"method":"time"}'
TIME_PROTO = pb.ClientMessage(request_id=1, heartbeat=pb.Heartbeat()).SerializeToString()


def request(encoding: str) -> tuple[int, bytes]:
    """A valid request in the connection's own kind of frame: (opcode, payload)."""
    return (BINARY, TIME_PROTO) if encoding == "proto" else (TEXT, TIME_JSON)


def answers_request(encoding: str, payload: bytes) -> bool:
    if encoding == "proto":
        return pb.ServerMessage.FromString(payload).heartbeat.time > 0
    return int(json.loads(payload)["result"]["time"]) > 0


@pytest.fixture
async def ws(server: ServerProcess) -> AsyncIterator[RawWebSocket]:
    """A JSON-RPC connection, for what does not depend on the encoding."""
    conn = await RawWebSocket.connect(server.url)
    yield conn
    conn.close()


@pytest.fixture
async def ws_each(server: ServerProcess, encoding: str) -> AsyncIterator[RawWebSocket]:
    """A connection in each encoding, for what involves data frames of the encoding's kind."""
    protocol = "tradews.v1.proto" if encoding == "proto" else None
    conn = await RawWebSocket.connect(server.url, protocol=protocol)
    yield conn
    conn.close()


async def expect_failed(ws: RawWebSocket, code: int) -> None:
    """The server sends a CLOSE with ``code`` (and nothing before it), then drops the TCP."""
    frame = await ws.recv()
    assert frame is not None, "the server dropped the connection without a close frame"
    assert frame.opcode == CLOSE, f"expected a close frame, got {frame}"
    assert frame.close_code == code, f"close code {frame.close_code}: {frame.payload[2:]!r}"
    assert await ws.closed_by_server()


async def still_serves(server: ServerProcess, encoding: str) -> None:
    ws = await RawWebSocket.connect(
        server.url, protocol="tradews.v1.proto" if encoding == "proto" else None
    )
    try:
        ws.send_frame(*request(encoding))
        reply = await ws.recv()
        assert reply is not None and answers_request(encoding, reply.payload)
    finally:
        ws.close()


@pytest.mark.parametrize("rsv", [0b100, 0b010, 0b001])
async def test_reserved_bits_fail_the_connection(
    server: ServerProcess, ws_each: RawWebSocket, encoding: str, rsv: int
) -> None:
    opcode, payload = request(encoding)
    ws_each.send_frame(opcode, payload, rsv=rsv)
    await expect_failed(ws_each, 1002)
    await still_serves(server, encoding)


async def test_reserved_bits_on_a_control_frame_fail_the_connection(ws: RawWebSocket) -> None:
    ws.send_frame(PING, b"x", rsv=0b100)
    await expect_failed(ws, 1002)


async def test_a_new_message_inside_a_fragmented_one_fails_the_connection(
    ws_each: RawWebSocket, encoding: str
) -> None:
    opcode, payload = request(encoding)
    ws_each.send_frame(opcode, payload[:5], fin=False)
    ws_each.send_frame(opcode, payload)
    await expect_failed(ws_each, 1002)


async def test_a_continuation_without_a_start_fails_the_connection(ws: RawWebSocket) -> None:
    ws.send_frame(CONTINUATION, b"orphan")
    await expect_failed(ws, 1002)


async def test_a_fragmented_message_with_pings_between_is_reassembled(
    ws_each: RawWebSocket, encoding: str
) -> None:
    opcode, payload = request(encoding)
    ws_each.send_frame(opcode, payload[:3], fin=False)
    ws_each.send_frame(PING, b"between")
    ws_each.send_frame(CONTINUATION, payload[3:9], fin=False)
    ws_each.send_frame(CONTINUATION, payload[9:])
    pong = await ws_each.recv()
    assert pong is not None and (pong.opcode, pong.payload) == (PONG, b"between")
    reply = await ws_each.recv()
    assert reply is not None and answers_request(encoding, reply.payload)


async def test_an_empty_close_is_answered_with_an_empty_close(ws: RawWebSocket) -> None:
    ws.send_frame(CLOSE)
    frame = await ws.recv()
    assert frame is not None and frame.opcode == CLOSE
    assert frame.payload == b""
    assert await ws.closed_by_server()


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 1014, 3000, 3999, 4000, 4999])
async def test_a_close_with_a_valid_code_is_echoed(ws: RawWebSocket, code: int) -> None:
    ws.send_frame(CLOSE, close_payload(code, b"bye"))
    frame = await ws.recv()
    assert frame is not None and frame.opcode == CLOSE
    assert frame.close_code == code
    assert await ws.closed_by_server()


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
async def test_a_close_code_never_sent_on_the_wire_fails_the_connection(
    ws: RawWebSocket, code: int
) -> None:
    ws.send_frame(CLOSE, close_payload(code))
    await expect_failed(ws, 1002)


async def test_a_close_payload_of_one_byte_fails_the_connection(ws: RawWebSocket) -> None:
    ws.send_frame(CLOSE, b"\x03")
    await expect_failed(ws, 1002)


async def test_a_close_reason_that_is_not_utf8_fails_with_1007(ws: RawWebSocket) -> None:
    ws.send_frame(CLOSE, close_payload(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed"))
    await expect_failed(ws, 1007)


async def test_frames_after_the_close_are_ignored(ws_each: RawWebSocket, encoding: str) -> None:
    opcode, payload = request(encoding)
    ws_each.send(
        encode(CLOSE, close_payload(1000)) + encode(opcode, payload) + encode(PING, b"late")
    )
    frame = await ws_each.recv()
    assert frame is not None and frame.opcode == CLOSE and frame.close_code == 1000
    assert await ws_each.recv() is None  # no reply, no pong: the TCP connection ends


@pytest.mark.parametrize(
    "text",
    [
        b'{"jsonrpc":"2.0","id":1,"method":"\xff"}',  # a byte that is never UTF-8
        b'{"jsonrpc":"2.0","id":1,"method":"\xed\xa0\x80"}',  # a UTF-16 surrogate
        b'{"jsonrpc":"2.0","id":1,"method":"\xc3"}',  # a truncated sequence
    ],
    ids=["invalid-byte", "surrogate", "truncated"],
)
async def test_text_that_is_not_utf8_fails_with_1007(
    server: ServerProcess, ws_each: RawWebSocket, encoding: str, text: bytes
) -> None:
    ws_each.send_frame(TEXT, text)
    await expect_failed(ws_each, 1007)
    await still_serves(server, encoding)


async def test_fragmented_text_fails_with_1007_at_the_first_invalid_fragment(
    ws: RawWebSocket,
) -> None:
    ws.send_frame(TEXT, b'{"jsonrpc":"2.0",', fin=False)
    ws.send_frame(CONTINUATION, b'"id":"\xce\xba\xe1', fin=False)  # a code point cut in two: fine
    ws.send_frame(
        CONTINUATION, b"\xbd\xb9\xff", fin=False
    )  # 0xff: invalid, the message is not over
    await expect_failed(ws, 1007)


async def test_valid_text_split_inside_a_code_point_is_accepted(ws: RawWebSocket) -> None:
    ws.send_frame(TEXT, b'{"jsonrpc":"2.0","id":"\xce', fin=False)
    ws.send_frame(CONTINUATION, b'\xba","method":"time"}')
    reply = await ws.recv()
    assert reply is not None and json.loads(reply.payload)["id"] == "\u03ba"


async def test_a_ping_is_answered_with_a_pong_carrying_its_payload(ws: RawWebSocket) -> None:
    for payload in (b"", b"hello", bytes(range(125))):
        ws.send_frame(PING, payload)
        pong = await ws.recv()
        assert pong is not None and (pong.opcode, pong.payload) == (PONG, payload)


async def test_an_unsolicited_pong_is_ignored(ws_each: RawWebSocket, encoding: str) -> None:
    ws_each.send_frame(PONG, b"unsolicited")
    ws_each.send_frame(*request(encoding))
    reply = await ws_each.recv()
    assert reply is not None and answers_request(encoding, reply.payload)


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
async def test_a_control_frame_over_125_bytes_fails_the_connection(
    ws: RawWebSocket, opcode: int
) -> None:
    ws.send_frame(opcode, close_payload(1000, b"x" * 124) if opcode == CLOSE else b"x" * 126)
    await expect_failed(ws, 1002)


async def test_a_fragmented_control_frame_fails_the_connection(ws: RawWebSocket) -> None:
    ws.send_frame(PING, b"part", fin=False)
    await expect_failed(ws, 1002)


async def test_a_fragmented_message_over_the_limit_fails_with_1009(
    ws_each: RawWebSocket, encoding: str
) -> None:
    opcode = request(encoding)[0]
    chunk = b" " * (256 << 10)
    ws_each.send_frame(opcode, chunk, fin=False)
    for _ in range(MAX_MESSAGE_BYTES // len(chunk)):
        ws_each.send_frame(CONTINUATION, chunk, fin=False)
    # The server says why in the connection's own encoding, then closes.
    refusal = await ws_each.recv()
    assert refusal is not None and refusal.opcode == opcode
    assert b"larger than" in refusal.payload
    await expect_failed(ws_each, 1009)


async def test_the_server_pings_an_idle_peer_and_takes_its_pong() -> None:
    """picows's auto-ping keeps working with its auto-pong off: the PONG that answers a ping
    keeps the connection open, and a peer that stops answering is closed with 1001."""
    server = await create_server(echo_factory, "127.0.0.1", 0, ping_interval=0.5, ping_timeout=0.5)
    port = server.sockets[0].getsockname()[1]
    ws = await RawWebSocket.connect(f"ws://127.0.0.1:{port}")
    try:
        for _ in range(3):  # answered pings: the next frame is another ping, not a close
            ping = await ws.recv()
            assert ping is not None and ping.opcode == PING
            ws.send_frame(PONG, ping.payload)
        frame = await ws.recv_close()  # this one goes unanswered
        assert frame.close_code == 1001
    finally:
        ws.close()
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)


@pytest.mark.parametrize("sizes", [(5,), (5, 125, 126), (200, 65_535, 65_536, 0)])
def test_batched_server_frames_are_the_frames_one_by_one(sizes: tuple[int, ...]) -> None:
    """Quotes for one connection go out as one buffer of frames: each frame in it must be
    exactly the unmasked frame of its own (every length encoding, at its boundaries)."""
    payloads = [bytes([65 + i]) * size for i, size in enumerate(sizes)]
    batch = server_frames(WSMsgType.TEXT, payloads)
    assert batch == b"".join(encode(TEXT, p, mask=False) for p in payloads)
    assert server_frames(WSMsgType.BINARY, payloads[:1])[0] == 0x80 | BINARY
