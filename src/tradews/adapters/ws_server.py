"""The WebSocket transport adapter, on picows.

Each connection gets a :class:`Connection` (a picows listener) wrapping a sans-I/O
:class:`~tradews.session.session.Session`. This module only moves bytes: frames in, the session's
replies out, close when the session says so, and releases the session when the socket goes. The
frame-level rules of RFC 6455 that picows leaves to its user are in :class:`WebSocketEndpoint`,
the base of :class:`Connection`, and the server's picows options in :func:`create_server`; the
Autobahn|Testsuite runs against both (``tests/e2e/test_autobahn.py``).

Why picows: measured on this project's target machine it served 121k request/response pairs a
second against 73k for aiohttp and 34k for websockets, within 10 % of a C epoll server (see
``docs/architecture.md``).
"""

from __future__ import annotations

import asyncio
import codecs
import hmac
import logging
import socket
import ssl
import struct
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from types import MappingProxyType
from typing import Any

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from tradews.api.errors import ApiError, ErrorCode
from tradews.api.messages import ConnectionWarning
from tradews.codecs.base import Codec
from tradews.codecs.jsonrpc import JSON
from tradews.codecs.protobuf import PROTOBUF
from tradews.codecs.push import Push
from tradews.session.session import Services, Session

log = logging.getLogger(__name__)

# Close codes (RFC 6455 section 7.4), for the layers above, which do not import picows.
CloseCode = WSCloseCode

MAX_MESSAGE_BYTES = 1 << 20
CLOSE_GRACE = 5.0  # seconds a closed connection waits for the peer to close its side

_LENGTH_16 = struct.Struct("!BBH")
_LENGTH_64 = struct.Struct("!BBQ")


def server_frames(kind: WSMsgType, payloads: Iterable[bytes]) -> bytes:
    """Whole, unmasked frames of ``kind`` (RFC 6455 section 5.2, as a server sends them), one
    per payload, back to back in one buffer: several messages for one transport write. picows
    frames one message per write; this is the same framing for a batch."""
    first = 0x80 | int(kind)  # FIN, no extension bits, the opcode
    parts: list[bytes] = []
    for payload in payloads:
        size = len(payload)
        if size < 126:
            parts.append(bytes((first, size)))
        elif size < 0x10000:
            parts.append(_LENGTH_16.pack(first, 126, size))
        else:
            parts.append(_LENGTH_64.pack(first, 127, size))
        parts.append(payload)
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class OutputLimits:
    """How much data may wait for a client that does not read (see docs/security.md).

    Above ``high_water`` a connection stops being read (its requests wait in the kernel) and
    perishable streams (quotes, tickers, book deltas, market data) skip it; below ``low_water``
    both resume, and it gets fresh snapshots of what it skipped. Lossless streams (replies,
    orders, fills, balances) keep queueing: at ``warn`` the client gets a ``warning``
    notification, at ``max`` it is disconnected as a slow consumer. ``total`` bounds what all
    connections together may hold; above it the largest backlogs are disconnected first.
    """

    low_water: int = 64 << 10
    high_water: int = 256 << 10
    receive_buffer: int = 256 << 10  # the kernel's, per connection (SO_RCVBUF)
    send_buffer: int = 256 << 10  # the kernel's, per connection (SO_SNDBUF)
    warn: int = 4 << 20
    max: int = 8 << 20
    total: int = 256 << 20


@dataclass(frozen=True, slots=True)
class ConnectionCaps:
    total: int = 10_000
    per_address: int = 100
    login_deadline_ms: int = 10_000  # an anonymous connection is closed after this long


# A peer silent (nothing received from it, of any kind) for PING_INTERVAL seconds is pinged, and
# closed (1001) if it has not answered PING_TIMEOUT seconds later: a dead peer is closed within
# interval + timeout. `tradews serve --ping-interval/--ping-timeout` change them.
PING_INTERVAL = 30.0
PING_TIMEOUT = 10.0

