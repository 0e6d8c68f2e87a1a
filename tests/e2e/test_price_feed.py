"""The RFQ desk quoting from a price feed (``--price-feed``), over real sockets: a desk with the
house funded and no other account on the book streams quotes around the feed's price, follows
it, skips what is not a price, and stops with a clear error when the feed goes quiet."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from picows import WSListener, WSMsgType, WSTransport, ws_create_server

from tests.conftest import require
from tests.helpers import rfq_desk
from tradews.client import Client, RpcError
from tradews.testing import NATS_URL, ServerProcess, nats_reachable, run_cli

SYMBOL = "BTC_USD"
MARKUP = Decimal("0.0005")  # the instrument's 5 bps


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _desk_db(tmp: Path) -> tuple[Path, dict[str, str]]:
    """An instrument, a funded house, one trader; no reference price, no orders."""
    db = tmp / "desk.db"
    return db, rfq_desk(db)


class WsFeed:
    """A WebSocket price feed the test speaks through: every connected server gets each send."""

    def __init__(self) -> None:
        self.peers: list[WSTransport] = []
        self.port = 0

    async def start(self) -> asyncio.Server:
        feed = self

        class Peer(WSListener):  # type: ignore[misc]
            def on_ws_connected(self, transport: WSTransport) -> None:
                feed.peers.append(transport)

            def on_ws_disconnected(self, transport: WSTransport) -> None:
                feed.peers.remove(transport)

        server: asyncio.Server = await ws_create_server(lambda _: Peer(), "127.0.0.1", 0)
        self.port = int(server.sockets[0].getsockname()[1])
        return server

    def send(self, message: Any) -> None:
        data = message if isinstance(message, bytes) else json.dumps(message).encode()
        for peer in self.peers:
            peer.send(WSMsgType.TEXT, data)


@pytest.fixture
async def ws_feed() -> AsyncIterator[WsFeed]:
    feed = WsFeed()
    server = await feed.start()
    yield feed
    server.close()


@pytest.fixture
def desk_db(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    return _desk_db(tmp_path)


def start_desk(db: Path, feed_url: str) -> ServerProcess:
    args = ("--price-feed", feed_url, "--price-max-age", "2s", "--tick-interval", "0.05")
    return ServerProcess.start(db, demo=False, args=args)


async def quote_or_error(client: Client) -> tuple[dict[str, Any] | None, RpcError | None]:
    try:
        sub = await client.quote_request(SYMBOL, quantity="1")
    except RpcError as exc:
        return None, exc
    while True:
        note = await client.next_notification(timeout=5)
        if note.method == "quote" and note.params["subscription"] == sub["subscription"]:
            await client.quote_cancel(sub["subscription"])
            return dict(note.params), None


async def quoted_around(client: Client, price: str, feed: Any = None) -> dict[str, Any]:
    """Wait for a quote around ``price`` (``feed()`` resends it meanwhile, as a feed would)."""
    ref = Decimal(price)
    expected = (f"{ref * (1 - MARKUP):.2f}", f"{ref * (1 + MARKUP):.2f}")
    for _ in range(100):
        if feed is not None:
            await feed()
        quote, _ = await quote_or_error(client)
        if quote is not None and (quote["buyPrice"], quote["sellPrice"]) == expected:
            return quote
        await asyncio.sleep(0.1)
    pytest.fail(f"no quote around {price}")


async def stale_error(client: Client) -> RpcError:
    for _ in range(100):
        _, error = await quote_or_error(client)
        if error is not None:
            return error
        await asyncio.sleep(0.1)
    pytest.fail("the desk went on quoting from a feed that stopped")


async def test_a_websocket_feed_anchors_quotes_and_a_quiet_one_stops_them(
    desk_db: tuple[Path, dict[str, str]], ws_feed: WsFeed
) -> None:
    db, key = desk_db
    with start_desk(db, f"ws://127.0.0.1:{ws_feed.port}/prices") as desk:
        async with await Client.connect(desk.url) as client:
            await client.login(key["apiKey"], key["apiSecret"])
            _, error = await quote_or_error(client)
            assert error is not None and error.code == 2003  # no price yet

            async def send(price: str) -> None:
                ws_feed.send({"symbol": SYMBOL, "price": price})

            await quoted_around(client, "65000", lambda: send("65000"))

            # the feed moves, and so do the quotes; a list of prices is one message
            async def send_list() -> None:
                ws_feed.send([{"symbol": "ETH_USD", "price": "3000"}, {"symbol": SYMBOL,
                              "price": 66000}])  # fmt: skip

            await quoted_around(client, "66000", send_list)
            # what is not a price is skipped, and the feed goes on
            for junk in (b"not json", {"symbol": SYMBOL}, {"symbol": SYMBOL, "price": "-1"}):
                ws_feed.send(junk)
            await quoted_around(client, "67000", lambda: send("67000"))
            # the feed goes quiet: once its price is older than --price-max-age, no quotes
            error = await stale_error(client)
            assert error.code == 2003
            assert error.message == (
                f"no price for {SYMBOL}: the price feed's reference price is stale (older than 2s)"
            )
            # a price with an old timestamp is as stale as no price
            ws_feed.send({"symbol": SYMBOL, "price": "65000", "timestamp": 1})
            _, error = await quote_or_error(client)
            assert error is not None and "stale" in error.message
            await quoted_around(client, "65500", lambda: send("65500"))


async def test_the_desk_reconnects_to_a_feed_that_starts_late(
    desk_db: tuple[Path, dict[str, str]],
) -> None:
    """A feed that is not up yet when the server starts is followed once it is."""
    db, key = desk_db
    feed = WsFeed()
    port = _free_port()
    with start_desk(db, f"ws://127.0.0.1:{port}/") as desk:
        feed_server: asyncio.Server = await ws_create_server(
            lambda _: _Collect(feed), "127.0.0.1", port
        )
        feed.port = port
        try:
            async with await Client.connect(desk.url) as client:
                await client.login(key["apiKey"], key["apiSecret"])

                async def send() -> None:
                    feed.send({"symbol": SYMBOL, "price": "64000"})

                await quoted_around(client, "64000", send)
        finally:
            feed_server.close()


class _Collect(WSListener):  # type: ignore[misc]
    def __init__(self, feed: WsFeed) -> None:
        self.feed = feed

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.feed.peers.append(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.feed.peers.remove(transport)


@pytest.fixture
def nats_subject() -> Iterator[str]:
    require(nats_reachable(), f"NATS is not reachable at {NATS_URL}")
    yield f"tradews-test.prices.{secrets.token_hex(4)}"


async def test_a_nats_subject_is_a_feed(
    desk_db: tuple[Path, dict[str, str]], nats_subject: str
) -> None:
    import nats

    db, key = desk_db
    nc = await nats.connect(NATS_URL)
    try:
        with start_desk(db, f"{NATS_URL.rstrip('/')}/{nats_subject}") as desk:
            async with await Client.connect(desk.url) as client:
                await client.login(key["apiKey"], key["apiSecret"])

                async def send() -> None:
                    await nc.publish(nats_subject, b'{"symbol": "BTC_USD", "price": "63000"}')

                await quoted_around(client, "63000", send)
    finally:
        await nc.close()


def test_a_bad_feed_url_is_one_line(tmp_path: Path) -> None:
    done = run_cli("serve", "--price-feed", "http://example", db=tmp_path / "x.db", check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: --price-feed http://example: expected ws://host:port/path, wss://... or "
        "nats://host:port/subject"
    ]
