"""The engine role: the single writer of one shard, fed by the bus, publishing its journal.

The engine role is the all-in-one server without a WebSocket listener (its clients are the
gateways'), plus this link:

- It takes commands from the shard's durable consumer of the commands stream, stamps each with
  the engine's clock (as the all-in-one server does: replay reproduces every time-based
  decision) and submits it to the engine host with its message id, which is journaled with it.
  A redelivered message whose id is journaled already is acknowledged and not applied again.
- After each durable batch it publishes the batch's entries to the shard's log, in sequence
  order, and only then acknowledges their command messages. A command is therefore never lost
  (not acknowledged before it is durable) and never applied twice (its id is in the journal).
- At start it first publishes the journal's tail that the log lacks: the entries a previous
  engine made durable but died before publishing, so the gateways' replicas see every one.

Exactly one engine holds a shard's lease (see ``adapters/process_lock.py`` and the store's
lease); a second one waits as a standby and takes over the same consumer and log when the first
one dies. Its journal write would fail on the first's sequence numbers anyway: the journal's
primary key is the last line of defence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from tradews.adapters.nats_bus import Command
from tradews.adapters.sql_journal import JournalEntry
from tradews.app.bus import MessageBus
from tradews.app.replica import gateway_of
from tradews.engine.commands import EndSession, decoder, encoder

if TYPE_CHECKING:
    from tradews.app.server import Server

log = logging.getLogger(__name__)

# A gateway silent this long is dead: its cancel-on-disconnect sessions end (its clients'
# connections died with it). Heartbeats come every second.
GATEWAY_SILENCE_S = 5.0
REMEMBERED_IDS = 1_000_000  # message ids kept in memory to drop redeliveries without a query
MAX_UNPUBLISHED = 50_000  # stop taking commands while this many entries await the log
RETRY_S = 0.5
PRICES_REPEAT_S = 1.0  # unchanged reference prices are published again this often


class EngineLink:
    def __init__(
        self, server: Server, bus: MessageBus, shard: str, *, now_ms: Callable[[], int]
    ) -> None:
        self.server = server
        server.engine_link = self
        self.bus = bus
        self.shard = shard
        self._now_ms = now_ms
        self._applied: OrderedDict[str, None] = OrderedDict()
        self._acks: dict[str, Callable[[], Any]] = {}
        self._outbox: asyncio.Queue[list[tuple[int, str | None, bytes]]] = asyncio.Queue()
        self.unpublished = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.taken = 0
        self.duplicates = 0
        self.published_through = 0

    async def start(self) -> None:
        host = self.server.engine_host
        assert host is not None
        await self.bus.connect()
        # Entries made durable from now on queue for the publisher, which starts after the tail
        # is out (an entry in both is published twice under one id: JetStream keeps one).
        host.after_durable = self._durable
        await self._publish_tail()
        self._tasks = [
            asyncio.create_task(self._consume(), name="engine-consume"),
            asyncio.create_task(self._publish(), name="engine-publish"),
            asyncio.create_task(self._publish_prices(), name="engine-prices"),
            asyncio.create_task(self._reap_gateways(), name="engine-reap"),
        ]

    async def stop(self) -> None:
        """Stop taking commands, publish what is durable, leave."""
        consume = self._tasks[0] if self._tasks else None
        if consume is not None:
            consume.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consume
        if self.server.engine_host is not None:
            await self.server.engine_host.drain()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._outbox.join(), 5.0)
        for task in self._tasks[1:]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.bus.close()

    async def _publish_tail(self) -> None:
        last = await self.bus.last_logged(self.shard)
        journal = self.server.journal
        tail: list[tuple[int, str | None, bytes]] = []
        known = journal.msg_ids_after(last)  # so a waiting gateway gets its reply
        for seq, command in journal.read(last):
            tail.append((seq, known.get(seq), encoder.encode(command)))
            if len(tail) >= 1000:
                await self.bus.publish_log(self.shard, tail)
                tail = []
        if tail:
            await self.bus.publish_log(self.shard, tail)
        self.published_through = self.server.engine.seq
        if self.server.engine.seq > last:
            log.info(
                "engine: published the log's missing tail, seq %d-%d",
                last + 1,
                self.server.engine.seq,
            )

    # Commands in -------------------------------------------------------------------------------

    async def _consume(self) -> None:
        host = self.server.engine_host
        assert host is not None
        consumer = None
        while True:
            try:
                if consumer is None:
                    consumer = await self.bus.take_commands(self.shard)
                    log.info("engine: taking commands for shard %s", self.shard)
                if self.unpublished >= MAX_UNPUBLISHED or host.failed is not None:
                    await asyncio.sleep(0.01)
                    continue
                for command in await self.bus.fetch(consumer):
                    self._take(command)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("engine: taking commands failed (%r); retrying", exc)
                await asyncio.sleep(RETRY_S)

    def _take(self, message: Command) -> None:
        msg_id = message.msg_id
        if msg_id in self._applied or (message.redelivered and self._journaled(msg_id)):
            self.duplicates += 1
            self._ack(message.ack)
            return
        try:
            command = decoder.decode(message.data)
        except msgspec.DecodeError as exc:
            log.error("engine: dropped an undecodable command %s: %s", msg_id or "?", exc)
            self._ack(message.ack)
            return
        command = msgspec.structs.replace(command, at=self._now_ms())  # the engine's clock
        host = self.server.engine_host
        assert host is not None
        symbol = getattr(command, "symbol", None)
        if symbol is not None and symbol not in self.server.engine.markets:
            self._list_from_store()
        if not host.submit(command, None, msg_id=msg_id or None):
            return  # halted: not acknowledged, the next engine takes it
        self.taken += 1
        if msg_id:
            self._remember(msg_id)
            self._acks[msg_id] = message.ack
        else:
            self._ack(message.ack)

    def _list_from_store(self) -> None:
        """A command names an instrument this engine has not listed: one the store may have
        and the watcher not yet journaled. A gateway built its replica from the store, with the
        instrument listed, and sent the command: journal the listing first, so the engine
        applies the command as the replica does (and a symbol nobody listed is refused by
        both)."""
        try:
            self.server.instruments_changed()
        except Exception as exc:  # the store unreachable: the command is refused, as before
            log.warning("engine: could not read the store's instruments: %r", exc)

    def _journaled(self, msg_id: str) -> bool:
        if msg_id in self.server.journal.lookup_msg_ids([msg_id]):
            self._remember(msg_id)
            return True
        return False

    def _remember(self, msg_id: str) -> None:
        applied = self._applied
        applied[msg_id] = None
        if len(applied) > REMEMBERED_IDS:
            applied.popitem(last=False)

    def _ack(self, ack: Callable[[], Any]) -> None:
        task = asyncio.get_running_loop().create_task(ack())
        task.add_done_callback(_quiet)

    # Log out -----------------------------------------------------------------------------------

    def _durable(self, entries: list[JournalEntry]) -> None:
        batch = [(e.seq, e.msg_id, e.blob) for e in entries]
        self.unpublished += len(batch)
        self._outbox.put_nowait(batch)

    async def _publish(self) -> None:
        outbox = self._outbox
        while True:
            batch = await outbox.get()
            taken = 1
            while not outbox.empty():  # batches made durable meanwhile go in the same message
                batch = batch + outbox.get_nowait()
                taken += 1
            while True:
                try:
                    await self.bus.publish_log(self.shard, batch)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("engine: publishing the log failed (%r); retrying", exc)
                    await asyncio.sleep(RETRY_S)
            self.unpublished -= len(batch)
            self.published_through = batch[-1][0]
            acks = self._acks
            await _ack_all([acks.pop(m) for _, m, _ in batch if m and m in acks])
            for _ in range(taken):
                outbox.task_done()

    async def _reap_gateways(self) -> None:
        """End the cancel-on-disconnect sessions of gateways that stopped beating: a killed
        gateway cannot end them itself. At start, every gateway gets the same grace, so the
        sessions of live gateways survive an engine restart or a takeover."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        seen: dict[int, float] = {}

        def beat(gateway_id: int) -> None:
            seen[gateway_id] = loop.time()

        await self.bus.follow_heartbeats(beat)
        host = self.server.engine_host
        assert host is not None
        while True:
            await asyncio.sleep(1.0)
            now = loop.time()
            if now - started < GATEWAY_SILENCE_S:
                continue
            dead = {g for g, at in seen.items() if now - at > GATEWAY_SILENCE_S}
            at = self._now_ms()
            ended = 0
            for account_id, tag in self.server.engine.sessions():
                gateway = gateway_of(tag)
                if gateway and (gateway in dead or gateway not in seen):
                    host.submit(EndSession(at, account_id, tag, True), None)
                    ended += 1
            for gateway in dead:
                del seen[gateway]
            if ended:
                log.warning("engine: ended %d sessions of gateways that went silent", ended)

    async def _publish_prices(self) -> None:
        """In demo mode the engine walks the prices: tell the gateways' RFQ desks each pulse."""
        references = self.server.references

        def current() -> dict[str, tuple[int, int]]:
            return {s: (p.numerator, p.denominator) for s, p in references.items()}

        await self.bus.answer_prices(self.shard, current)
        interval = self.server.settings.tick_interval
        loop = asyncio.get_running_loop()
        last: dict[str, tuple[int, int]] = {}
        sent_at = 0.0
        while True:
            await asyncio.sleep(interval)
            if not references:
                continue
            # Unchanged prices are not sent again, except once a second for a gateway that
            # missed a message (the feed is plain NATS): this loop may run more often than the
            # walk steps, and every message costs each gateway and NATS a decode.
            prices = current()
            if prices == last and loop.time() - sent_at < PRICES_REPEAT_S:
                continue
            with contextlib.suppress(Exception):
                await self.bus.publish_prices(self.shard, prices)
                last, sent_at = prices, loop.time()


async def _ack_all(acks: list[Callable[[], Any]]) -> None:
    """Acknowledge a published batch's commands here, in the publisher's task. An ack is a
    write to the connection's buffer, not a round trip, so a task for each (as ``_ack`` makes
    for a single one) would only add scheduling to every command."""
    for ack in acks:
        try:
            await ack()
        except Exception as exc:  # the command is delivered again, and dropped as a duplicate
            log.debug("engine: ack failed: %r", exc)


def _quiet(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("engine: ack failed: %r", task.exception())