# The server's picows options, in one place for the server and the tests of its framing.
SERVER_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {
        # A frame can be no larger than a message; picows fails a bigger one with 1009 before
        # buffering it. Fragmented messages are counted against MAX_MESSAGE_BYTES here.
        "max_frame_size": MAX_MESSAGE_BYTES,
        "websocket_handshake_timeout": 5,
        # Auto-ping (PING_INTERVAL, PING_TIMEOUT; create_server's arguments). picows takes the
        # PONGs that answer its own pings before on_ws_frame, with or without auto-pong.
        "enable_auto_ping": True,
        "auto_ping_idle_timeout": PING_INTERVAL,
        "auto_ping_reply_timeout": PING_TIMEOUT,
        # PINGs are answered by WebSocketEndpoint._answer_ping, not by picows, so that PONGs are
        # sent where the connection's outgoing data is seen.
        "enable_auto_pong": False,
    }
)

ListenerFactory = Callable[[WSUpgradeRequest], WSListener | WSUpgradeResponseWithListener | None]


async def create_server(
    factory: ListenerFactory,
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None = None,
    ping_interval: float = PING_INTERVAL,
    ping_timeout: float = PING_TIMEOUT,
    **overrides: Any,
) -> asyncio.Server:
    """Listen for WebSocket connections with ``SERVER_OPTIONS`` (``overrides``: tests only),
    over TLS (``wss://``) when given a context.

    A peer silent for ``ping_interval`` seconds is pinged, and closed (1001) if it has not
    answered within ``ping_timeout`` seconds, which may not exceed the interval."""
    if not 0 < ping_timeout <= ping_interval:
        raise ValueError("the ping timeout must be positive and at most the ping interval")
    pings = {"auto_ping_idle_timeout": ping_interval, "auto_ping_reply_timeout": ping_timeout}
    options = {**SERVER_OPTIONS, **pings, **overrides}
    if tls is not None:
        options["ssl"] = tls
    server: asyncio.Server = await ws_create_server(factory, host, port, **options)
    return server


def tls_context(certificate: str, key: str) -> ssl.SSLContext:
    """A server context for ``wss://``: TLS 1.2 or newer, the certificate chain and its key
    (PEM files). Raises OSError or ssl.SSLError with the reason if they do not load."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, key)
    return context


class OriginPolicy:
    """Which browser pages may open a connection (the ``Origin`` header, RFC 6454).

    A browser sends ``Origin`` with every WebSocket handshake and lets any page connect
    anywhere, with the user's network position: without a check, a page on any site could use
    a desk's internal server. Clients that are not browsers send no ``Origin`` and are not
    concerned. Allowed: no ``Origin``; the server's own origin (its ``Host``, for the console it
    serves); and the origins listed (``*`` allows every origin)."""

    def __init__(self, allowed: Iterable[str] = (), *, secure: bool = False) -> None:
        self._allowed = {o.strip().rstrip("/").lower() for o in allowed if o.strip()}
        self._any = "*" in self._allowed
        self._scheme = "https" if secure else "http"

    def admits(self, origin: str | None, host: str | None) -> bool:
        if origin is None or self._any:
            return True
        origin = origin.rstrip("/").lower()
        if host is not None and origin == f"{self._scheme}://{host.lower()}":
            return True
        return origin in self._allowed


# WebSocket subprotocols (RFC 6455 section 1.9) and the codec each selects. A client that asks
# for none gets JSON-RPC, so clients written from the JSON documents work unchanged.
SUBPROTOCOLS: dict[str, Codec] = {"tradews.v1.json": JSON, "tradews.v1.proto": PROTOBUF}

_WRONG_KIND = {
    "json": "binary frames are not part of the JSON-RPC encoding; send JSON in text frames",
    "proto": "text frames are not part of the protobuf encoding; send ClientMessage in binary "
    "frames",
}


def valid_close_code(code: int) -> bool:
    """Whether a close code may be sent on the wire (RFC 6455 section 7.4 and the IANA
    registry): 1000-1003 and 1007-1014 (1004 is reserved; 1005, 1006 and 1015 are only ever
    reported locally, never sent), 3000-3999 for libraries and 4000-4999 for applications."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def close_payload_error(payload: bytes) -> tuple[WSCloseCode, str] | None:
    """Why a received CLOSE payload is invalid, as the code and reason to fail with; None if
    it is valid. Empty is valid; otherwise a 2-byte code allowed on the wire, then UTF-8."""
    if not payload:
        return None
    if len(payload) == 1:
        return WSCloseCode.PROTOCOL_ERROR, "close payload of 1 byte"
    code = int.from_bytes(payload[:2], "big")
    if not valid_close_code(code):
        return WSCloseCode.PROTOCOL_ERROR, f"close code {code} may not be sent"
    if not _is_utf8(payload[2:]):
        return WSCloseCode.INVALID_TEXT, "close reason is not valid UTF-8"
    return None


