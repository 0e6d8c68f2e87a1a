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

:class:`TradewsClient` is the SDK built on all of that (docs/sdk.md): typed results, streams as
async iterators, and one session kept up across reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal
from ssl import SSLContext
from types import TracebackType
from typing import Any, NamedTuple

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

    @property
    def reason(self) -> str | None:
        """``data["reason"]`` when the server gave one (the engine's reason for a 4001)."""
        return self.data.get("reason") if isinstance(self.data, dict) else None


class AuthError(RpcError):
    """1001-1013: not logged in, bad or revoked credentials, missing permission."""


class InvalidRequest(RpcError):
    """-32700..-32600 and 2001-2007: a malformed call, an unknown symbol or channel."""


class NoQuote(RpcError):
    """2003 / 2008: the desk has no price or cannot fill the size now; ask again later."""


class ResumeUnavailable(RpcError):
    """2009: a private stream's messages after ``since`` are no longer kept."""


class RateLimited(RpcError):
    """3001 / 3002: over a limit; ``retry_after`` (ms) says when to try again."""

    @property
    def retry_after(self) -> int | None:
        value = self.data.get("retryAfter") if isinstance(self.data, dict) else None
        return None if value is None else int(value)


class OrderRejected(RpcError):
    """4001: the engine refused the command; :attr:`reason` says why (``INSUFFICIENT_FUNDS``...)."""


class EngineUnavailable(RpcError):
    """4002: not now (trading halted, the bus or the database down): retry."""


def rpc_error(code: int, message: str, data: Any = None) -> RpcError:
    """The :class:`RpcError` subclass for ``code`` (a plain RpcError for any other code)."""
    kind: type[RpcError] = RpcError
    if 1001 <= code <= 1999:
        kind = AuthError
    elif code in (2003, 2008):
        kind = NoQuote
    elif code == 2009:
        kind = ResumeUnavailable
    elif code in (-32700, -32600, -32601, -32602) or 2001 <= code <= 2999:
        kind = InvalidRequest
    elif code in (3001, 3002):
        kind = RateLimited
    elif code == 4001:
        kind = OrderRejected
    elif code == 4002:
        kind = EngineUnavailable
    return kind(code, message, data)


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
SESSION_LIMIT = 1013


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
                raise rpc_error(exc.code, exc.message, exc.data) from None
        if "error" in reply:
            err = reply["error"]
            raise rpc_error(err.get("code"), err.get("message"), err.get("data"))
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


async def login_signed(
    client: Client,
    api_key: str,
    api_secret: str,
    *,
    on_fallback: Callable[[RpcError], None] | None = None,
) -> bool:
    """A signed login of an HMAC key, falling back to a plain one for the keys (or servers)
    that cannot verify a signature (made before signed login, or no key file);
    ``on_fallback`` is told why when that happens."""
    try:
        return await client.login(api_key, api_secret, signed=True)
    except RpcError as exc:
        if exc.reason not in ("SIGNED_LOGIN_UNSUPPORTED", "KEY_FILE_UNAVAILABLE"):
            raise
        if on_fallback is not None:
            on_fallback(exc)
        return await client.login(api_key, api_secret)


# The typed SDK ----------------------------------------------------------------------------------


class _Typed(msgspec.Struct, rename="camel", frozen=True):
    """A result as the API sends it, in Python spelling (``filled_quantity`` for
    ``filledQuantity``), amounts and prices as :class:`~decimal.Decimal`."""


class Instrument(_Typed, frozen=True):
    symbol: str
    base: str
    quote: str
    tick: Decimal
    lot: Decimal
    min_size: Decimal
    max_size: Decimal | None
    quote_size: Decimal


class Order(_Typed, frozen=True):
    order_id: int
    client_order_id: str | None
    symbol: str
    side: str
    type: str
    price: Decimal | None
    quantity: Decimal
    filled_quantity: Decimal
    remaining_quantity: Decimal
    time_in_force: str
    post_only: bool
    status: str
    reason: str | None
    created_at: int
    updated_at: int
    seq: int
    stream_seq: int | None = None


