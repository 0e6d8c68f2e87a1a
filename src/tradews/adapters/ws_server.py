"""The WebSocket transport adapter, on picows.

Each connection gets a :class:`Connection` (a picows listener) wrapping a sans-I/O
:class:`~tradews.session.session.Session`. This module only moves bytes: frames in, the session's
replies out, close when the session says so, and releases the session when the socket goes.

Why picows: measured on this project's target machine it served 121k request/response pairs a
second against 73k for aiohttp and 34k for websockets, within 10 % of a C epoll server (see
``docs/architecture.md``).
"""

from __future__ import annotations

import hmac
import logging
import socket
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
)

from tradews.api.errors import ApiError, ErrorCode
from tradews.api.messages import ConnectionWarning
from tradews.codecs.base import Codec
from tradews.codecs.jsonrpc import JSON
from tradews.codecs.protobuf import PROTOBUF
from tradews.codecs.push import Push
from tradews.session.session import Services, Session

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1 << 20


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
    warn: int = 4 << 20
    max: int = 8 << 20
    total: int = 256 << 20


@dataclass(frozen=True, slots=True)
class ConnectionCaps:
    total: int = 10_000
    per_address: int = 100
    login_deadline_ms: int = 10_000  # an anonymous connection is closed after this long


# WebSocket subprotocols (RFC 6455 section 1.9) and the codec each selects. A client that asks
# for none gets JSON-RPC, so clients written from the JSON documents work unchanged.
SUBPROTOCOLS: dict[str, Codec] = {"tradews.v1.json": JSON, "tradews.v1.proto": PROTOBUF}

_WRONG_KIND = {
    "json": "binary frames are not part of the JSON-RPC encoding; send JSON in text frames",
    "proto": "text frames are not part of the protobuf encoding; send ClientMessage in binary "
    "frames",
}


def negotiate(offered: str) -> tuple[Codec, str | None]:
    """The codec for a ``Sec-WebSocket-Protocol`` request header, and the subprotocol to answer
    with (None: no header, which means JSON-RPC). The client's order of preference wins."""
    for token in offered.split(","):
        name = token.strip()
        if name in SUBPROTOCOLS:
            return SUBPROTOCOLS[name], name
    return JSON, None


