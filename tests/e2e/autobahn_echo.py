"""An echo endpoint on the server's own WebSocket framing, for the Autobahn|Testsuite.

It is the real server's transport with an echo in place of the API session: the same picows
options (``ws_server.create_server``) and the same frame handling (``WebSocketEndpoint``, the base
of ``Connection``). Run as a script, it serves on uvloop like ``tradews serve`` and prints
``listening on ws://HOST:PORT``; it exists only for the tests.
"""

from __future__ import annotations

import sys

from picows import WSMsgType, WSUpgradeRequest

from tradews.adapters.ws_server import WebSocketEndpoint, create_server


class Echo(WebSocketEndpoint):
    """Sends every message back as it came, text as text and binary as binary."""

    def on_message(self, msg_type: WSMsgType, payload: bytes) -> None:
        transport = self.transport
        if transport is not None:
            transport.send(msg_type, payload)


def echo_factory(request: WSUpgradeRequest) -> Echo:
    return Echo()


async def serve(host: str = "127.0.0.1", port: int = 0) -> None:
    server = await create_server(echo_factory, host, port)
    bound = server.sockets[0].getsockname()
    print(f"listening on ws://{bound[0]}:{bound[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    import uvloop

    uvloop.run(serve(*sys.argv[1:2]))