class Fill(_Typed, frozen=True):
    """One of your executions (an order's fill, or an RFQ execution with ``order_id`` None)."""

    trade_id: int
    order_id: int | None
    symbol: str
    side: str
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_asset: str
    liquidity: str
    quote_id: str | None
    timestamp: int
    seq: int
    stream_seq: int | None = None


class Balance(_Typed, frozen=True):
    asset: str
    available: Decimal
    locked: Decimal
    stream_seq: int | None = None


class Trade(_Typed, frozen=True):
    """A trade on the public ``trades.SYMBOL`` channel."""

    trade_id: int
    symbol: str
    price: Decimal
    quantity: Decimal
    taker_side: str
    timestamp: int
    seq: int


class Ticker(_Typed, frozen=True):
    symbol: str
    volume24h: Decimal
    timestamp: int
    last: Decimal | None = None
    bid: Decimal | None = None
    bid_size: Decimal | None = None
    ask: Decimal | None = None
    ask_size: Decimal | None = None
    open24h: Decimal | None = None
    high24h: Decimal | None = None
    low24h: Decimal | None = None
    change24h: Decimal | None = None
    change24h_pct: Decimal | None = None


class Quote(_Typed, frozen=True):
    """A firm RFQ quote: the desk buys at ``buy_price`` and sells at ``sell_price``."""

    subscription: str
    symbol: str
    buy_price: Decimal
    sell_price: Decimal
    quantity: Decimal
    quote_id: str
    valid_until: int
    seq: int
    timestamp: int


class BookLevel(NamedTuple):
    price: Decimal
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class OrderBook:
    """The local book of one symbol after an update: best levels first on each side."""

    symbol: str
    seq: int
    bids: list[BookLevel]
    asks: list[BookLevel]
    checksum: int

    @property
    def best_bid(self) -> BookLevel | None:
        return self.bids[0] if self.bids else None

    @property
    def best_ask(self) -> BookLevel | None:
        return self.asks[0] if self.asks else None


_PRIVATE = ("orders", "balances")
_STREAM_KINDS: dict[str, type[_Typed]] = {"orders": Order, "fills": Fill, "balances": Balance}