def _is_utf8(data: bytes) -> bool:
    if data.isascii():  # most messages; a C loop that allocates nothing
        return True
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


# Module globals: read on every frame, and cheaper than attributes of picows's enum class.
_TEXT, _BINARY, _CONTINUATION = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION
_PING, _CLOSE = WSMsgType.PING, WSMsgType.CLOSE

# Checks text that arrives in fragments as it comes, so that a message is failed at the first
# fragment that cannot be UTF-8 rather than after its last.
_UTF8 = codecs.getincrementaldecoder("utf-8")


def negotiate(offered: str) -> tuple[Codec, str | None]:
    """The codec for a ``Sec-WebSocket-Protocol`` request header, and the subprotocol to answer
    with (None: no header, which means JSON-RPC). The client's order of preference wins."""
    for token in offered.split(","):
        name = token.strip()
        if name in SUBPROTOCOLS:
            return SUBPROTOCOLS[name], name
    return JSON, None


class WebSocketEndpoint(WSListener):  # type: ignore[misc]
    """RFC 6455 at the frame level, turning frames into whole messages for :meth:`on_message`.

    picows parses frames and refuses some malformed ones itself (unknown opcodes, unmasked client
    frames, control frames over 125 bytes or fragmented, frames over ``max_frame_size``, a close
    payload of one byte, close codes below 3000 that it does not know, a close reason that is not
    UTF-8). Everything else that RFC 6455 requires of an endpoint is enforced here:

    - any RSV bit set fails the connection (1002): no extension is ever negotiated;
    - a fragmented message is reassembled; a continuation without a start, or a new text or binary
      frame inside a fragmented message, fails it (1002);
    - a message over ``MAX_MESSAGE_BYTES`` fails it (1009), as soon as the fragment that crosses
      the limit arrives;
    - a text message must be valid UTF-8 (1007), checked as each fragment arrives, so that the
      session only ever sees valid text;
    - PINGs are answered by :meth:`_answer_ping` (picows's auto-pong is off: ``SERVER_OPTIONS``);
    - a CLOSE is checked (code allowed on the wire, reason UTF-8) and answered with the same code,
      or with an empty CLOSE for an empty one; after this side has sent a CLOSE, frames are
      ignored.

    ``transport`` is None before the handshake and from the moment this side sends a CLOSE, so
    that nothing is sent after it.
    """

    def __init__(self) -> None:
        self.transport: WSTransport | None = None
        self._fragments: list[bytes] | None = None
        self._fragment_type = _TEXT
        self._fragment_size = 0
        self._utf8: codecs.IncrementalDecoder | None = None

    def on_message(self, msg_type: WSMsgType, payload: bytes) -> None:
        """A whole message: binary, or text that is valid UTF-8."""
        raise NotImplementedError

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.transport = None

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if self.transport is None or transport.is_close_frame_sent:
            # This side has sent its CLOSE: read nothing more. picows sends one itself when it
            # fails the connection, even for an error in a frame after this one in its buffer.
            if frame.msg_type is _CLOSE:
                transport.disconnect()
            return
        if frame.rsv1 or frame.rsv2 or frame.rsv3:
            self.close(WSCloseCode.PROTOCOL_ERROR, "reserved bits set, no extension negotiated")
            return
        msg_type = frame.msg_type
        if frame.fin and self._fragments is None and (msg_type is _TEXT or msg_type is _BINARY):
            # Nearly every frame: a whole message.
            payload = frame.get_payload_as_bytes()
            if msg_type is _BINARY or payload.isascii() or _is_utf8(payload):
                self.on_message(msg_type, payload)
            else:
                self.close(WSCloseCode.INVALID_TEXT, "text message is not valid UTF-8")
        elif msg_type is _TEXT or msg_type is _BINARY:
            if self._fragments is not None:
                self.close(WSCloseCode.PROTOCOL_ERROR, "new message inside a fragmented message")
            else:
                self._start_fragments(frame)
        elif msg_type is _CONTINUATION:
            whole = self._continue_fragments(frame)
            if whole is not None:
                self.on_message(self._fragment_type, whole)
        elif msg_type is _PING:
            self._answer_ping(frame.get_payload_as_bytes())
        elif msg_type is _CLOSE:
            self._answer_close(transport, frame.get_payload_as_bytes())
        # PONG: picows takes the answers to its own pings; an unsolicited one needs nothing.

    def _answer_ping(self, payload: bytes) -> None:
        """Answer a PING with a PONG carrying the same payload: the only place PONGs are sent."""
        transport = self.transport
        if transport is not None:
            transport.send_pong(payload)

    def _answer_close(self, transport: WSTransport, payload: bytes) -> None:
        """Close after the peer's CLOSE, with the same code (RFC 6455 section 5.5.1)."""
        error = close_payload_error(payload)
        if error is not None:
            self.close(*error)
            return
        self.transport = None
        if payload:
            transport.send_close(int.from_bytes(payload[:2], "big"))
        else:
            # An empty CLOSE is answered with an empty one. picows's send_close always writes a
            # code (0 when given none, which is not a code allowed on the wire), so send it raw.
            transport.send(_CLOSE, b"")
        transport.disconnect()

    def _start_fragments(self, frame: WSFrame) -> None:
        self._fragments = []
        self._fragment_type = frame.msg_type
        self._fragment_size = 0
        self._utf8 = _UTF8() if frame.msg_type is _TEXT else None
        self._add_fragment(frame)

    def _continue_fragments(self, frame: WSFrame) -> bytes | None:
        """Add a continuation frame; return the message whole on the final frame."""
        if self._fragments is None:
            self.close(WSCloseCode.PROTOCOL_ERROR, "continuation frame without a first frame")
            return None
        if not self._add_fragment(frame) or not frame.fin:
            return None
        whole = b"".join(self._fragments)
        self._fragments = None
        self._utf8 = None
        return whole

    def _add_fragment(self, frame: WSFrame) -> bool:
        """Keep one fragment; False when it failed the connection (too big, invalid UTF-8)."""
        assert self._fragments is not None
        self._fragment_size += frame.payload_size
        if self._fragment_size > MAX_MESSAGE_BYTES:
            self._fragments = None
            self._message_too_big()
            return False
        chunk = frame.get_payload_as_bytes()
        if self._utf8 is not None:
            try:
                self._utf8.decode(chunk, final=bool(frame.fin))
            except UnicodeDecodeError:
                self._fragments = None
                self.close(WSCloseCode.INVALID_TEXT, "text message is not valid UTF-8")
                return False
        self._fragments.append(chunk)
        return True

    def _message_too_big(self) -> None:
        self.close(WSCloseCode.MESSAGE_TOO_BIG, "message too big")

    def close(self, code: WSCloseCode, reason: str) -> None:
        """Send a CLOSE and end the connection; nothing is sent or processed after it.

        The TCP connection is half-closed once the CLOSE is out, then read (and ignored) until
        the peer closes its side, for at most ``CLOSE_GRACE`` seconds. Closing outright would
        make the kernel answer frames still in flight with a reset, and a reset can destroy the
        replies and the CLOSE before the peer reads them (RFC 6455 section 7.1.1)."""
        transport = self.transport
        if transport is None or transport.is_close_frame_sent:
            return
        self.transport = None
        transport.send_close(code, reason.encode()[:120])
        underlying = transport.underlying_transport
        try:
            if not underlying.can_write_eof():  # TLS cannot half-close
                raise OSError("no half-close")
            underlying.write_eof()
        except OSError:  # that, or the peer is gone already
            transport.disconnect()
            return
        asyncio.get_running_loop().call_later(CLOSE_GRACE, transport.disconnect, False)


