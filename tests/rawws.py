"""A deliberately bare WebSocket client for tests that must misbehave: send frames the project's
client never would, or never read what the server sends.

    ws = await RawSocket.open(server.url)
    ws.send(OP_PING, b"hi")          # a masked client frame
    op, payload = await ws.recv()    # the next whole frame
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import urllib.parse
from dataclasses import dataclass

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
    """A masked client-to-server frame (RFC 6455 section 5.2); ``rsv`` sets RSV bits 1-3."""
    head = bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    if not n:
        return head + mask
    stream = (mask * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")
    return head + mask + body


@dataclass
class RawSocket:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    response: bytes

    @classmethod
    async def open(
        cls, url: str, *, protocol: str | None = None, headers: dict[str, str] | None = None,
        read_limit: int | None = None,
    ) -> RawSocket:  # fmt: skip
        """Connect and upgrade. ``read_limit`` shrinks the socket's receive buffer, so that a
        test that never reads stops the server's writes sooner."""
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        reader, writer = await asyncio.open_connection(host, port)
        if read_limit is not None:
            import socket

            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, read_limit)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if protocol is not None:
            lines.append(f"Sec-WebSocket-Protocol: {protocol}")
        lines.extend(f"{k}: {v}" for k, v in (headers or {}).items())
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = await reader.readuntil(b"\r\n\r\n")
        return cls(reader, writer, response)

    @property
    def status(self) -> int:
        return int(self.response.split(b" ", 2)[1])

    def send(self, opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> None:
        self.writer.write(frame(opcode, payload, fin=fin, rsv=rsv))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def recv(self, timeout: float = 10) -> tuple[int, bytes]:
        """The next frame from the server (unmasked) as (opcode, payload)."""
        async with asyncio.timeout(timeout):
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            return b0 & 0x0F, await self.reader.readexactly(n)

    async def recv_close(self, timeout: float = 10) -> tuple[int | None, str]:
        """Read until the server's close frame; return its code and reason (None, "" for a
        connection that ended without one)."""
        try:
            while True:
                op, payload = await self.recv(timeout)
                if op == OP_CLOSE:
                    if len(payload) < 2:
                        return None, ""
                    return struct.unpack("!H", payload[:2])[0], payload[2:].decode(errors="replace")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None, ""

    async def closed(self, timeout: float = 10) -> bool:
        """Whether the server ends the TCP connection within ``timeout`` (data is discarded)."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(1 << 16):
                    pass
            return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True

    def close(self) -> None:
        self.writer.close()
