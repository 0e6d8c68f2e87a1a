"""A bare quote broadcast server on picows: the baseline for ``quote_fanout.py``.

This is what a team would write by hand with the same library: every tick, build one
``quote`` notification (the same JSON shape and size as tradews sends, with a fresh
``timestamp``) and send the same bytes to every subscribed connection. A connection whose
send buffer is over the transport's high-water mark is skipped for that tick, as tradews does.

It answers any request with a JSON-RPC result so the benchmark client can speak to it exactly
as it speaks to tradews: ``rpc.login`` gets ``true``, ``quote_request`` subscribes the
connection. There is no authentication, no per-client pricing, no sequence per subscription.

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


class Feed:
    """A seeded random walk priced like the tradews demo BTC_USD stream (tick 0.01, 5 bps)."""

    def __init__(self, seed: int = 1, start: float = 65_000.0, volatility: float = 0.02) -> None:
        self._rng = random.Random(seed)
        self._price = start
        self._sigma = volatility / math.sqrt(3600.0)
        self._seq = 0
        self._prefix = f"{self._rng.getrandbits(32):08x}"

    def next_quote(self, now_ms: int, dt: float) -> bytes:
        self._price *= math.exp(self._sigma * math.sqrt(dt) * self._rng.gauss(0.0, 1.0))
        half = self._price * 5 / 10_000
        self._seq += 1
        message: dict[str, Any] = {
            "jsonrpc": "2.0",
            "method": "quote",
            "params": {
                "subscription": "q1",
                "symbol": "BTC_USD",
                "buyPrice": f"{math.floor((self._price - half) * 100) / 100:.2f}",
                "sellPrice": f"{math.ceil((self._price + half) * 100) / 100:.2f}",
                "quantity": "1.0000",
                "quoteId": f"{self._prefix}-{self._seq:x}",
                "validUntil": now_ms + 3000,
                "seq": self._seq,
                "timestamp": now_ms,
            },
        }
        return json.dumps(message, separators=(",", ":")).encode()


class Subscriber(WSListener):  # type: ignore[misc]
    def __init__(self, subscribers: set[Subscriber]) -> None:
        self.transport: WSTransport | None = None
        self.writable = True
        self._subscribers = subscribers

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._subscribers.discard(self)
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
            self._subscribers.add(self)
            result = {"subscription": "q1", "symbol": "BTC_USD", "quantity": "1.0000"}
        reply = {"jsonrpc": "2.0", "result": result, "id": request.get("id")}
        transport.send(WSMsgType.TEXT, json.dumps(reply, separators=(",", ":")).encode())


async def broadcast(subscribers: set[Subscriber], tick_interval: float) -> None:
    """Every ``tick_interval`` (fixed schedule, no catch-up bursts) send one quote to all."""
    loop = asyncio.get_running_loop()
    feed = Feed()
    text = WSMsgType.TEXT
    next_at = loop.time()
    while True:
        frame = feed.next_quote(time.time_ns() // 1_000_000, tick_interval)
        for sub in tuple(subscribers):
            if sub.writable and sub.transport is not None:
                sub.transport.send(text, frame)
        next_at += tick_interval
        delay = next_at - loop.time()
        if delay < 0:
            next_at = loop.time()
            delay = 0
        await asyncio.sleep(delay)


async def main(host: str, port: int, tick_interval: float) -> None:
    subscribers: set[Subscriber] = set()

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
    for sub in list(subscribers):
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