class Connection(WebSocketEndpoint):
    """One client connection: whole messages go to its session, and the session's frames go out.
    ``writable`` is False while its output is above the high-water mark: reads are paused and
    perishable streams skip it until it drains."""

    def __init__(
        self,
        services: Services[Connection],
        registry: Connections,
        clock: Callable[[], int],
        codec: Codec = JSON,
    ) -> None:
        super().__init__()
        self.session: Session[Connection] = Session(
            services, self, self.send, codec, close=self._close_for_session
        )
        self._kind = WSMsgType.BINARY if codec.binary else WSMsgType.TEXT
        self.writable = True
        self._registry = registry
        self._clock = clock
        self._warned = False
        self._stale: set[str] = set()  # perishable channels skipped while not writable
        self.connected_at = 0

    # picows callbacks ----------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        super().on_ws_connected(transport)
        underlying = transport.underlying_transport
        peer = underlying.get_extra_info("peername")
        self.session.peer = str(peer[0]) if peer else None
        limits = self._registry.output.limits
        underlying.set_write_buffer_limits(high=limits.high_water, low=limits.low_water)
        sock = underlying.get_extra_info("socket")
        if sock is not None:
            # Requests are small: a fixed receive buffer bounds what one read can deliver (and
            # so what picows's read buffer grows to) where autotuning would allow megabytes. A
            # fixed send buffer keeps what a client leaves unread where the server counts it
            # (its own write buffer), not megabytes deep in the kernel.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, limits.receive_buffer)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, limits.send_buffer)
        self.connected_at = self._clock()
        refusal = self._registry.admit(self)
        if refusal is not None:
            self.close(WSCloseCode.TRY_AGAIN_LATER, refusal)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        super().on_ws_disconnected(transport)
        self._registry.forget(self)
        self.session.close(self._clock())
        self.writable = False

    def pause_writing(self) -> None:
        """Output went above the high-water mark: stop reading until the client catches up."""
        self.writable = False
        self._registry.output.backlogged.add(self)
        transport = self.transport
        if transport is not None:
            transport.underlying_transport.pause_reading()

    def resume_writing(self) -> None:
        self.writable = True
        self._warned = False
        self._registry.output.backlogged.discard(self)
        transport = self.transport
        if transport is None or transport.is_close_frame_sent:
            return
        transport.underlying_transport.resume_reading()
        if self._registry.on_drained is not None:
            self._registry.on_drained()
        if self._stale:
            stale, self._stale = self._stale, set()
            for push in self.session.refresh(stale, self._clock()):
                self.send_push(push)

    def on_message(self, msg_type: WSMsgType, payload: bytes) -> None:
        if msg_type is not self._kind:
            self._refuse(_WRONG_KIND[self.session.codec.name])
            return
        self.receive(payload)

    def _refuse(self, detail: str) -> None:
        """Answer a frame the codec cannot take with an error in the codec's own kind."""
        codec = self.session.codec
        error = ApiError(ErrorCode.INVALID_REQUEST, data=detail)
        self.send(codec.pack([codec.error(None, error)], False))

    def _message_too_big(self) -> None:
        self._refuse(f"message larger than {MAX_MESSAGE_BYTES} bytes")
        super()._message_too_big()

    def receive(self, payload: bytes) -> None:
        session = self.session
        for out in session.receive(payload, self._clock()):
            self.send(out)  # through the output accounting, like every other frame
        if session.close_reason is not None:
            self.close(WSCloseCode.POLICY_VIOLATION, session.close_reason)
        elif session.principal is not None:
            self._registry.logged_in(self)

    # Outgoing ------------------------------------------------------------------------------

    def buffered(self) -> int:
        """Bytes waiting to be sent to this client."""
        transport = self.transport
        if transport is None or transport.is_disconnected:
            return 0
        return int(transport.underlying_transport.get_write_buffer_size())

    def send(self, data: bytes) -> None:
        """Send a frame that must not be lost (a reply, an order update, a fill)."""
        self._send(self._kind, data)

    def _send(self, kind: WSMsgType, data: bytes) -> None:
        """While the client reads, a plain send. Once its output is above the high-water mark,
        every frame is counted: the client is warned at ``warn`` bytes and disconnected at
        ``max`` (a slow consumer), and the server-wide ``total`` is checked."""
        transport = self.transport
        if transport is None or transport.is_close_frame_sent:
            return
        if not self.writable:
            output = self._registry.output
            limits = output.limits
            buffered = self.buffered() + len(data)
            if buffered > limits.max:
                self.drop("slow consumer")
                return
            if buffered > limits.warn and not self._warned:
                self._warned = True
                warning = ConnectionWarning(
                    code="slow_consumer",
                    message="you are not reading fast enough; the server disconnects at "
                    f"{limits.max} unread bytes",
                    buffered_bytes=buffered,
                    limit_bytes=limits.max,
                )
                transport.send(self._kind, self.session.codec.push(Push("warning", warning)))
            transport.send(kind, data)
            output.grow(len(data))
            return
        transport.send(kind, data)

    def send_quotes(self, frames: list[bytes]) -> None:
        """The quote fast path: the desk only offers quotes to writable connections. A pulse's
        quotes for this connection go out in one write (one system call), framed together."""
        transport = self.transport
        if transport is None or transport.is_close_frame_sent:
            return
        if len(frames) == 1:
            transport.send(self._kind, frames[0])
        else:
            transport.underlying_transport.write(server_frames(self._kind, frames))

    def send_push(self, push: Push) -> None:
        """Send a stream message. A perishable one (the latest value of something) is skipped
        while the client is not reading; it gets the current value once it catches up."""
        if not self.writable and push.kind in PERISHABLE:
            self._stale.add(push.body.channel)
            return
        self.send(self.session.codec.push(push))

    def _close_for_session(self, code: int, reason: str) -> None:
        """The session asked to be closed (rpc.logout): after what this turn sends."""
        asyncio.get_running_loop().call_soon(self.close, WSCloseCode(code), reason)

    def close(self, code: WSCloseCode, reason: str) -> None:
        transport = self.transport
        super().close(code, reason)
        # The session ends now, not when the peer has answered the CLOSE (up to CLOSE_GRACE).
        self.session.close(self._clock())
        if transport is not None and not self.writable:
            # Behind on its reading, the client would see the CLOSE only after all that is
            # queued before it: drop the connection (and what is queued) at once instead.
            transport.disconnect(graceful=False)

    def _answer_ping(self, payload: bytes) -> None:
        """PONGs go out like every other frame, so a client that pings without reading the
        answers is stopped by the same caps (and not read from at all once behind)."""
        self._send(WSMsgType.PONG, payload)

    def drop(self, reason: str) -> None:
        """Disconnect at once, discarding what is queued (a CLOSE would wait behind it)."""
        transport = self.transport
        if transport is None:
            return
        log.info("disconnecting: %s", reason, extra=self.session.log_extra)
        self._registry.output.backlogged.discard(self)
        self._registry.output.dropped += 1
        # The session ends in on_ws_disconnected, which the abort brings at once: not here, where
        # a stream may be mid-way through its subscribers.
        self.transport = None
        transport.send_close(WSCloseCode.POLICY_VIOLATION, reason.encode()[:120])
        transport.disconnect(graceful=False)


