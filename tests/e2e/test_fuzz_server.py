"""The same fuzzing as tests/unit/test_fuzz.py, over real sockets against a real server: every
frame gets documented answers (or a documented close), and the server never goes down."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings

from tests.unit.test_fuzz import DOCUMENTED, json_frames, proto_frames
from tradews.client import Client, ConnectionClosed
from tradews.codecs import protobuf as pbc
from tradews.codecs.pb import tradews_pb2 as pb
from tradews.testing import ServerProcess

# Close codes a fuzzed connection may end with: normal (rpc.logout), policy (failed logins,
# rate limit ignored), protocol error, invalid text, too big.
CLOSE_CODES = {1000, 1002, 1007, 1008, 1009}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    args = ("--no-demo-traders", "--rate-limit-address", "100000/100000")
    with ServerProcess.start(db, demo=True, args=args) as proc:
        yield proc


def errors_in(frame: bytes, proto: bool) -> list[int]:
    if proto:
        message = pb.ServerMessage.FromString(frame)
        return [message.error.code] if message.WhichOneof("payload") == "error" else []
    message = json.loads(frame)
    items = message if isinstance(message, list) else [message]
    return [item["error"]["code"] for item in items if "error" in item]


async def exchange(server: ServerProcess, data: bytes, proto: bool) -> None:
    """Log in, send ``data``, then a ``time`` call: every answer up to the time reply must be
    documented, or the connection must end with a documented close code."""
    async with await Client.connect(
        server.url, encoding="proto" if proto else "json", raw=True
    ) as c:
        login = {"apiKey": server.api_key, "apiSecret": server.api_secret}
        if proto:
            c.send_binary(pbc.request_message("rpc.login", login, 1).SerializeToString())
            c.send_binary(data)
            c.send_binary(pbc.request_message("time", None, 999_999).SerializeToString())
        else:
            c.send_text(
                json.dumps({"jsonrpc": "2.0", "method": "rpc.login", "params": login, "id": 1})
            )
            c.send_text(data)
            c.send_text(json.dumps({"jsonrpc": "2.0", "method": "time", "id": 999_999}))
        try:
            while True:
                frame = await c.recv_frame(timeout=10)
                for code in errors_in(frame, proto):
                    assert code in DOCUMENTED, (code, data)
                if proto and pb.ServerMessage.FromString(frame).request_id == 999_999:
                    return
                if not proto and b'"id":999999' in frame:
                    return
        except ConnectionClosed as closed:
            assert closed.code in CLOSE_CODES, (closed, data)


FUZZ_E2E = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@FUZZ_E2E
@given(json_frames())
def test_fuzzed_json_frames_over_a_socket(target: ServerProcess, data: bytes) -> None:
    asyncio.run(exchange(target, data, proto=False))


@FUZZ_E2E
@given(proto_frames())
def test_fuzzed_protobuf_frames_over_a_socket(target: ServerProcess, data: bytes) -> None:
    asyncio.run(exchange(target, data, proto=True))


def test_the_fuzzed_server_is_up_and_logged_no_traceback(target: ServerProcess) -> None:
    async def still_up() -> int:
        async with await Client.connect(target.url) as c:
            await c.login(target.api_key, target.api_secret)
            return await c.time()

    assert asyncio.run(still_up()) > 0
    assert target.process.poll() is None
    assert not [line for line in target.output if "Traceback" in line]
