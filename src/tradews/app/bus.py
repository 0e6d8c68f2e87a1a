"""The bus between an engine and its gateways, as the engine and gateway roles use it.

Two implementations: ``adapters/nats_bus.py`` (NATS JetStream, between processes and machines)
and ``adapters/memory_bus.py`` (within one process: the reference the contract tests in
``tests/contract/test_bus.py`` hold the NATS one to). What each method promises is written here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from tradews.adapters.nats_bus import BusUrl, Command

Prices = dict[str, tuple[int, int]]  # symbol -> reference price in ticks, as a fraction


class MessageBus(Protocol):
    url: BusUrl
    connected: asyncio.Event  # set while commands can be sent

    async def connect(self, *, wait: bool = True) -> None:
        """Connect (waiting for the bus while ``wait``) and make sure the streams exist."""
        ...

    async def close(self) -> None: ...

    async def delete_streams(self) -> None:
        """Forget everything this namespace holds."""
        ...

    # Gateway side ------------------------------------------------------------------------------

    async def send_command(self, shard: str, msg_id: str, data: bytes) -> None:
        """Store a command for the shard's engine; returns once it is stored. A second command
        with the same ``msg_id`` within the duplicate window is dropped."""
        ...

    async def follow_log(
        self, shard: str, on_entry: Callable[[int, str, bytes], None]
    ) -> Callable[[], Awaitable[None]]:
        """Call ``on_entry(seq, msg_id, command)`` for every log entry published from now on,
        in publishing order. An entry published again may be delivered again (a follower skips
        seqs it has). Returns a function that stops following."""
        ...

    async def publish_prices(self, shard: str, prices: Prices) -> None: ...

    async def follow_prices(self, shard: str, on_prices: Callable[[Prices], None]) -> None:
        """Every price update of the shard's engine from now on; and the current prices at
        once, if it answers (``answer_prices``)."""
        ...

    async def publish_heartbeat(self, gateway_id: int) -> None: ...

    # Engine side -------------------------------------------------------------------------------

    async def take_commands(self, shard: str) -> Any:
        """The shard's durable consumer: the same one for every engine that takes over."""
        ...

    async def fetch(self, consumer: Any, timeout: float = 1.0) -> list[Command]:
        """Stored commands not yet acknowledged, oldest first: those never delivered, and those
        delivered but not acknowledged within the ack wait (``redelivered``). An empty list
        after ``timeout`` when there are none. An acknowledged command is never delivered
        again."""
        ...

    async def last_logged(self, shard: str) -> int:
        """The seq of the newest entry in the shard's log; 0 if it has none."""
        ...

    async def publish_log(
        self, shard: str, entries: Sequence[tuple[int, str | None, bytes]]
    ) -> None:
        """Append entries to the shard's log, in order, as few messages as it can. The same
        batch published again within the duplicate window is dropped. Returns once every entry
        is stored."""
        ...

    async def answer_prices(self, shard: str, current: Callable[[], Prices]) -> None: ...

    async def follow_heartbeats(self, on_beat: Callable[[int], None]) -> None: ...


if TYPE_CHECKING:  # both implementations keep this contract (checked by mypy)
    from tradews.adapters.memory_bus import MemoryBus
    from tradews.adapters.nats_bus import Bus

    def _implementations(nats: Bus, memory: MemoryBus) -> tuple[MessageBus, MessageBus]:
        return nats, memory