# Streams whose messages are the latest value of something: a client that falls behind gets the
# current value when it catches up, not a backlog of stale ones.
PERISHABLE = frozenset({"book", "ticker"})


class OutputBudget:
    """What is queued for clients that do not keep up, server-wide.

    Only connections above their high-water mark (``backlogged``) can hold much; the rest hold
    at most ``high_water`` each. ``estimate`` grows with every frame queued for a backlogged
    connection and is recounted exactly by :meth:`recount` (the server calls it every tick), so
    between recounts it errs high, never low."""

    def __init__(self, limits: OutputLimits) -> None:
        self.limits = limits
        self.backlogged: set[Connection] = set()
        self.estimate = 0
        self.dropped = 0

    def grow(self, size: int) -> None:
        self.estimate += size
        if self.estimate > self.limits.total:
            self.shed()

    def recount(self) -> int:
        self.estimate = sum(c.buffered() for c in self.backlogged)
        return self.estimate

    def shed(self) -> None:
        """Over the budget: disconnect the largest backlogs until under it."""
        self.recount()
        while self.estimate > self.limits.total and self.backlogged:
            worst = max(self.backlogged, key=Connection.buffered)
            self.estimate -= worst.buffered()
            worst.drop("slow consumer: the server's output budget is exhausted")


