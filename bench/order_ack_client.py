"""Load generator of ``order_ack.py``: closed-loop order round trips on picows connections.

Started by ``order_ack.py`` (one or more of these processes per measurement); speaks to it over
stdin/stdout, one JSON object a line:

1. reads ``{"url": ..., "keys": [{"apiKey": ..., "apiSecret": ...}, ...], "connections": N,
   "first": I}``; opens N WebSocket connections to ``url`` and logs connection ``i`` in with
   ``keys[(first + i) % len(keys)]`` (plain ``rpc.login``; a server that answers anything, like
   the bare echo server, is fine too);
2. prints ``{"ready": true}``;
3. reads ``{"start": T0, "end": T1}`` (wall-clock seconds). Every connection runs its closed
   loop from the start: ``order_place`` of a resting limit order, wait for the reply, then
   ``order_cancel`` of that order, wait, again. Round trips that end in [T0, T1) are counted
   and timed (at the client, in a histogram of 1 µs buckets), and the process's own CPU time
   over the window is measured;
4. prints the result object and exits.

Everything per request happens in picows callbacks, with request frames built by formatting
bytes and the order id found in the reply without parsing the rest of it, so that the
generator costs as little CPU as a Python client can.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import sys
import time
from typing import Any

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

MAX_US = 1_000_000  # histogram range: 1 s; anything later lands in the last bucket
_ORDER_ID = re.compile(rb'"orderId":"?(\d+)')
_ERROR = b'"error":'
_ID = b'"id":'


class Recorder:
    """Shared by the process's connections: the window, and the histogram of round trips."""

    __slots__ = ("start_ns", "end_ns", "hist", "count", "errors", "running")

    def __init__(self) -> None:
        self.start_ns = 0
        self.end_ns = 0
        self.hist = [0] * (MAX_US + 1)
        self.count = 0
        self.errors = 0
        self.running = False


class OrderLoop(WSListener):  # type: ignore[misc]
    """One connection: logs in, then places and cancels in a closed loop once started."""

    def __init__(self, recorder: Recorder, n: int) -> None:
        self.transport: WSTransport | None = None
        self.recorder = recorder
        self.n = n
        self.i = 0
        self.sent_ns = 0
        self.placing = True
        self.logged_in: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.logged_in.done():
            self.logged_in.set_exception(ConnectionError("disconnected"))
        self.recorder.running = False

    def login(self, key: dict[str, str]) -> None:
        request = {
            "jsonrpc": "2.0",
            "method": "rpc.login",
            "params": {"apiKey": key["apiKey"], "apiSecret": key["apiSecret"]},
            "id": 0,
        }
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, json.dumps(request).encode())

    def place(self) -> None:
        self.i += 1
        price = b"%d.%02d" % (1000 + self.i % 500, self.n % 100)
        frame = (
            b'{"jsonrpc":"2.0","method":"order_place","params":{"symbol":"BTC_USD","side":"buy",'
            b'"type":"limit","quantity":"0.0001","price":"%s"},"id":%d}' % (price, self.i)
        )
        self.placing = True
        self.sent_ns = time.perf_counter_ns()
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, frame)

    def cancel(self, order_id: bytes) -> None:
        frame = b'{"jsonrpc":"2.0","method":"order_cancel","params":{"orderId":%s},"id":%d}' % (
            order_id,
            self.i,
        )
        self.placing = False
        self.sent_ns = time.perf_counter_ns()
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, frame)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not WSMsgType.TEXT:
            if frame.msg_type is WSMsgType.CLOSE:
                transport.disconnect()
            return
        payload = frame.get_payload_as_bytes()
        if _ID not in payload:
            return  # a notification (none are subscribed to), not a reply
        if not self.logged_in.done():
            self.logged_in.set_result(_ERROR not in payload)
            return
        now = time.perf_counter_ns()
        rec = self.recorder
        if rec.start_ns <= now < rec.end_ns:
            us = (now - self.sent_ns) // 1000
            rec.hist[us if us < MAX_US else MAX_US] += 1
            rec.count += 1
            if _ERROR in payload:
                rec.errors += 1
        if not rec.running:
            return
        if self.placing:
            m = _ORDER_ID.search(payload)
            # The echo server sends the request back (no orderId): cancel an id it echoes too.
            self.cancel(m.group(1) if m else b"0")
        else:
            self.place()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    setup: dict[str, Any] = json.loads(await reader.readline())
    recorder = Recorder()
    keys = setup["keys"]
    loops: list[OrderLoop] = []
    for i in range(setup["connections"]):
        n = setup["first"] + i
        _, listener = await ws_connect(
            lambda n=n: OrderLoop(recorder, n), setup["url"], max_frame_size=1 << 24
        )
        listener.login(keys[n % len(keys)])
        if not await listener.logged_in:
            raise SystemExit(f"login refused on connection {n}")
        loops.append(listener)
    print(json.dumps({"ready": True}), flush=True)
    window = json.loads(await reader.readline())
    # wall-clock window -> perf_counter_ns
    offset = time.perf_counter_ns() - time.time_ns()
    recorder.start_ns = int(window["start"] * 1e9) + offset
    recorder.end_ns = int(window["end"] * 1e9) + offset
    recorder.running = True
    for listener in loops:
        listener.place()
    await asyncio.sleep(max(0.0, window["start"] - time.time()))
    cpu0, wall0 = _cpu(), time.perf_counter()
    await asyncio.sleep(max(0.0, window["end"] - time.time()))
    cpu1, wall1 = _cpu(), time.perf_counter()
    recorder.running = False
    await asyncio.sleep(0.2)  # let the last round trips end
    for listener in loops:
        if listener.transport is not None:
            listener.transport.disconnect()
    hist = {str(us): c for us, c in enumerate(recorder.hist) if c}
    result = {
        "count": recorder.count,
        "errors": recorder.errors,
        "cpu_s": cpu1 - cpu0,
        "wall_s": wall1 - wall0,
        "hist_us": hist,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    uvloop.run(main())
