"""The WebSocket transport adapter, on picows.

Each connection gets a :class:`Connection` (a picows listener) wrapping a sans-I/O
:class:`~tradews.session.session.Session`. This module only moves bytes: frames in, the session's
replies out, close when the session says so, and releases the session when the socket goes.

Why picows: measured on this project's target machine it served 121k request/response pairs a
second against 73k for aiohttp and 34k for websockets, within 10 % of a C epoll server (see
``docs/architecture.md``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

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
from tradews.codecs.base import Codec
from tradews.codecs.jsonrpc import JSON
from tradews.codecs.protobuf import PROTOBUF
from tradews.codecs.push import Push
from tradews.session.session import Services, Session

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1 << 20
MAX_BUFFERED_BYTES = 16 << 20

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
    """One client connection. ``writable`` is False while the socket's send buffer is full."""

    def __init__(
        self,
        services: Services[Connection],
        registry: set[Connection],
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

    # picows callbacks ----------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        peer = transport.underlying_transport.get_extra_info("peername")
        self.session.peer = str(peer[0]) if peer else None
        self._registry.add(self)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._registry.discard(self)
        self.session.close()
        self.writable = False

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True

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
            self.send(out)  # through the slow-consumer check, like every other frame
        if session.close_reason is not None:
            self.close(WSCloseCode.POLICY_VIOLATION, session.close_reason)

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

    def send(self, data: bytes) -> None:
        """Send a frame. A client that lets ``MAX_BUFFERED_BYTES`` pile up unread is closed
        (1008, "slow consumer") rather than allowed to grow the server's memory without end."""
        transport = self.transport
        if transport is None or transport.is_close_frame_sent:
            return
        if not self.writable:
            buffered = transport.underlying_transport.get_write_buffer_size()
            if buffered > MAX_BUFFERED_BYTES:
                self.close(WSCloseCode.POLICY_VIOLATION, "slow consumer")
                return
        transport.send(self._kind, data)

    def send_quote(self, data: bytes) -> None:
        """The quote fast path: the desk only offers quotes to writable connections."""
        transport = self.transport
        if transport is not None and not transport.is_close_frame_sent:
            transport.send(self._kind, data)

    def send_push(self, push: Push) -> None:
        self.send(self.session.codec.push(push))

    def close(self, code: WSCloseCode, reason: str) -> None:
        transport = self.transport
        if transport is None or transport.is_close_frame_sent:
            return
        transport.send_close(code, reason.encode()[:120])
        transport.disconnect()


HttpRoutes = dict[bytes, Callable[[], tuple[bytes, str]]]


def listener_factory(
    services: Services[Connection],
    registry: set[Connection],
    clock: Callable[[], int],
    http_routes: HttpRoutes | None = None,
) -> Callable[[WSUpgradeRequest], Connection | WSUpgradeResponseWithListener]:
    """Every path upgrades to the API, except ``http_routes`` (plain GET, e.g. ``/metrics``)."""
    routes = http_routes or {}

    def factory(request: WSUpgradeRequest) -> Connection | WSUpgradeResponseWithListener:
        headers = request.headers
        route = routes.get(request.path)
        if route is not None and "upgrade" not in headers.get("Connection", "").lower():
            body, content_type = route()
            response = WSUpgradeResponse.create_ok_response(
                body, extra_headers={"Content-Type": content_type}
            )
            return WSUpgradeResponseWithListener(response, None)
        codec, chosen = negotiate(headers.get("Sec-WebSocket-Protocol", ""))
        connection = Connection(services, registry, clock, codec)
        if chosen is None:
            return connection
        upgrade = WSUpgradeResponse.create_101_response(
            extra_headers={"Sec-WebSocket-Protocol": chosen}
        )
        return WSUpgradeResponseWithListener(upgrade, connection)

    return factory