class Connections:
    """Every open connection, with the caps on how many, and the login deadline."""

    def __init__(self, caps: ConnectionCaps, output: OutputLimits) -> None:
        self.caps = caps
        self.output = OutputBudget(output)
        self._all: set[Connection] = set()
        self._per_address: dict[str, int] = {}
        self._anonymous: dict[Connection, None] = {}  # in order of arrival: of deadline too
        # Called when a connection that was behind has caught up (the server resumes what it
        # paged out for it, such as a private stream's replay).
        self.on_drained: Callable[[], None] | None = None

    def admit(self, conn: Connection) -> str | None:
        """Register ``conn``; return why it must be refused (it is then registered anyway,
        and forgotten when it closes)."""
        self._all.add(conn)
        self._anonymous[conn] = None
        address = conn.session.peer or ""
        count = self._per_address[address] = self._per_address.get(address, 0) + 1
        if len(self._all) > self.caps.total:
            return f"server full: at most {self.caps.total} connections"
        if count > self.caps.per_address:
            return f"at most {self.caps.per_address} connections per address"
        return None

    def logged_in(self, conn: Connection) -> None:
        self._anonymous.pop(conn, None)

    def forget(self, conn: Connection) -> None:
        if conn not in self._all:
            return
        self._all.discard(conn)
        self._anonymous.pop(conn, None)
        self.output.backlogged.discard(conn)
        address = conn.session.peer or ""
        left = self._per_address.get(address, 1) - 1
        if left > 0:
            self._per_address[address] = left
        else:
            self._per_address.pop(address, None)

    def expire_logins(self, now_ms: int) -> int:
        """Close the connections that did not log in within the deadline; return how many."""
        deadline = now_ms - self.caps.login_deadline_ms
        expired = []
        for conn in self._anonymous:
            if conn.connected_at > deadline:
                break
            expired.append(conn)
        for conn in expired:
            del self._anonymous[conn]
            conn.close(
                WSCloseCode.POLICY_VIOLATION,
                f"no login within {self.caps.login_deadline_ms // 1000} s",
            )
        return len(expired)

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._all))

    def __len__(self) -> int:
        return len(self._all)


