"""The bus within one process (``memory://namespace``): the engine and gateway roles joined
without NATS, for tests, and the reference implementation of ``app/bus.py``'s contract.

Buses opened on the same namespace in one process share one broker, as processes share a NATS
server. It keeps what JetStream keeps for the deployment: the commands not yet acknowledged
(a work queue with an ack wait and a duplicate window), the log, and plain subscriptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from tradews.adapters.nats_bus import (
    ACK_WAIT_S,
    DUPLICATE_WINDOW_S,
    FETCH_BATCH,
    BusUrl,
    Command,
)

Prices = dict[str, tuple[int, int]]


@dataclass(slots=True)
class _Stored:
    data: bytes
    msg_id: str
    delivered: int = 0
    due: float = 0.0  # when an unacknowledged delivery may be delivered again


@dataclass(slots=True)
class _Broker:
    commands: dict[str, list[_Stored]] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)  # msg id -> stored at
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    log: dict[str, list[tuple[int, str, bytes]]] = field(default_factory=dict)
    logged: dict[str, float] = field(default_factory=dict)  # batch id -> published at
    followers: dict[str, list[Callable[[int, str, bytes], None]]] = field(default_factory=dict)
    price_followers: dict[str, list[Callable[[Prices], None]]] = field(default_factory=dict)
    price_answers: dict[str, Callable[[], Prices]] = field(default_factory=dict)
    beat_followers: list[Callable[[int], None]] = field(default_factory=list)


_brokers: dict[str, _Broker] = {}


class MemoryBus:
    def __init__(
        self,
        url: BusUrl,
        *,
        name: str = "",
        ack_wait_s: float = ACK_WAIT_S,
        duplicate_window_s: float = DUPLICATE_WINDOW_S,
    ) -> None:
        self.url = url
        self.connected = asyncio.Event()
        self._ack_wait = ack_wait_s
        self._window = duplicate_window_s
        self._broker: _Broker | None = None

    @property
    def broker(self) -> _Broker:
        assert self._broker is not None, "connect() first"
        return self._broker

    async def connect(self, *, wait: bool = True) -> None:
        self._broker = _brokers.setdefault(self.url.namespace, _Broker())
        self.connected.set()

    async def close(self) -> None:
        self.connected.clear()

    async def delete_streams(self) -> None:
        _brokers.pop(self.url.namespace, None)

    async def send_command(self, shard: str, msg_id: str, data: bytes) -> None:
        broker, now = self.broker, time.monotonic()
        stored_at = broker.seen.get(msg_id)
        if stored_at is not None and now - stored_at < self._window:
            return
        broker.seen[msg_id] = now
        broker.commands.setdefault(shard, []).append(_Stored(data, msg_id))
        broker.arrived.set()

    async def follow_log(
        self, shard: str, on_entry: Callable[[int, str, bytes], None]
    ) -> Callable[[], Awaitable[None]]:
        followers = self.broker.followers.setdefault(shard, [])
        followers.append(on_entry)

        async def stop() -> None:
            with contextlib.suppress(ValueError):
                followers.remove(on_entry)

        return stop

    async def publish_prices(self, shard: str, prices: Prices) -> None:
        for follower in list(self.broker.price_followers.get(shard, ())):
            follower(dict(prices))

    async def follow_prices(self, shard: str, on_prices: Callable[[Prices], None]) -> None:
        broker = self.broker
        broker.price_followers.setdefault(shard, []).append(on_prices)
        answer = broker.price_answers.get(shard)
        if answer is not None:
            on_prices(answer())

    async def answer_prices(self, shard: str, current: Callable[[], Prices]) -> None:
        self.broker.price_answers[shard] = current

    async def publish_heartbeat(self, gateway_id: int) -> None:
        for follower in list(self.broker.beat_followers):
            follower(gateway_id)

    async def follow_heartbeats(self, on_beat: Callable[[int], None]) -> None:
        self.broker.beat_followers.append(on_beat)

    async def take_commands(self, shard: str) -> str:
        return shard

    async def fetch(self, consumer: str, timeout: float = 1.0) -> list[Command]:
        broker = self.broker
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            queue = broker.commands.setdefault(consumer, [])
            ready = [s for s in queue if s.delivered == 0 or s.due <= now][:FETCH_BATCH]
            if ready:
                return [self._deliver(queue, s, now) for s in ready]
            if now >= deadline:
                return []
            broker.arrived.clear()
            # woken by a new command, or in time for the next redelivery
            waits = [s.due - now for s in queue if s.delivered] + [deadline - now]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(broker.arrived.wait(), max(0.0, min(waits)))

    def _deliver(self, queue: list[_Stored], stored: _Stored, now: float) -> Command:
        stored.delivered += 1
        stored.due = now + self._ack_wait

        async def ack() -> None:
            with contextlib.suppress(ValueError):
                queue.remove(stored)

        return Command(stored.data, stored.msg_id, stored.delivered > 1, ack)

    async def last_logged(self, shard: str) -> int:
        log = self.broker.log.get(shard)
        return log[-1][0] if log else 0  # the newest stored, as JetStream's last message

    async def publish_log(
        self, shard: str, entries: Sequence[tuple[int, str | None, bytes]]
    ) -> None:
        if not entries:
            return
        broker, now = self.broker, time.monotonic()
        key = f"{shard}:{entries[0][0]}-{entries[-1][0]}"  # as JetStream de-duplicates a batch
        at = broker.logged.get(key)
        if at is not None and now - at < self._window:
            return
        broker.logged[key] = now
        log = broker.log.setdefault(shard, [])
        for seq, msg_id, blob in entries:
            log.append((seq, msg_id or "", blob))
            for follower in list(broker.followers.get(shard, ())):
                follower(seq, msg_id or "", blob)