class Connection(WSListener):  # type: ignore[misc]
    """One client connection. ``writable`` is False while its output is above the high-water
    mark: reads are paused and perishable streams skip it until it drains."""

    def __init__(
        self,
        services: Services[Connection],
        registry: Connections,
        clock: Callable[[], int],
        codec: Codec = JSON,
    ) -> None:
        self.session: Session[Connection] = Session(services, self, self.send, codec)
        self._kind = WSMsgType.BINARY if codec.binary else WSMsgType.TEXT
        self.transport: WSTransport | None = None
        self.writable = True
        self._registry = registry
        self._clock = clock
        self._fragments: list[bytes] | None = None
        self._fragment_type = WSMsgType.TEXT
        self._fragment_size = 0
        self._warned = False
        self._stale: set[str] = set()  # perishable channels skipped while not writable
        self.connected_at = 0

    # picows callbacks ----------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        underlying = transport.underlying_transport
        peer = underlying.get_extra_info("peername")
        self.session.peer = str(peer[0]) if peer else None
        limits = self._registry.output.limits
        underlying.set_write_buffer_limits(high=limits.high_water, low=limits.low_water)
        sock = underlying.get_extra_info("socket")
        if sock is not None:
            # Requests are small: a fixed receive buffer bounds what one read can deliver (and
            # so what picows's read buffer grows to) where autotuning would allow megabytes.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, limits.receive_buffer)
        self.connected_at = self._clock()
        refusal = self._registry.admit(self)
        if refusal is not None:
            self.close(WSCloseCode.TRY_AGAIN_LATER, refusal)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._registry.forget(self)
        self.session.close()
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
        if self._stale:
            stale, self._stale = self._stale, set()
            for push in self.session.refresh(stale, self._clock()):
                self.send_push(push)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type is WSMsgType.CONTINUATION or not frame.fin:
            payload = self._reassemble(frame)
            if payload is None:
                return
            msg_type = self._fragment_type
        elif msg_type is WSMsgType.TEXT or msg_type is WSMsgType.BINARY:
            payload = frame.get_payload_as_bytes()
        elif msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        else:  # PING is answered by picows itself; PONG needs nothing
            return
        if msg_type is not self._kind:
            self._refuse(_WRONG_KIND[self.session.codec.name])
            return
        self.receive(payload)

    def _refuse(self, detail: str) -> None:
        """Answer a frame the codec cannot take with an error in the codec's own kind."""
        codec = self.session.codec
        error = ApiError(ErrorCode.INVALID_REQUEST, data=detail)
        self.send(codec.pack([codec.error(None, error)], False))

    def receive(self, payload: bytes) -> None:
        transport = self.transport
        assert transport is not None
        session = self.session
        for out in session.receive(payload, self._clock()):
            self.send(out)  # through the output accounting, like every other frame
        if session.close_reason is not None:
            self.close(WSCloseCode.POLICY_VIOLATION, session.close_reason)
        elif session.principal is not None:
            self._registry.logged_in(self)

    def _reassemble(self, frame: WSFrame) -> bytes | None:
        """Collect a fragmented message; return it whole on the final frame."""
        if frame.msg_type is not WSMsgType.CONTINUATION:
            self._fragments = []
            self._fragment_type = frame.msg_type
            self._fragment_size = 0
        elif self._fragments is None:
            self.close(WSCloseCode.PROTOCOL_ERROR, "continuation frame without a first frame")
            return None
        self._fragment_size += frame.payload_size
        if self._fragment_size > MAX_MESSAGE_BYTES:
            self._fragments = None
            self._refuse(f"message larger than {MAX_MESSAGE_BYTES} bytes")
            self.close(WSCloseCode.MESSAGE_TOO_BIG, "message too big")
            return None
        self._fragments.append(frame.get_payload_as_bytes())
        if not frame.fin:
            return None
        whole = b"".join(self._fragments)
        self._fragments = None
        return whole

    # Outgoing ------------------------------------------------------------------------------

    def buffered(self) -> int:
        """Bytes waiting to be sent to this client."""
        transport = self.transport
        if transport is None or transport.is_disconnected:
            return 0
        return int(transport.underlying_transport.get_write_buffer_size())

    def send(self, data: bytes) -> None:
        """Send a frame that must not be lost (a reply, an order update, a fill).

        While the client reads, this is a plain send. Once its output is above the high-water
        mark, every frame is counted: the client is warned at ``warn`` bytes and disconnected at
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
            transport.send(self._kind, data)
            output.grow(len(data))
            return
        transport.send(self._kind, data)

    def send_quote(self, data: bytes) -> None:
        """The quote fast path: the desk only offers quotes to writable connections."""
        transport = self.transport
        if transport is not None and not transport.is_close_frame_sent:
            transport.send(self._kind, data)

    def send_push(self, push: Push) -> None:
        """Send a stream message. A perishable one (the latest value of something) is skipped
        while the client is not reading; it gets the current value once it catches up."""
        if not self.writable and push.kind in PERISHABLE:
            self._stale.add(push.body.channel)
            return
        self.send(self.session.codec.push(push))

    def close(self, code: WSCloseCode, reason: str) -> None:
        transport = self.transport
        if transport is None or transport.is_close_frame_sent:
            return
        transport.send_close(code, reason.encode()[:120])
        transport.disconnect()

    def drop(self, reason: str) -> None:
        """Disconnect at once, discarding what is queued (a close frame would wait behind it)."""
        transport = self.transport
        if transport is None or transport.is_disconnected:
            return
        log.info("disconnecting %s: %s", self.session.peer, reason)
        self._registry.output.backlogged.discard(self)
        self._registry.output.dropped += 1
        if not transport.is_close_frame_sent:
            transport.send_close(WSCloseCode.POLICY_VIOLATION, reason.encode())
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


# Plain-HTTP routes: path -> handler(query parameters) -> (body, content type).
HttpRoutes = dict[bytes, Callable[[dict[str, str]], tuple[bytes, str]]]


def split_target(target: bytes) -> tuple[bytes, dict[str, str]]:
    """An HTTP request target's path and query parameters."""
    path, _, query = target.partition(b"?")
    params = urllib.parse.parse_qs(query.decode("latin-1"), max_num_fields=20)
    return path, {k: v[-1] for k, v in params.items()}


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
) -> Callable[[WSUpgradeRequest], Connection | WSUpgradeResponseWithListener]:
    """Every path upgrades to the API, except ``http_routes`` (plain GET, e.g. ``/healthz``).

    The query string may ask for ``rateLimits=1``: every reply then carries the remaining
    rate-limit budget."""
    routes = http_routes or {}

    def factory(request: WSUpgradeRequest) -> Connection | WSUpgradeResponseWithListener:
        headers = request.headers
        path, query = split_target(request.path)
        route = routes.get(path)
        if route is not None and "upgrade" not in headers.get("Connection", "").lower():
            body, content_type = route(query)
            return _http(HTTPStatus.OK, body, content_type)
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
        body, content_type = route(query)
        return _http(HTTPStatus.OK, body, content_type)

    return factory