# Plain-HTTP routes: path -> handler(query parameters) -> (body, content type), or
# (body, content type, status) for an answer other than 200 (``/readyz`` when not ready).
HttpAnswer = tuple[bytes, str] | tuple[bytes, str, HTTPStatus]
HttpRoutes = dict[bytes, Callable[[dict[str, str]], HttpAnswer]]


def _answer(answer: HttpAnswer) -> WSUpgradeResponseWithListener:
    if len(answer) == 3:
        return _http(answer[2], answer[0], answer[1])
    return _http(HTTPStatus.OK, answer[0], answer[1])


# Static pages (the browser console): (path, Host header) -> (body, headers), or None.
Pages = Callable[[bytes, str | None], tuple[bytes, Mapping[str, str]] | None]


def split_target(target: bytes) -> tuple[bytes, dict[str, str]]:
    """An HTTP request target's path and query parameters."""
    path, _, query = target.partition(b"?")
    params = urllib.parse.parse_qs(query.decode("latin-1"), max_num_fields=20)
    return path, {k: v[-1] for k, v in params.items()}


def _page(body: bytes, headers: Mapping[str, str]) -> WSUpgradeResponseWithListener:
    return WSUpgradeResponseWithListener(
        WSUpgradeResponse.create_ok_response(body, extra_headers=headers), None
    )


