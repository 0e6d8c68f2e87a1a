"""Load generator of ``quote_fanout.py``: many picows client connections in one process.

Started by ``quote_fanout.py`` (one or more of these processes per measurement); speaks to it
over stdin/stdout, one JSON object a line:

1. opens ``--connections`` WebSocket connections to ``--url``; on each sends ``rpc.login`` and
   one ``quote_request`` for each of ``--symbols`` (one quote stream each), and waits until every
   connection has had a quote;
2. prints ``{"ready": true, ...}``;
3. reads ``{"start": T0, "end": T1}`` (wall-clock seconds): counts every quote received in
   [T0, T1) and the delivery latency of each, i.e. receive wall time minus the quote's
   ``timestamp`` (server wall clock in whole ms at the pulse), and its own CPU time over the same
   window;
4. prints the result object, closes its connections and exits.

The latency histogram has 0.1 ms buckets of ``recv_time - timestamp`` (``timestamp`` floored to
the ms by the server); the orchestrator subtracts 0.5 ms to centre it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import sys
import time
from typing import Any

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from tradews.codecs.pb import tradews_pb2 as pb
from tradews.codecs.protobuf import request_message

BUCKET_NS = 100_000  # 0.1 ms
MAX_BUCKET = 100_000  # 10 s; anything later lands in the last bucket
_QUOTE_PREFIX = b'{"jsonrpc":"2.0","method":"quote",'
# All three servers end a quote with ``"timestamp":<13 digits>}}``; anything else is searched.
_TS_KEY = b'"timestamp":'
_TIMESTAMP = re.compile(rb'"timestamp":(\d+)')


class Recorder:
    """Shared by all connections of the process: message count and latency histogram."""

    __slots__ = ("count", "hist", "ignored")

    def __init__(self) -> None:
        self.count = 0
        self.ignored = 0
        self.hist = [0] * (MAX_BUCKET + 1)

    def reset(self) -> None:
        self.count = 0
        self.ignored = 0
        self.hist = [0] * (MAX_BUCKET + 1)


class QuoteListener(WSListener):  # type: ignore[misc]
    """Counts quotes and records their latency; kept lean, it runs for every message."""

    def __init__(
        self, recorder: Recorder, first_quote: asyncio.Future[None], proto: bool = False
    ) -> None:
        self.proto = proto
        self.recorder = recorder
        self.count = 0
        self.closed = False
        self.errors: list[str] = []
        self._first_quote: asyncio.Future[None] | None = first_quote

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        now_ns = time.time_ns()
        if self.proto and frame.msg_type is WSMsgType.BINARY:
            message = pb.ServerMessage.FromString(frame.get_payload_as_bytes())
            if message.WhichOneof("payload") != "market_data":
                if message.WhichOneof("payload") == "error":
                    self.errors.append(str(message.error))
                return
            self._record(now_ns, message.market_data.quote.timestamp)
            return
        if frame.msg_type is not WSMsgType.TEXT:
            if frame.msg_type is WSMsgType.CLOSE:
                self.errors.append(f"closed by server: {frame.get_close_reason()}")
                transport.disconnect()
            return
        data = frame.get_payload_as_bytes()
        if not data.startswith(_QUOTE_PREFIX):
            if b'"error"' in data:
                self.errors.append(data.decode(errors="replace"))
            return
        if data[-27:-15] == _TS_KEY:
            timestamp_ms = int(data[-15:-2])
        elif m := _TIMESTAMP.search(data):
            timestamp_ms = int(m.group(1))
        else:
            self.recorder.ignored += 1
            return
        self._record(now_ns, timestamp_ms)

    def _record(self, now_ns: int, timestamp_ms: int) -> None:
        self.count += 1
        rec = self.recorder
        rec.count += 1
        bucket = (now_ns - timestamp_ms * 1_000_000) // BUCKET_NS
        rec.hist[bucket if bucket < MAX_BUCKET else MAX_BUCKET] += 1
        if self._first_quote is not None:
            self._first_quote.set_result(None)
            self._first_quote = None

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True


def _frame(method: str, params: dict[str, Any], id_: int) -> bytes:
    message = {"jsonrpc": "2.0", "method": method, "params": params, "id": id_}
    return json.dumps(message, separators=(",", ":")).encode()


def _proto_frame(method: str, params: dict[str, Any], id_: int) -> bytes:
    return bytes(request_message(method, params, id_).SerializeToString())


async def _open(
    url: str,
    login: bytes,
    requests: list[bytes],
    recorder: Recorder,
    gate: asyncio.Semaphore,
    proto: bool,
) -> tuple[WSTransport, QuoteListener, asyncio.Future[None]]:
    first_quote: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    headers = {"Sec-WebSocket-Protocol": "tradews.v1.proto"} if proto else None
    async with gate:
        transport, listener = await ws_connect(
            lambda: QuoteListener(recorder, first_quote, proto),
            url,
            websocket_handshake_timeout=30,
            extra_headers=headers,
        )
    kind = WSMsgType.BINARY if proto else WSMsgType.TEXT
    transport.send(kind, login)
    for request in requests:
        transport.send(kind, request)
    return transport, listener, first_quote


async def _read_line(loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if not line:
        raise SystemExit("stdin closed")
    result: dict[str, Any] = json.loads(line)
    return result


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _sleep_until(wall: float) -> None:
    await asyncio.sleep(max(0.0, wall - time.time()))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    proto = args.encoding == "proto"
    frame = _proto_frame if proto else _frame
    login = frame("rpc.login", {"apiKey": args.key, "apiSecret": args.secret}, 1)
    requests = [
        frame("quote_request", {"symbol": symbol, "type": "RFQ"}, 2 + i)
        for i, symbol in enumerate(args.symbols)
    ]
    gate = asyncio.Semaphore(args.connect_concurrency)
    started = time.monotonic()
    opened = await asyncio.gather(
        *(_open(args.url, login, requests, recorder, gate, proto) for _ in range(args.connections))
    )
    await asyncio.wait_for(asyncio.gather(*(f for _, _, f in opened)), timeout=60)
    listeners = [listener for _, listener, _ in opened]
    print(
        json.dumps({"ready": True, "connect_seconds": round(time.monotonic() - started, 3)}),
        flush=True,
    )

    window = await _read_line(loop)
    await _sleep_until(window["start"])
    recorder.reset()
    counts_before = [listener.count for listener in listeners]
    cpu_before, wall_before = _cpu_seconds(), time.time()
    await _sleep_until(window["end"])
    cpu_after, wall_after = _cpu_seconds(), time.time()
    count, hist, ignored = recorder.count, recorder.hist, recorder.ignored
    per_conn = [
        listener.count - before for listener, before in zip(listeners, counts_before, strict=True)
    ]
    recorder.reset()

    errors = sorted({e for listener in listeners for e in listener.errors})
    result = {
        "pid": os.getpid(),
        "connections": len(listeners),
        "closed": sum(listener.closed for listener in listeners),
        "messages": count,
        "ignored": ignored,
        "wall_seconds": wall_after - wall_before,
        "cpu_seconds": cpu_after - cpu_before,
        "per_connection_min": min(per_conn),
        "per_connection_max": max(per_conn),
        "hist_bucket_ns": BUCKET_NS,
        "hist": [(bucket, n) for bucket, n in enumerate(hist) if n],
        "errors": errors[:5],
    }
    for transport, _, _ in opened:
        transport.disconnect()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="quote fan-out load generator (one process)")
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", default="")
    parser.add_argument("--secret", default="")
    parser.add_argument("--symbols", nargs="+", default=["BTC_USD"])
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--connect-concurrency", type=int, default=50)
    parser.add_argument("--encoding", choices=("json", "proto"), default="json")
    args = parser.parse_args(argv)
    result = uvloop.run(run(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
