"""docs/reference.md's examples are real: each example request, exactly as the reference prints
it (the JSON text, or the Protobuf text format parsed back into a ClientMessage), is sent in
order to a demo server in both encodings and answered with a result, in Protobuf in the
ServerMessage member the reference documents. The streams arrive in their documented members.

Each encoding gets a fresh demo server: the examples place an order with a fixed
clientOrderId, which a second run on the same server would find already used."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from google.protobuf import text_format

from tradews.app.reference import (
    API_KEY,
    API_SECRET,
    EXAMPLES,
    PUSH_MEMBER,
    QUOTE_ID,
    REPLY_MEMBER,
    Example,
    json_request,
    proto_request,
)
from tradews.client import Client
from tradews.codecs.pb import tradews_pb2 as pb
from tradews.testing import ServerProcess


@pytest.fixture(scope="module")
def demo(encoding: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db: Path = tmp_path_factory.mktemp(f"reference-{encoding}") / "tradews.db"
    with ServerProcess.start(db, demo=True) as proc:
        yield proc


def request_text(example: Example, request_id: int, encoding: str) -> str:
    text = (
        json_request(example, request_id)
        if encoding == "json"
        else proto_request(example, request_id)
    )
    assert text is not None, f"{example.method} has no protobuf form"
    return text


def member(m: pb.ServerMessage) -> str:
    """The ServerMessage member a message came in, as the reference writes it."""
    top = m.WhichOneof("payload")
    assert top is not None
    inner = {"market_data": "update", "order_response": "kind"}.get(top)
    return f"{top}.{getattr(m, top).WhichOneof(inner)}" if inner else top


class Session:
    """A raw connection that reads frames in order, remembering the last quote id pushed."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.proto = client.encoding == "proto"
        self.quote_id: str | None = None
        self.pushed: list[str] = []  # notification kinds, or ServerMessage members

    async def send(self, text: str) -> None:
        if self.proto:
            self.client.send_binary(text_format.Parse(text, pb.ClientMessage()).SerializeToString())
        else:
            self.client.send_text(text)

    async def next(self) -> tuple[int | None, Any]:
        """The next frame: (request id, reply) for a reply, (None, message) for a push."""
        data = await self.client.recv_frame(timeout=10)
        if self.proto:
            m = pb.ServerMessage.FromString(data)
            if m.request_id:
                return m.request_id, m
            self.pushed.append(member(m))
            if member(m) == "market_data.quote":
                self.quote_id = m.market_data.quote.quote_id
            return None, m
        message = msgspec.json.decode(data)
        if "id" in message:
            return message["id"], message
        self.pushed.append(message["method"])
        if message["method"] == "quote":
            self.quote_id = message["params"]["quoteId"]
        return None, message

    async def reply(self, request_id: int) -> Any:
        while True:
            got, message = await self.next()
            if got == request_id:
                return message

    async def fresh_quote_id(self) -> str:
        """A quote pushed after this call: the freshest firm quote to accept."""
        self.quote_id = None
        while self.quote_id is None:
            await self.next()
        return self.quote_id


async def test_every_example_request_is_answered(demo: ServerProcess, encoding: str) -> None:
    async with await Client.connect(demo.url, encoding=encoding, raw=True) as client:
        session = Session(client)
        for n, example in enumerate(EXAMPLES, 1):
            text = json_request(example, n) if encoding == "json" else proto_request(example, n)
            if text is None:
                assert REPLY_MEMBER[example.method] is None, f"{example.method} has no proto form"
                continue
            live = {API_KEY: demo.api_key, API_SECRET: demo.api_secret}
            if QUOTE_ID in text:
                live[QUOTE_ID] = await session.fresh_quote_id()
            for placeholder, value in live.items():
                text = text.replace(placeholder, value)
            await session.send(text)
            reply = await session.reply(n)
            if encoding == "json":
                assert "error" not in reply and "result" in reply, (example.method, reply)
            else:
                assert member(reply) == REPLY_MEMBER[example.method], (example.method, reply)
        assert (await client.wait_closed()).code == 1000  # the last example is rpc.logout


STREAMED = ["book", "trades", "ticker", "orders", "fills", "balances", "quote", "market_data"]


async def test_streams_arrive_as_documented(demo: ServerProcess, encoding: str) -> None:
    async with await Client.connect(demo.url, encoding=encoding, raw=True) as client:
        session = Session(client)
        calls: list[tuple[str, dict[str, Any] | None]] = [
            ("rpc.login", {"apiKey": demo.api_key, "apiSecret": demo.api_secret}),
            *[("subscribe", {"channel": c})
              for c in ("book.BTC_USD", "trades.BTC_USD", "ticker.BTC_USD", "orders", "balances")],
            ("quote_request", {"symbol": "BTC_USD", "type": "RFQ"}),
            ("market_data_request", None),
            # A small market buy trades with the demo makers: a public trade, a ticker change,
            # order updates, a fill and balance changes follow.
            ("order_place", {"symbol": "BTC_USD", "side": "buy", "type": "market",
                             "quantity": "0.0010", "timeInForce": "IOC"}),
        ]  # fmt: skip
        for n, (method, params) in enumerate(calls, 1):
            await session.send(request_text(Example(method, params), n, encoding))
            reply = await session.reply(n)
            if encoding == "json":
                assert "result" in reply, (method, reply)
            else:
                assert member(reply) == REPLY_MEMBER[method], (method, reply)
        expected = {PUSH_MEMBER[k] if encoding == "proto" else k for k in STREAMED}
        deadline = time.monotonic() + 20
        buy, again = calls[-1], time.monotonic() + 3
        while not expected <= set(session.pushed) and time.monotonic() < deadline:
            if time.monotonic() > again:  # the makers were between two quotes: buy again
                n += 1
                await session.send(request_text(Example(*buy), n, encoding))
                again = time.monotonic() + 3
            await session.next()
        assert expected <= set(session.pushed), f"never pushed: {expected - set(session.pushed)}"
        # Nothing arrives in a member the reference does not document for a push.
        documented = set(PUSH_MEMBER.values() if encoding == "proto" else PUSH_MEMBER)
        assert set(session.pushed) <= documented
