"""An async Python client for the tradews JSON-RPC WebSocket API.

    async with await Client.connect("ws://127.0.0.1:8765") as client:
        await client.login(api_key, api_secret, signed=True)  # the secret stays here
        await client.quote_request("BTC_USD")
        async for note in client.notifications():
            print(note.method, note.params)

:meth:`Client.call` sends one request and returns its ``result`` or raises :class:`RpcError`
with the server's code, message and data. Notifications (quotes, market data) are queued in
arrival order and read with :meth:`Client.notifications` or :meth:`Client.next_notification`.
When the connection ends, pending calls raise :class:`ConnectionClosed` and the notification
iterator stops. :class:`StreamTracker` resumes the private streams (``orders``, ``balances``)
on a new connection from the last message seen, and :class:`BookReplica` keeps a book.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from ssl import SSLContext
from types import TracebackType
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from picows import WSError, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from tradews.api import signing
from tradews.api.checksum import book_checksum
from tradews.codecs import protobuf as pbc
from tradews.codecs.pb import tradews_pb2 as pb


class ClientError(Exception):
    """Base of every error this client raises."""


class RpcError(ClientError):
    """The server answered a call with an error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        self.code = code
        self.message = message
        self.data = data
        detail = f" ({data})" if data is not None else ""
        super().__init__(f"error {code}: {message}{detail}")


class BookOutOfSync(ClientError):
    """A book message did not follow the last one, or the checksum disagrees: resubscribe."""


class BookReplica:
    """A local copy of a ``book.SYMBOL`` channel, kept from its snapshot and deltas.

    ``tick`` and ``lot`` are the instrument's (see the ``instruments`` method): the checksum is
    computed on the integer-scaled book, exactly as the server does (``tradews.api.checksum``).
    """

    def __init__(self, tick: str, lot: str) -> None:
        self._tick = Decimal(tick)
        self._lot = Decimal(lot)
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.seq: int | None = None

    def apply(self, message: dict[str, Any]) -> None:
        """Apply one ``book`` notification's params; raise :class:`BookOutOfSync` on a gap."""
        if message["type"] == "snapshot":
            self.bids = {Decimal(p): Decimal(q) for p, q in message["bids"]}
            self.asks = {Decimal(p): Decimal(q) for p, q in message["asks"]}
        else:
            if self.seq is None or message["prevSeq"] != self.seq:
                raise BookOutOfSync(f"expected prevSeq {self.seq}, got {message['prevSeq']}")
            for side, changes in ((self.bids, message["bids"]), (self.asks, message["asks"])):
                for p, q in changes:
                    if Decimal(q) == 0:
                        side.pop(Decimal(p), None)
                    else:
                        side[Decimal(p)] = Decimal(q)
        self.seq = message["seq"]
        if self.checksum() != message["checksum"]:
            raise BookOutOfSync(f"checksum mismatch at seq {self.seq}")

    def checksum(self) -> int:
        bids = sorted(self.bids.items(), reverse=True)
        asks = sorted(self.asks.items())
        return book_checksum(
            [(int(p / self._tick), int(q / self._lot)) for p, q in bids],
            [(int(p / self._tick), int(q / self._lot)) for p, q in asks],
        )


class ConnectionClosed(ClientError):
    """The connection ended; ``code`` and ``reason`` are from the server's close frame if any."""

    def __init__(self, code: int | None, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"connection closed ({code}: {reason})" if code else "connection closed")


@dataclass(frozen=True, slots=True)
class Notification:
    method: str
    params: Any


class StreamGap(ClientError):
    """A private stream message came after a gap: resume from the last one seen."""


RESUME_UNAVAILABLE = 2009


