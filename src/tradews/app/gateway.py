"""The gateway role: the WebSocket API of a distributed deployment, for one engine (shard).

A gateway is the all-in-one server without its engine host: sessions, codecs, streams, the RFQ
desk and the market-data desk are the same code. What changes is where commands go and where
the state comes from (``app/replica.py``): commands go into the bus's commands stream; the
engine's log comes back and is applied to a replica, which feeds the view and answers requests.

Start-up order matters and lives here: follow the log (holding entries), *then* let the server
recover the replica from the store, then apply what was held, then listen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from fractions import Fraction
from typing import TYPE_CHECKING

from tradews.app.bus import MessageBus
from tradews.app.replica import GATEWAY_IDS, TAG_BITS, BusTrading, Replica, StreamNumbers

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tradews.app.server import Server

log = logging.getLogger(__name__)

STOP_GRACE_S = 2.0
# A command JetStream has not stored within this is answered 4002 (the bus is down or stuck).
SEND_TIMEOUT_S = 3.0  # at a stop, how long the last commands (ended sessions) get to reach NATS


HEARTBEAT_S = 1.0  # how often a gateway tells the engine it is alive
# A request the engine has not confirmed within this is answered 4002. Shorter than a client's
# own deadline (10 s in tradews.client), so the client hears "unknown outcome, look it up"
# instead of timing out with nothing.
CONFIRM_TIMEOUT_MS = 5_000


class GatewayLink:
    def __init__(
        self, bus: MessageBus, shard: str, *, timeout_ms: int = CONFIRM_TIMEOUT_MS
    ) -> None:
        # Cancel-on-disconnect tags of this process's sessions carry its id in their high bits,
        # so the engine can end them all if this process dies without ending them itself.
        self.gateway_id = secrets.randbelow(GATEWAY_IDS - 1) + 1
        self._heartbeat: asyncio.Task[None] | None = None
        self.bus = bus
        self.shard = shard
        self.timeout_ms = timeout_ms
        self._server: Server | None = None
        self.replica = Replica(resolved=self._resolved, on_fatal=self._fatal)
        self.trading: BusTrading | None = None  # set by attach()
        self._unfollow: Callable[[], Awaitable[None]] | None = None

    async def follow(self) -> None:
        """Connect to the bus and follow the engine's log; call before building the server."""
        await self.bus.connect()
        self._unfollow = await self.bus.follow_log(self.shard, self.replica.on_entry)

    def attach(self, server: Server) -> BusTrading:
        """The server's trading port (called while the server is being built)."""
        self._server = server
        bus, shard = self.bus, self.shard
        self.trading = BusTrading(
            lambda msg_id, blob: asyncio.wait_for(
                bus.send_command(shard, msg_id, blob), SEND_TIMEOUT_S
            ),
            self.replica,
            connected=bus.connected.is_set,
            timeout_ms=self.timeout_ms,
        )
        return self.trading

    async def start(self) -> None:
        """The server has recovered the replica and seeded its view: go live."""
        server = self._server
        assert server is not None
        self.replica.start(
            server.engine,
            read_journal=server.journal.read,
            numbers=StreamNumbers(server.archive),
            publish=server.view_publish,
            listed=server.instruments_changed,
        )
        references = server.references

        def prices(update: dict[str, tuple[int, int]]) -> None:
            for symbol, (num, den) in update.items():
                if den > 0:
                    references[symbol] = Fraction(num, den)

        await self.bus.follow_prices(self.shard, prices)
        server.services.session_tags = self.new_session_tag
        self._heartbeat = asyncio.create_task(self._beat(), name="gateway-heartbeat")
        log.info(
            "gateway: replica at seq %d following %s", server.engine.seq, self.bus.url.log_stream
        )

    def new_session_tag(self) -> int:
        """A cancel-on-disconnect tag: this gateway's id, then 32 random bits (never 0)."""
        return (self.gateway_id << TAG_BITS) | (secrets.randbelow((1 << TAG_BITS) - 1) + 1)

    async def _beat(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.bus.publish_heartbeat(self.gateway_id)
            await asyncio.sleep(HEARTBEAT_S)

    def expire(self) -> None:
        """Answer the requests the engine has not confirmed in time (a timer calls this)."""
        if self.trading is not None:
            self.trading.expire()

    def _resolved(self, msg_id: str, result: object) -> None:
        if self.trading is not None:
            self.trading.resolved(msg_id, result)  # type: ignore[arg-type]

    def _fatal(self, error: BaseException) -> None:
        if self._server is not None:
            self._server.halt(error)

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        trading = self.trading
        if trading is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(trading.flush(), STOP_GRACE_S)
            await trading.close()
        if self._unfollow is not None:
            with contextlib.suppress(Exception):
                await self._unfollow()
        await self.bus.close()