def _http(status: HTTPStatus, body: bytes, content_type: str) -> WSUpgradeResponseWithListener:
    if status is HTTPStatus.OK:
        response = WSUpgradeResponse.create_ok_response(
            body, extra_headers={"Content-Type": content_type}
        )
    else:
        response = WSUpgradeResponse.create_error_response(
            status, body, extra_headers={"Content-Type": content_type}
        )
    return WSUpgradeResponseWithListener(response, None)


def listener_factory(
    services: Services[Connection],
    registry: Connections,
    clock: Callable[[], int],
    http_routes: HttpRoutes | None = None,
    origins: OriginPolicy | None = None,
    pages: Pages | None = None,
) -> Callable[[WSUpgradeRequest], Connection | WSUpgradeResponseWithListener]:
    """Every path upgrades to the API, except ``http_routes`` (plain GET, e.g. ``/healthz``)
    and ``pages`` (plain GET of the browser console's files, ``/`` among them). A handshake from a browser page whose origin ``origins`` does not admit is refused (403).

    The query string may ask for ``rateLimits=1``: every reply then carries the remaining
    rate-limit budget."""
    routes = http_routes or {}
    policy = origins or OriginPolicy()

    def factory(request: WSUpgradeRequest) -> Connection | WSUpgradeResponseWithListener:
        headers = request.headers
        path, query = split_target(request.path)
        if "upgrade" not in headers.get("Connection", "").lower():
            route = routes.get(path)
            if route is not None:
                return _answer(route(query))
            page = pages(path, headers.get("Host")) if pages is not None else None
            if page is not None:
                return _page(*page)
        if not policy.admits(headers.get("Origin"), headers.get("Host")):
            return _http(HTTPStatus.FORBIDDEN, b"origin not allowed\n", "text/plain")
        codec, chosen = negotiate(headers.get("Sec-WebSocket-Protocol", ""))
        connection = Connection(services, registry, clock, codec)
        connection.session.report_budget = query.get("rateLimits") in ("1", "true")
        if chosen is None:
            return connection
        upgrade = WSUpgradeResponse.create_101_response(
            extra_headers={"Sec-WebSocket-Protocol": chosen}
        )
        return WSUpgradeResponseWithListener(upgrade, connection)

    return factory


async def create_admin_server(
    routes: HttpRoutes, token: str | None, host: str, port: int
) -> asyncio.Server:
    """Listen for plain HTTP GETs of ``routes`` (see :func:`admin_factory`)."""
    server: asyncio.Server = await ws_create_server(
        admin_factory(routes, token), host, port, websocket_handshake_timeout=5
    )
    return server


def admin_factory(
    routes: HttpRoutes, token: str | None
) -> Callable[[WSUpgradeRequest], WSUpgradeResponseWithListener]:
    """The admin listener: plain GET of ``routes`` only, behind ``Authorization: Bearer TOKEN``
    when a token is set; no WebSocket."""
    expected = None if token is None else f"Bearer {token}".encode()

    def factory(request: WSUpgradeRequest) -> WSUpgradeResponseWithListener:
        path, query = split_target(request.path)
        if expected is not None:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return _http(HTTPStatus.UNAUTHORIZED, b"unauthorized\n", "text/plain")
        route = routes.get(path)
        if route is None:
            return _http(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
        return _answer(route(query))

    return factory