class TradewsClient:
    """The typed, self-healing client: one logical session over as many connections as it takes.

        async with TradewsClient(url, api_key=key, api_secret=secret) as tw:
            order = await tw.place_order("BTC_USD", "buy", "0.1", price="60000")
            async for book in tw.book("BTC_USD"):
                print(book.best_bid, book.best_ask)

    Results are typed (:class:`Order`, :class:`Fill`, :class:`Balance`...), errors are
    :class:`RpcError` subclasses carrying the server's code. When the connection drops, the
    client reconnects with exponential backoff, logs in again, subscribes again to every
    channel its iterators follow (a book starts over from a fresh snapshot) and resumes the
    private streams from the last message seen: nothing is lost and nothing comes twice. A
    call made while the connection is down waits for the next one (``timeout``); a call in
    flight when it drops raises :class:`ConnectionClosed` and is not repeated (its effect may
    or may not have happened: an order with a ``client_order_id`` can be placed again
    safely, the server returns the original). Credentials the server refuses on a reconnect
    (a revoked key) end every iterator with that :class:`AuthError`.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        private_key: str | None = None,
        signed: bool = True,
        encoding: str = "json",
        reconnect: bool = True,
        backoff: tuple[float, float] = (0.1, 5.0),
        timeout: float = 10,
        ssl: SSLContext | None = None,
    ) -> None:
        self.url = url
        self.encoding = encoding
        self._api_key, self._api_secret, self._private_key = api_key, api_secret, private_key
        self._signed = signed
        self._reconnect = reconnect
        self._backoff = backoff
        self._timeout = timeout
        self._ssl = ssl
        self._conn: Client | None = None
        self._ready = asyncio.Event()
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._fatal: BaseException | None = None
        self._channels: dict[str, int | None] = {}  # channel -> depth (book channels)
        self._subs: dict[tuple[str, Any], set[asyncio.Queue[Any]]] = {}
        self._books: dict[str, BookReplica | None] = {}
        self._last_book: dict[str, OrderBook] = {}
        self._quote_streams: dict[int, tuple[str, str | None]] = {}
        self._quote_ids: dict[str, int] = {}
        self._tokens = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watchers: dict[tuple[str, Any], asyncio.Queue[Any]] = {}
        self._finished = False  # closed, or stopped for good (see _fatal)
        self.instruments: dict[str, Instrument] = {}
        self.tracker = StreamTracker()
        #: How many times the client connected again after a drop.
        self.reconnects = 0
        #: How many times a book was found out of step (sequence or checksum) and resubscribed.
        self.resyncs = 0
        #: Private streams that could not be resumed after a reconnect (their messages were no
        #: longer kept): they started afresh; read ``open_orders()`` / ``balances()`` again.
        self.restarted_streams: list[str] = []
        #: The error of the last failed connection attempt, if any.
        self.last_error: BaseException | None = None

    # Lifecycle -------------------------------------------------------------------------------

    async def start(self) -> TradewsClient:
        """Connect and log in (errors raise here: a wrong URL, refused credentials); from then
        on the connection is kept up in the background."""
        conn = await self._open()
        self._conn = conn  # at once: a stream started before the task first runs uses it
        self._ready.set()
        self._task = asyncio.create_task(self._supervise(conn))
        return self

    async def __aenter__(self) -> TradewsClient:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection and end every iterator."""
        self._stopped.set()
        if self._conn is not None:
            await self._conn.close()
        if self._task is not None:
            await self._task
        for task in list(self._tasks):
            task.cancel()

    @property
    def connected(self) -> bool:
        return self._conn is not None

    async def _open(self) -> Client:
        conn = await Client.connect(self.url, encoding=self.encoding, timeout=self._timeout,
                                    ssl=self._ssl)  # fmt: skip
        try:
            if self._private_key is not None and self._api_key is not None:
                await conn.login(self._api_key, private_key=self._private_key)
            elif self._api_key is not None and self._api_secret is not None:
                if self._signed:
                    await login_signed(conn, self._api_key, self._api_secret)
                else:
                    await conn.login(self._api_key, self._api_secret)
            if not self.instruments:
                rows = await conn.call("instruments")
                self.instruments = {i.symbol: i for i in msgspec.convert(rows, list[Instrument])}
            await self._restore(conn)
        except BaseException:
            conn.abort()
            raise
        return conn

    async def _restore(self, conn: Client) -> None:
        """Subscribe ``conn`` to every channel followed (private ones resumed), and restart
        every quote stream; channels added meanwhile are taken too."""
        done: set[str] = set()
        while todo := [c for c in self._channels if c not in done]:
            for channel in todo:
                await self._subscribe(conn, channel)
                done.add(channel)
        self._quote_ids.clear()
        for token, (symbol, quantity) in list(self._quote_streams.items()):
            try:
                reply = await conn.quote_request(symbol, quantity=quantity)
            except RpcError as exc:
                self._quote_streams.pop(token, None)
                self._publish(("quote", token), exc)
            else:
                self._quote_ids[reply["subscription"]] = token

    async def _subscribe(self, conn: Client, channel: str) -> None:
        if channel in _PRIVATE:
            try:
                await self.tracker.subscribe(conn, channel)
            except ResumeUnavailable:
                self.tracker.last.pop(channel, None)
                self.restarted_streams.append(channel)
                await self.tracker.subscribe(conn, channel)
            return
        if channel.startswith("book."):
            self._books[channel[5:]] = None  # until the snapshot
        await conn.subscribe(channel, depth=self._channels.get(channel))

    async def _supervise(self, conn: Client | None) -> None:
        while conn is not None:
            self._conn = conn
            self._ready.set()
            while True:
                try:
                    self._dispatch(await conn.next_notification(timeout=3600))
                except TimeoutError:
                    continue
                except ConnectionClosed:
                    break
            self._conn = None
            self._ready.clear()
            if self._stopped.is_set() or not self._reconnect:
                break
            conn = await self._connect_again()
            self.reconnects += conn is not None
        self._finished = True
        end: Any = self._fatal if self._fatal is not None else _CLOSED
        for queues in self._subs.values():
            for queue in queues:
                queue.put_nowait(end)
        self._ready.set()  # wakes callers waiting for a connection: they raise

    async def _connect_again(self) -> Client | None:
        delay, most = self._backoff
        while not self._stopped.is_set():
            try:
                return await self._open()
            except AuthError as exc:
                if exc.code != SESSION_LIMIT:  # refused credentials: no use retrying
                    self._fatal = exc
                    return None
                self.last_error = exc
            except (ClientError, OSError, TimeoutError) as exc:
                self.last_error = exc
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), delay * (0.5 + random.random()))
            delay = min(delay * 2, most)
        return None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Dispatch --------------------------------------------------------------------------------

    def _publish(self, key: tuple[str, Any], item: Any) -> None:
        for queue in self._subs.get(key, ()):
            queue.put_nowait(item)

    def _dispatch(self, note: Notification) -> None:
        method, params = note.method, note.params
        if method in _STREAM_KINDS:
            try:
                fresh = self.tracker.observe(note)
            except StreamGap:
                if self._conn is not None:
                    self._conn.abort()  # the reconnect resumes from the last message seen
                return
            if fresh:
                self._publish((method, None), msgspec.convert(params, _STREAM_KINDS[method]))
        elif method == "book":
            self._book_message(params)
        elif method == "trades":
            self._publish(("trades", params["symbol"]), msgspec.convert(params, Trade))
        elif method == "ticker":
            self._publish(("ticker", params["symbol"]), msgspec.convert(params, Ticker))
        elif method == "quote":
            token = self._quote_ids.get(params["subscription"])
            if token is not None:
                self._publish(("quote", token), msgspec.convert(params, Quote))
        else:
            self._publish((method, None), note)

    def _book_message(self, params: dict[str, Any]) -> None:
        symbol = params["symbol"]
        replica = self._books.get(symbol)
        if params["type"] == "snapshot":
            inst = self.instruments[symbol]
            replica = self._books[symbol] = BookReplica(str(inst.tick), str(inst.lot))
        elif replica is None:
            return  # a delta before the snapshot that follows a resubscription
        try:
            replica.apply(params)
        except BookOutOfSync:
            self._books[symbol] = None
            self.resyncs += 1
            self._spawn(self._resubscribe(f"book.{symbol}"))
            return
        book = OrderBook(
            symbol,
            params["seq"],
            [BookLevel(p, q) for p, q in sorted(replica.bids.items(), reverse=True)],
            [BookLevel(p, q) for p, q in sorted(replica.asks.items())],
            params["checksum"],
        )
        self._last_book[symbol] = book
        self._publish(("book", symbol), book)

    async def _resubscribe(self, channel: str) -> None:
        conn = self._conn
        if conn is None:
            return  # the reconnect subscribes again
        with contextlib.suppress(ClientError):
            await conn.call("unsubscribe", {"channel": channel})
            await self._subscribe(conn, channel)

    # Streams ---------------------------------------------------------------------------------

    async def _follow(self, channel: str, depth: int | None = None) -> None:
        if self._finished:
            await self._connection()  # raises why
        if channel in self._channels:
            return
        self._channels[channel] = depth
        conn = self._conn
        if conn is None:
            return  # the reconnect subscribes
        try:
            await self._subscribe(conn, channel)
        except ConnectionClosed:
            pass  # the reconnect subscribes
        except RpcError:
            del self._channels[channel]
            raise

    async def _iterate(
        self, key: tuple[str, Any], channel: str, first: Any = None, depth: int | None = None
    ) -> AsyncIterator[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._subs.setdefault(key, set()).add(queue)
        try:
            await self._follow(channel, depth)
            if first is not None:
                yield first
            while True:
                item = await queue.get()
                if item is _CLOSED:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._subs[key].discard(queue)

    def book(self, symbol: str, *, depth: int | None = None) -> AsyncIterator[OrderBook]:
        """The local book of ``symbol`` after every change: built from a snapshot and deltas,
        checked by sequence and checksum, resubscribed by itself on a gap or a mismatch.
        ``depth``: levels per side followed (10, 25, 100 or 500; the server's default 100)."""
        first = self._last_book.get(symbol)
        return self._iterate(("book", symbol), f"book.{symbol}", first, depth)

    def trades(self, symbol: str) -> AsyncIterator[Trade]:
        """Every trade of ``symbol`` from now on (the public ``trades.SYMBOL`` channel)."""
        return self._iterate(("trades", symbol), f"trades.{symbol}")

    def ticker(self, symbol: str) -> AsyncIterator[Ticker]:
        """The ticker of ``symbol``: the current one, then on every change."""
        return self._iterate(("ticker", symbol), f"ticker.{symbol}")

    def orders(self) -> AsyncIterator[Order]:
        """Your order updates from now on, across reconnects without a gap."""
        return self._iterate(("orders", None), "orders")

    def fills(self) -> AsyncIterator[Fill]:
        """Your executions from now on, across reconnects without a gap."""
        return self._iterate(("fills", None), "orders")

    def balance_updates(self) -> AsyncIterator[Balance]:
        """Every balance first (on the first subscription), then each one that changes."""
        return self._iterate(("balances", None), "balances")

    async def quotes(self, symbol: str, *, quantity: str | None = None) -> AsyncIterator[Quote]:
        """Firm RFQ quotes for ``symbol`` (a fresh stream after a reconnect)."""
        token = next(self._tokens)
        key = ("quote", token)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._subs[key] = {queue}
        try:
            reply = await (await self._connection()).quote_request(symbol, quantity=quantity)
            self._quote_ids[reply["subscription"]] = token
            self._quote_streams[token] = (symbol, quantity)  # asked again after a reconnect
            while True:
                item = await queue.get()
                if item is _CLOSED:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            del self._subs[key]
            self._quote_streams.pop(token, None)

    # Calls -----------------------------------------------------------------------------------

    async def _connection(self) -> Client:
        if self._conn is None and not self._stopped.is_set() and self._fatal is None:
            try:
                await asyncio.wait_for(self._ready.wait(), self._timeout)
            except TimeoutError:
                raise ClientError(f"not connected to {self.url}: {self.last_error}") from None
        if self._fatal is not None:
            raise self._fatal
        if self._conn is None:
            raise ClientError("the client is closed")
        return self._conn

    async def call(self, method: str, params: Any = None) -> Any:
        """Any method of the API, untyped: the result as the server sends it."""
        return await (await self._connection()).call(method, params, timeout=self._timeout)

    async def place_order(
        self,
        symbol: str,
        side: str,
        quantity: str | Decimal,
        *,
        price: str | Decimal | None = None,
        type: str | None = None,
        time_in_force: str = "GTC",
        post_only: bool = False,
        client_order_id: str | None = None,
    ) -> Order:
        """Place an order (a limit with ``price``, else a market order); the order once durable.
        Raises :class:`OrderRejected` (``reason``) if the engine refuses it."""
        conn = await self._connection()
        reply = await conn.place_order(
            symbol, side, str(quantity), price=None if price is None else str(price), type=type,
            time_in_force=time_in_force, post_only=post_only, client_order_id=client_order_id,
        )  # fmt: skip
        return msgspec.convert(reply, Order)

    async def amend_order(
        self,
        order_id: int | None = None,
        *,
        client_order_id: str | None = None,
        price: str | Decimal | None = None,
        quantity: str | Decimal | None = None,
    ) -> Order:
        """Change an order's price and/or total quantity."""
        params = _order_ref(order_id, client_order_id)
        if price is not None:
            params["price"] = str(price)
        if quantity is not None:
            params["quantity"] = str(quantity)
        return msgspec.convert(await self.call("order_amend", params), Order)

    async def cancel_order(
        self, order_id: int | None = None, *, client_order_id: str | None = None
    ) -> Order:
        return msgspec.convert(
            await self.call("order_cancel", _order_ref(order_id, client_order_id)), Order
        )

    async def cancel_all(self, symbol: str | None = None) -> list[int]:
        """Cancel every open order (of ``symbol``); the ids cancelled."""
        params = {} if symbol is None else {"symbol": symbol}
        return [int(i) for i in (await self.call("order_cancel_all", params))["cancelled"]]

    async def order_status(
        self, order_id: int | None = None, *, client_order_id: str | None = None
    ) -> Order:
        return msgspec.convert(
            await self.call("order_status", _order_ref(order_id, client_order_id)), Order
        )

    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        params = {} if symbol is None else {"symbol": symbol}
        return msgspec.convert(await self.call("orders_open", params), list[Order])

    async def balances(self) -> list[Balance]:
        return msgspec.convert(await self.call("balances"), list[Balance])

    async def trade_history(
        self, symbol: str | None = None, *, limit: int = 100, before: int | None = None
    ) -> list[Fill]:
        """Your past executions, newest first (``before``: a trade id, to page back)."""
        params: dict[str, Any] = {"limit": limit}
        if symbol is not None:
            params["symbol"] = symbol
        if before is not None:
            params["before"] = before
        return msgspec.convert(await self.call("trades", params), list[Fill])

    async def accept_quote(self, quote: Quote | str, side: str) -> Fill:
        """Execute a quote: ``"buy"`` at its ``sell_price``, ``"sell"`` at its ``buy_price``."""
        quote_id = quote.quote_id if isinstance(quote, Quote) else quote
        return msgspec.convert(
            await self.call("quote_accept", {"quoteId": quote_id, "side": side}), Fill
        )

    async def server_time(self) -> int:
        return await (await self._connection()).time()

    # ccxt-style names -------------------------------------------------------------------------

    async def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: str | Decimal,
        price: str | Decimal | None = None,
        params: dict[str, Any] | None = None,
    ) -> Order:
        """ccxt's ``create_order(symbol, type, side, amount, price)``; ``params`` takes
        ``time_in_force``, ``post_only`` and ``client_order_id``."""
        return await self.place_order(symbol, side, amount, price=price, type=type,
                                      **(params or {}))  # fmt: skip

    async def fetch_balance(self) -> dict[str, Balance]:
        """Balances by asset."""
        return {b.asset: b for b in await self.balances()}

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        return await self.open_orders(symbol)

    async def fetch_order(self, id: int) -> Order:
        return await self.order_status(id)

    async def fetch_my_trades(self, symbol: str | None = None, limit: int = 100) -> list[Fill]:
        return await self.trade_history(symbol, limit=limit)

    async def _watch(self, key: tuple[str, Any], channel: str) -> list[Any]:
        """ccxt's ``watch_*``: wait for the next update(s) of a channel followed from the
        first call on; returns every update that came since the previous call (at least one)."""
        queue = self._watchers.get(key)
        if queue is None:
            queue = self._watchers[key] = asyncio.Queue()
            self._subs.setdefault(key, set()).add(queue)
            await self._follow(channel)
        items = [await queue.get()]
        while not queue.empty():
            items.append(queue.get_nowait())
        for item in items:
            if item is _CLOSED:
                raise ClientError("the client is closed")
            if isinstance(item, BaseException):
                raise item
        return items

    async def watch_order_book(self, symbol: str) -> OrderBook:
        """The book after its next change (the latest if several came)."""
        channel = f"book.{symbol}"
        return (await self._watch(("book", symbol), channel))[-1]  # type: ignore[no-any-return]

    async def watch_ticker(self, symbol: str) -> Ticker:
        return (await self._watch(("ticker", symbol), f"ticker.{symbol}"))[-1]  # type: ignore[no-any-return]

    async def watch_trades(self, symbol: str) -> list[Trade]:
        return await self._watch(("trades", symbol), f"trades.{symbol}")

    async def watch_orders(self) -> list[Order]:
        return await self._watch(("orders", None), "orders")

    async def watch_my_trades(self) -> list[Fill]:
        return await self._watch(("fills", None), "orders")

    async def watch_balance(self) -> list[Balance]:
        return await self._watch(("balances", None), "balances")


def _order_ref(order_id: int | None, client_order_id: str | None) -> dict[str, Any]:
    if (order_id is None) == (client_order_id is None):
        raise ClientError("give an order_id or a client_order_id")
    return {"orderId": order_id} if order_id is not None else {"clientOrderId": client_order_id}
