"""A reference-price feed for the RFQ desk: a WebSocket or NATS source of prices from outside.

The desk anchors every quote to a reference price (``app/pricing.py``). Besides the operator's
``tradews price set`` and the demo's simulated walk, it can follow a feed: any WebSocket server
or NATS subject that publishes the documented message, one price or a list of them, as JSON::

    {"symbol": "BTC_USD", "price": "65000.50", "timestamp": 1763779226123}
    [{"symbol": "BTC_USD", "price": "65000.50"}, {"symbol": "ETH_USD", "price": 3001.2}]

``price`` is a decimal as a string (or a number); ``timestamp`` (ms since the epoch) is when the
price was true, and the time it arrived stands in when it is absent. A price is stale, and the
desk stops quoting the instrument with a clear error, once it is older than the server's
``--price-max-age``. A bridge from an exchange's ticker (ccxt's ``watch_ticker``, say) is a
dozen lines that publish this message; ``docs/operations.md`` shows one.

The feed reconnects by itself, with a backoff, and says so once per outage. A message it cannot
read is logged (with at most a few lines a minute, see ``app/logs.py``) and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0


class FeedPrice(msgspec.Struct, frozen=True):
    symbol: str
    price: Decimal
    timestamp: int | None = None


_decoder = msgspec.json.Decoder(FeedPrice | list[FeedPrice])


def decode_prices(data: bytes, now_ms: int) -> list[FeedPrice]:
    """The prices in one feed message, each with a timestamp (``now_ms`` where it had none, or
    where it claimed to be from the future). Raises ValueError on a message that is not one."""
    try:
        got = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(str(exc)) from None
    prices = got if isinstance(got, list) else [got]
    out = []
    for p in prices:
        if not p.price.is_finite() or p.price <= 0:
            raise ValueError(f"price of {p.symbol!r} must be a positive number, got {p.price}")
        at = now_ms if p.timestamp is None or p.timestamp > now_ms else p.timestamp
        out.append(FeedPrice(p.symbol, p.price, at))
    return out


@dataclass(frozen=True)
class FeedUrl:
    kind: str  # "ws" or "nats"
    url: str  # the WebSocket URL, or the NATS server
    subject: str = ""  # NATS only


def parse_feed_url(raw: str) -> FeedUrl:
    """``ws://host:port/path`` (or ``wss://``), or ``nats://host:port/subject``."""
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme in ("ws", "wss") and parts.hostname:
        return FeedUrl("ws", raw)
    if parts.scheme == "nats" and parts.hostname:
        subject = parts.path.strip("/")
        if not subject:
            raise ValueError(f"--price-feed {raw}: name the subject, e.g. nats://host:4222/prices")
        server = f"nats://{parts.netloc}"
        return FeedUrl("nats", server, subject)
    raise ValueError(
        f"--price-feed {raw}: expected ws://host:port/path, wss://... or nats://host:port/subject"
    )


OnPrices = Callable[[list[FeedPrice]], None]


class PriceFeed:
    """Follows one feed and hands each message's prices to ``on_prices``."""

    def __init__(
        self, url: FeedUrl, on_prices: OnPrices, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.url = url
        self._on_prices = on_prices
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.messages = 0
        self.rejected = 0

    def start(self) -> None:
        run = self._follow_ws if self.url.kind == "ws" else self._follow_nats
        self._task = asyncio.get_running_loop().create_task(run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def receive(self, data: bytes) -> None:
        try:
            prices = decode_prices(data, int(self._clock() * 1000))
        except ValueError as exc:
            self.rejected += 1
            log.warning("price feed: skipped a message that is not a price: %s", exc)
            return
        self.messages += 1
        self._on_prices(prices)

    async def _follow_ws(self) -> None:
        from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

        feed = self

        class Listener(WSListener):  # type: ignore[misc]
            def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
                if frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    feed.receive(frame.get_payload_as_bytes())
                elif frame.msg_type == WSMsgType.PING:
                    transport.send_pong(frame.get_payload_as_bytes())
                elif frame.msg_type == WSMsgType.CLOSE:
                    transport.disconnect()

        delay, announced = RETRY_FIRST_S, False
        while True:
            try:
                transport, _ = await ws_connect(
                    Listener, self.url.url, websocket_handshake_timeout=5
                )
            except Exception as exc:
                if not announced:
                    log.warning("price feed: cannot reach %s (%s); retrying", self.url.url, exc)
                    announced = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            log.warning("price feed: following %s", self.url.url)
            self.connected, delay, announced = True, RETRY_FIRST_S, False
            try:
                await transport.wait_disconnected()
            finally:
                self.connected = False
            log.warning("price feed: lost %s; reconnecting", self.url.url)
            await asyncio.sleep(delay)

    async def _follow_nats(self) -> None:
        import nats  # only a deployment with a NATS feed needs the client library

        async def deliver(msg: Any) -> None:
            self.receive(msg.data)

        async def disconnected() -> None:
            self.connected = False

        async def reconnected() -> None:
            self.connected = True

        while True:
            try:
                nc = await nats.connect(
                    servers=[self.url.url],
                    connect_timeout=2,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=RETRY_FIRST_S,
                    disconnected_cb=disconnected,
                    reconnected_cb=reconnected,
                )
                break
            except Exception as exc:
                log.warning("price feed: cannot reach %s (%s); retrying", self.url.url, exc)
                await asyncio.sleep(RETRY_MAX_S)
        await nc.subscribe(self.url.subject, cb=deliver)
        self.connected = True
        log.warning("price feed: following %s on %s", self.url.subject, self.url.url)
        try:
            await asyncio.Event().wait()  # until stopped
        finally:
            with contextlib.suppress(Exception):
                await nc.close()