class StreamTracker:
    """The last ``streamSeq`` seen on each private stream of one account (``orders``, which
    carries order updates and fills, and ``balances``), so that a new connection picks up
    exactly where the old one stopped: nothing lost, nothing twice.

        tracker = StreamTracker()
        await tracker.subscribe(client, "orders")
        async for note in client.notifications():
            if tracker.observe(note):
                handle(note)
        # ... the connection drops; on a new, logged-in one:
        resumed = await tracker.resume(client)  # {"orders": True}: nothing was missed

    A stream that cannot be resumed (its messages after the last one seen are no longer kept)
    is subscribed afresh and reported False: read ``orders_open`` / ``balances`` again.
    """

    CHANNEL_OF = {"orders": "orders", "fills": "orders", "balances": "balances"}

    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    async def subscribe(self, client: Client, channel: str) -> Any:
        """Subscribe to ``channel``: resumed if this tracker has seen it, else from now on."""
        reply = await client.subscribe(channel, since=self.last.get(channel))
        self.last.setdefault(channel, int(reply["streamSeq"]))
        return reply

    async def resume(self, client: Client) -> dict[str, bool]:
        """Subscribe ``client`` to every tracked stream from its last message; returns, per
        channel, whether it resumed (False: started afresh, the state must be read again)."""
        out = {}
        for channel, last in list(self.last.items()):
            try:
                await client.subscribe(channel, since=last)
                out[channel] = True
            except RpcError as exc:
                if exc.code != RESUME_UNAVAILABLE:
                    raise
                reply = await client.subscribe(channel)
                self.last[channel] = int(reply["streamSeq"])
                out[channel] = False
        return out

    def observe(self, note: Notification) -> bool:
        """Take a notification; return False for a private stream message already seen (to
        skip), True for anything else. Raises :class:`StreamGap` if messages were skipped."""
        channel = self.CHANNEL_OF.get(note.method)
        seq = note.params.get("streamSeq") if isinstance(note.params, dict) else None
        if channel is None or seq is None or channel not in self.last:
            return True  # not a numbered message of a tracked stream (a balances snapshot row)
        last = self.last[channel]
        if seq <= last:
            return False
        if seq != last + 1:
            raise StreamGap(f"{channel}: streamSeq {seq} after {last}")
        self.last[channel] = seq
        return True


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_CLOSED = object()


class _Listener(WSListener):  # type: ignore[misc]
    def __init__(self, proto: bool = False) -> None:
        self.proto = proto
        self.pending: dict[Any, asyncio.Future[Any]] = {}
        self.notes: asyncio.Queue[Any] = asyncio.Queue()
        self.frames: asyncio.Queue[Any] | None = None
        self.closed: ConnectionClosed | None = None

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            payload = frame.get_payload_as_bytes()
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            self.closed = ConnectionClosed(code, frame.get_close_reason() if code else "")
            if code is None:  # an empty CLOSE is answered with an empty one (RFC 6455 5.5.1)
                transport.send(WSMsgType.CLOSE, b"")
            else:
                transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return
        payload = frame.get_payload_as_bytes()
        if self.frames is not None:
            self.frames.put_nowait(payload)
            return
        if self.proto:
            self._dispatch_proto(payload)
            return
        try:
            message = _decoder.decode(payload)
        except msgspec.DecodeError:
            return
        for item in message if isinstance(message, list) else (message,):
            self._dispatch(item)

    def _dispatch_proto(self, payload: bytes) -> None:
        try:
            message = pb.ServerMessage.FromString(payload)
        except Exception:
            return
        future = self.pending.pop(message.request_id, None) if message.request_id else None
        if future is not None:
            if not future.done():
                future.set_result(message)
            return
        for method, params in pbc.push_notifications(message):
            self.notes.put_nowait(Notification(method, params))

    def _dispatch(self, item: Any) -> None:
        if not isinstance(item, dict):
            return
        if "method" in item and "id" not in item:
            self.notes.put_nowait(Notification(item["method"], item.get("params")))
            return
        future = self.pending.pop(item.get("id"), None)
        if future is not None and not future.done():
            future.set_result(item)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.closed is None:
            self.closed = ConnectionClosed(None, "connection lost")
        for future in self.pending.values():
            if not future.done():
                future.set_exception(self.closed)
        self.pending.clear()
        self.notes.put_nowait(_CLOSED)
        if self.frames is not None:
            self.frames.put_nowait(_CLOSED)


