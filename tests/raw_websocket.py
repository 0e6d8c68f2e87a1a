"""A WebSocket client that writes frames byte by byte, malformed ones included.

The project's client (on picows) only sends well-formed frames and always reads; protocol and
abuse tests need to do what an attacker would: reserved bits, broken fragmentation, forbidden
close codes, invalid UTF-8, floods of pings or requests whose answers are never read.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from dataclasses import dataclass
from urllib.parse import urlsplit

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


@dataclass(frozen=True, slots=True)
class Frame:
    opcode: int
    payload: bytes
    fin: bool = True
    rsv: int = 0  # the three reserved bits, RSV1 highest

    @property
    def close_code(self) -> int | None:
        """The close code of a CLOSE frame, or None for an empty one."""
        assert self.opcode == CLOSE
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None


def encode(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True
) -> bytes:
    """One frame as a client sends it (masked), with every header bit under the caller's control."""
    head = bytes([(0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode])
    size = len(payload)
    bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    if not size:
        return head + key
    stream = (key * (size // 4 + 1))[:size]  # XOR as one big integer: fast enough for floods
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")
    return head + key + masked.to_bytes(size, "big")


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


class RawWebSocket:
    """A handshaken connection: ``send`` raw bytes, ``recv`` the server's frames one by one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        protocol: str | None = None,
        headers: dict[str, str] | None = None,
        read_limit: int | None = None,
    ) -> RawWebSocket:
        """Connect and upgrade (``url`` may carry a query). ``read_limit`` shrinks this side's
        socket receive buffer, so that a test that never reads fills the server's sooner."""
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        reader, writer = await asyncio.open_connection(host, port)
        if read_limit is not None:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, read_limit)
        key = base64.b64encode(os.urandom(16)).decode()
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [
            f"GET {target} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if protocol is not None:
            lines.append(f"Sec-WebSocket-Protocol: {protocol}")
        lines.extend(f"{name}: {value}" for name, value in (headers or {}).items())
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status = response.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            writer.close()
            raise ConnectionError(f"upgrade refused: {status.decode(errors='replace')}")
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self._writer.write(data)

    async def drain(self) -> None:
        """Wait until the kernel takes what was sent (for ever, once the server stops reading)."""
        await self._writer.drain()

    def send_frame(
        self, opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0
    ) -> None:
        self.send(encode(opcode, payload, fin=fin, rsv=rsv))

    async def recv(self, timeout: float = 10) -> Frame | None:
        """The server's next frame; None once the server has closed the TCP connection."""
        try:
            return await asyncio.wait_for(self._read_frame(), timeout)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def _read_frame(self) -> Frame:
        first, second = await self._reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self._reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self._reader.readexactly(8))
        assert not second & 0x80, "a server must not mask its frames"
        payload = await self._reader.readexactly(size)
        return Frame(first & 0x0F, payload, bool(first & 0x80), (first >> 4) & 0x7)

    async def recv_close(self, timeout: float = 10) -> Frame:
        """Skip data frames up to the server's CLOSE frame, and return it."""
        while True:
            frame = await self.recv(timeout)
            if frame is None:
                raise AssertionError("the server dropped the connection without a close frame")
            if frame.opcode == CLOSE:
                return frame

    async def closed_by_server(self, timeout: float = 10) -> bool:
        """True once the server has closed the TCP connection (read end of stream)."""
        try:
            while await asyncio.wait_for(self._reader.read(65536), timeout):
                pass
        except ConnectionError:
            pass
        return True

    def close(self) -> None:
        self._writer.close()
