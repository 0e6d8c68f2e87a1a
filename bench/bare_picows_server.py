"""A bare quote broadcast server on picows: the baseline for ``quote_fanout.py``.

This is what a team would write by hand with the same library: every tick, build one
``quote`` notification per symbol (BTC_USD, ETH_USD, SOL_USD: the same JSON shape and size as
tradews sends for each, with a fresh ``timestamp``) and send the same bytes to every connection
subscribed to that symbol, one send per quote. A connection whose
send buffer is over the transport's high-water mark is skipped for that tick, as tradews does.

It answers any request with a JSON-RPC result so the benchmark client can speak to it exactly
as it speaks to tradews: ``rpc.login`` gets ``true``, ``quote_request`` subscribes the
connection to its ``symbol``. There is no authentication, no per-client pricing, no sequence per subscription.

    python bench/bare_picows_server.py --port 0 --tick-interval 0.01

prints ``listening on ws://127.0.0.1:PORT`` once it accepts connections; SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import signal
import time
from typing import Any

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

# What each demo stream of tradews looks like: start price, price decimals, quote size, spread.
SYMBOLS: dict[str, tuple[float, int, str, int]] = {
    "BTC_USD": (65_000.0, 2, "1.0000", 5),
    "ETH_USD": (3_200.0, 2, "10.000", 6),
    "SOL_USD": (150.0, 3, "100.00", 8),
}


class Feed:
    """A seeded random walk priced like the tradews demo stream of ``symbol`` (its tick, size
    and spread), whose quotes carry ``subscription``."""

    def __init__(
        self,
        symbol: str = "BTC_USD",
        subscription: str = "q1",
        seed: int = 1,
        volatility: float = 0.02,
    ) -> None:
        start, self._decimals, self._quantity, self._spread_bps = SYMBOLS[symbol]
        self.symbol = symbol
        self.subscription = subscription
        self._rng = random.Random(seed)
        self._price = start
        self._sigma = volatility / math.sqrt(3600.0)
        self._seq = 0
        self._prefix = f"{self._rng.getrandbits(32):08x}"

    def next_quote(self, now_ms: int, dt: float) -> bytes:
        self._price *= math.exp(self._sigma * math.sqrt(dt) * self._rng.gauss(0.0, 1.0))
        half = self._price * self._spread_bps / 10_000
        scale = 10**self._decimals
        self._seq += 1
        message: dict[str, Any] = {
            "jsonrpc": "2.0",
            "method": "quote",
            "params": {
                "subscription": self.subscription,
                "symbol": self.symbol,
                "buyPrice": f"{math.floor((self._price - half) * scale) / scale:.{self._decimals}f}",
                "sellPrice": f"{math.ceil((self._price + half) * scale) / scale:.{self._decimals}f}",
                "quantity": self._quantity,
                "quoteId": f"{self._prefix}-{self._seq:x}",
                "validUntil": now_ms + 3000,
                "seq": self._seq,
                "timestamp": now_ms,
            },
        }
        return json.dumps(message, separators=(",", ":")).encode()


class Subscriber(WSListener):  # type: ignore[misc]
    def __init__(self, subscribers: dict[str, set[Subscriber]]) -> None:
        self.transport: WSTransport | None = None
        self.writable = True
        self._subscribers = subscribers

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        for subscribers in self._subscribers.values():
            subscribers.discard(self)
        self.writable = False

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type is not WSMsgType.TEXT:
            return
        request = json.loads(frame.get_payload_as_bytes())
        result: Any = True
        if request.get("method") == "quote_request":
            symbol = request.get("params", {}).get("symbol", "BTC_USD")
            self._subscribers[symbol].add(self)
            subscription = f"q{list(SYMBOLS).index(symbol) + 1}"
            result = {
                "subscription": subscription,
                "symbol": symbol,
                "quantity": SYMBOLS[symbol][2],
            }
        reply = {"jsonrpc": "2.0", "result": result, "id": request.get("id")}
        transport.send(WSMsgType.TEXT, json.dumps(reply, separators=(",", ":")).encode())


async def broadcast(subscribers: dict[str, set[Subscriber]], tick_interval: float) -> None:
    """Every ``tick_interval`` (fixed schedule, no catch-up bursts) send one quote of each symbol
    to all its subscribers, one send per quote (a client of three symbols gets three sends)."""
    loop = asyncio.get_running_loop()
    feeds = [Feed(symbol, f"q{i + 1}", seed=i + 1) for i, symbol in enumerate(SYMBOLS)]
    text = WSMsgType.TEXT
    next_at = loop.time()
    while True:
        now_ms = time.time_ns() // 1_000_000
        for feed in feeds:
            if not subscribers[feed.symbol]:
                continue
            frame = feed.next_quote(now_ms, tick_interval)
            for sub in tuple(subscribers[feed.symbol]):
                if sub.writable and sub.transport is not None:
                    sub.transport.send(text, frame)
        next_at += tick_interval
        delay = next_at - loop.time()
        if delay < 0:
            next_at = loop.time()
            delay = 0
        await asyncio.sleep(delay)


async def main(host: str, port: int, tick_interval: float) -> None:
    subscribers: dict[str, set[Subscriber]] = {symbol: set() for symbol in SYMBOLS}

    def factory(request: WSUpgradeRequest) -> Subscriber:
        return Subscriber(subscribers)

    server = await ws_create_server(factory, host, port)
    bound = server.sockets[0].getsockname()[1]
    print(f"listening on ws://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(broadcast(subscribers, tick_interval))
    await stop.wait()
    task.cancel()
    server.close()
    for sub in {sub for subs in subscribers.values() for sub in subs}:
        if sub.transport is not None:
            sub.transport.disconnect()


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tick-interval", type=float, default=0.1)
    args = parser.parse_args(argv)
    uvloop.run(main(args.host, args.port, args.tick_interval))


if __name__ == "__main__":
    cli()