class Client:
    """One connection to a tradews server. Create it with :meth:`connect`."""

    def __init__(self, transport: WSTransport, listener: _Listener, encoding: str) -> None:
        self._transport = transport
        self._listener = listener
        self._ids = itertools.count(1)
        self.encoding = encoding
        self._kind = WSMsgType.BINARY if encoding == "proto" else WSMsgType.TEXT
        # Added to the local clock when signing a login: learnt from the server's
        # STALE_TIMESTAMP error (data.serverTime), so a skewed clock costs one retry.
        self.clock_offset_ms = 0

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        encoding: str = "json",
        raw: bool = False,
        timeout: float = 10,
        ssl: SSLContext | None = None,
        headers: dict[str, str] | None = None,
    ) -> Client:
        """Open a connection speaking ``encoding``: ``"json"`` (JSON-RPC 2.0, text frames) or
        ``"proto"`` (protobuf envelopes, binary frames; subprotocol ``tradews.v1.proto``). The
        methods and results are the same either way. With ``raw=True`` every frame is kept as
        bytes for :meth:`recv_frame` and nothing is parsed (for protocol tests and tools).
        ``ssl`` is the context for a ``wss://`` URL (default: the system's trusted CAs);
        ``headers`` are added to the handshake request."""
        if encoding not in ("json", "proto"):
            raise ClientError(f"encoding must be 'json' or 'proto', not {encoding!r}")
        proto = encoding == "proto"
        extra = dict(headers or {})
        if proto:
            extra["Sec-WebSocket-Protocol"] = "tradews.v1.proto"
        try:
            transport, listener = await asyncio.wait_for(
                ws_connect(lambda: _Listener(proto), url, extra_headers=extra, ssl_context=ssl),
                timeout,
            )
        except TimeoutError:
            raise ClientError(f"timed out connecting to {url}") from None
        except WSError as exc:  # the server refused the handshake (403 for a browser origin...)
            raise ClientError(f"cannot connect to {url}: {exc}") from None
        if not isinstance(listener, _Listener):
            transport.disconnect()
            raise ClientError(f"cannot connect to {url}: no WebSocket handshake")
        if proto and transport.response.headers.get("Sec-WebSocket-Protocol") != "tradews.v1.proto":
            transport.disconnect()
            raise ClientError("the server did not accept the tradews.v1.proto subprotocol")
        if raw:
            listener.frames = asyncio.Queue()
        return cls(transport, listener, encoding)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # Calls ---------------------------------------------------------------------------------

    async def call(self, method: str, params: Any = None, *, timeout: float = 10) -> Any:
        """Send a request and return its result; raise :class:`RpcError` on an error reply."""
        if self._listener.closed is not None:
            raise self._listener.closed
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.encoding == "proto":
            try:
                data = pbc.request_message(method, params, request_id).SerializeToString()
            except pbc.NotInProtobuf as exc:
                raise ClientError(str(exc)) from None
        else:
            message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
            if params is not None:
                message["params"] = params
            data = _encoder.encode(message)
        self._listener.pending[request_id] = future
        self._transport.send(self._kind, data)
        try:
            async with asyncio.timeout(timeout):  # no extra task per call, unlike wait_for
                reply = await future
        finally:
            self._listener.pending.pop(request_id, None)
        if self.encoding == "proto":
            try:
                return pbc.response_value(method, reply)
            except pbc.ServerError as exc:
                raise RpcError(exc.code, exc.message, exc.data) from None
        if "error" in reply:
            err = reply["error"]
            raise RpcError(err.get("code"), err.get("message"), err.get("data"))
        return reply.get("result")

    def notify(self, method: str, params: Any = None) -> None:
        """Send a JSON-RPC notification (no reply will come). JSON encoding only."""
        if self.encoding != "json":
            raise ClientError("notifications (calls without a reply) exist only in JSON-RPC")
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self._transport.send(WSMsgType.TEXT, _encoder.encode(message))

    async def login(
        self,
        api_key: str,
        api_secret: str | None = None,
        *,
        signed: bool = False,
        private_key: str | Ed25519PrivateKey | None = None,
        timestamp: int | None = None,
        nonce: str | None = None,
    ) -> bool:
        """Log in with an API key; returns True or raises :class:`RpcError`.

        - ``login(key, secret)``: plain login, the secret is sent (over TLS, one hopes).
        - ``login(key, secret, signed=True)``: signed login of an HMAC key: the request carries
          an HMAC-SHA256 of ``tradews-login-v1\\n{key}\\n{timestamp}\\n{nonce}`` keyed with the
          secret, never the secret itself.
        - ``login(key, private_key=...)``: signed login of an Ed25519 key, with the private
          key as printed by ``tradews key create --type ed25519`` (base64 of the 32-byte seed),
          as PEM, or as a ``cryptography`` key object.

        A signed login uses the local clock plus :attr:`clock_offset_ms` and a fresh random
        nonce unless ``timestamp`` / ``nonce`` are given. If the server answers that the
        timestamp is outside its window (error 1010) and no ``timestamp`` was given, the client
        adopts the server's time from the error and tries once more.
        """
        if private_key is not None:
            if api_secret is not None:
                raise ClientError("give an api_secret (HMAC key) or a private_key, not both")
            key = (
                private_key
                if isinstance(private_key, Ed25519PrivateKey)
                else signing.parse_private_key(private_key)
            )
            sign = functools.partial(signing.ed25519_signature, key)
        elif api_secret is None:
            raise ClientError("give the api_secret, or the private_key of an Ed25519 key")
        elif not signed:
            return bool(await self.call("rpc.login", {"apiKey": api_key, "apiSecret": api_secret}))
        else:
            sign = functools.partial(signing.hmac_signature, api_secret)
        for attempt in (1, 2):
            ts = timestamp if timestamp is not None else _now_ms() + self.clock_offset_ms
            once = nonce if nonce is not None else signing.new_nonce()
            params = {
                "apiKey": api_key,
                "timestamp": ts,
                "nonce": once,
                "signature": sign(signing.login_message(api_key, ts, once)),
            }
            try:
                return bool(await self.call("rpc.login", params))
            except RpcError as exc:
                server_time = exc.data.get("serverTime") if isinstance(exc.data, dict) else None
                if exc.code != 1010 or timestamp is not None or attempt == 2 or not server_time:
                    raise
                self.clock_offset_ms = int(server_time) - _now_ms()
        raise AssertionError("unreachable")

    async def quote_request(self, symbol: str, *, quantity: str | None = None) -> Any:
        params: dict[str, Any] = {"symbol": symbol, "type": "RFQ"}
        if quantity is not None:
            params["quantity"] = quantity
        return await self.call("quote_request", params)

    async def quote_cancel(self, subscription: str) -> bool:
        return bool(await self.call("quote_cancel", {"subscription": subscription}))

    async def market_data_request(self) -> Any:
        return await self.call("market_data_request")

    async def place_order(
        self,
        symbol: str,
        side: str,
        quantity: str,
        *,
        price: str | None = None,
        type: str | None = None,
        time_in_force: str = "GTC",
        post_only: bool = False,
        client_order_id: str | None = None,
    ) -> Any:
        """Place an order; returns its state once durable, raises :class:`RpcError` (code 4001,
        ``data["reason"]``) if rejected. ``type`` defaults to limit with a price, else market."""
        params: dict[str, Any] = {
            "symbol": symbol,
            "side": side,
            "type": type or ("limit" if price is not None else "market"),
            "quantity": quantity,
            "timeInForce": time_in_force,
            "postOnly": post_only,
        }
        if price is not None:
            params["price"] = price
        if client_order_id is not None:
            params["clientOrderId"] = client_order_id
        return await self.call("order_place", params)

    async def subscribe(
        self, channel: str, *, depth: int | None = None, since: int | None = None
    ) -> Any:
        """Subscribe to a channel; returns ``{"channel": ...}``, with ``streamSeq`` for orders
        and balances. ``since`` (orders and balances) resumes the stream: every message with a
        greater ``streamSeq`` is replayed, then live ones follow; :class:`RpcError` 2009 if
        they are no longer kept. ``depth``: levels per side of a book channel."""
        params: dict[str, Any] = {"channel": channel}
        if depth is not None:
            params["depth"] = depth
        if since is not None:
            params["since"] = since
        return await self.call("subscribe", params)

    async def time(self) -> int:
        """The server's clock (ms). Also the application-level heartbeat: any message counts
        as activity, so a client that calls it now and then is never pinged."""
        return int((await self.call("time"))["time"])

    async def cancel_on_disconnect(self, enabled: bool = True) -> bool:
        """Have the orders this connection places from now on cancelled if it ends without
        :meth:`logout` (``enabled=False`` turns that off, leaving them open). Returns the
        setting now."""
        return bool((await self.call("cancel_on_disconnect", {"enabled": enabled}))["enabled"])

    async def cancel_all_after(self, timeout_ms: int) -> int | None:
        """Arm (or re-arm) the account's dead-man's switch: unless called again within
        ``timeout_ms`` (1000 to 600000), all the account's open orders are cancelled. 0
        disarms it. Returns the deadline (ms since the epoch), or None when disarmed."""
        deadline = (await self.call("cancel_all_after", {"timeoutMs": timeout_ms}))["deadline"]
        return None if deadline is None else int(deadline)

    async def logout(self) -> bool:
        """End the session cleanly: cancel-on-disconnect is turned off without cancelling
        anything, then the server closes the connection (1000); :meth:`wait_closed` waits
        for that."""
        return bool(await self.call("rpc.logout"))

    # Notifications -------------------------------------------------------------------------

    async def next_notification(self, *, timeout: float = 10) -> Notification:
        """The next notification; raises :class:`ConnectionClosed` when the connection ends."""
        item = await asyncio.wait_for(self._listener.notes.get(), timeout)
        if item is _CLOSED:
            self._listener.notes.put_nowait(_CLOSED)
            assert self._listener.closed is not None
            raise self._listener.closed
        assert isinstance(item, Notification)
        return item

    def drain_notifications(self) -> list[Notification]:
        """Return, and forget, every notification received but not yet read."""
        notes = self._listener.notes
        drained: list[Notification] = []
        while not notes.empty():
            item = notes.get_nowait()
            if item is _CLOSED:
                notes.put_nowait(_CLOSED)
                break
            drained.append(item)
        return drained

    async def notifications(self) -> AsyncIterator[Notification]:
        """Iterate notifications until the connection ends."""
        while True:
            try:
                yield await self.next_notification(timeout=3600)
            except ConnectionClosed:
                return

    # Raw frames ----------------------------------------------------------------------------

    def send_text(self, data: str | bytes) -> None:
        payload = data.encode() if isinstance(data, str) else data
        self._transport.send(WSMsgType.TEXT, payload)

    def send_binary(self, data: bytes) -> None:
        self._transport.send(WSMsgType.BINARY, data)

    async def recv_frame(self, *, timeout: float = 10) -> bytes:
        """The next frame's payload (``raw=True`` clients only)."""
        frames = self._listener.frames
        if frames is None:
            raise ClientError("recv_frame needs a client connected with raw=True")
        item = await asyncio.wait_for(frames.get(), timeout)
        if item is _CLOSED:
            frames.put_nowait(_CLOSED)
            assert self._listener.closed is not None
            raise self._listener.closed
        assert isinstance(item, bytes)
        return item

    async def recv_json(self, *, timeout: float = 10) -> Any:
        return _decoder.decode(await self.recv_frame(timeout=timeout))

    # Lifecycle -----------------------------------------------------------------------------

    @property
    def closed(self) -> ConnectionClosed | None:
        return self._listener.closed

    async def wait_closed(self, *, timeout: float = 10) -> ConnectionClosed:
        await asyncio.wait_for(self._transport.wait_disconnected(), timeout)
        assert self._listener.closed is not None
        return self._listener.closed

    def abort(self) -> None:
        """Drop the TCP connection at once, without a close handshake (as a crash would)."""
        self._transport.underlying_transport.abort()

    async def close(self) -> None:
        if not self._transport.is_disconnected:
            if not self._transport.is_close_frame_sent:
                self._transport.send_close()
            self._transport.disconnect()
            await self._transport.wait_disconnected()
