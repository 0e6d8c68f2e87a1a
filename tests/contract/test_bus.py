"""The bus contract (``app/bus.py``): the same tests on the in-process bus and on NATS
JetStream, each on a namespace of its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.conftest import require
from tradews.adapters.memory_bus import MemoryBus
from tradews.adapters.nats_bus import Bus, parse_bus_url
from tradews.testing import NATS_URL, fresh_bus_url, nats_reachable

ACK_WAIT_S = 1.0  # short, so that a redelivery shows within the test

MakeBus = Callable[[], Any]


@pytest.fixture(params=["memory", "nats"])
async def make_bus(request: pytest.FixtureRequest) -> AsyncIterator[MakeBus]:
    """Buses on one fresh namespace (an engine's and a gateway's, say), connected."""
    if request.param == "nats":
        require(nats_reachable(), f"NATS is not reachable at {NATS_URL}")
        url = parse_bus_url(fresh_bus_url())
    else:
        url = parse_bus_url(fresh_bus_url("memory://"))
    made: list[Any] = []

    async def make() -> Any:
        kind = Bus if request.param == "nats" else MemoryBus
        bus = kind(url, name="contract", ack_wait_s=ACK_WAIT_S)
        await bus.connect(wait=False)
        made.append(bus)
        return bus

    yield make  # type: ignore[misc]
    if made:
        await made[0].delete_streams()
    for bus in made:
        await bus.close()


async def test_a_command_is_delivered_once_acknowledged_and_a_repeat_is_dropped(
    make_bus: Callable[[], Any],
) -> None:
    gateway, engine = await make_bus(), await make_bus()
    await gateway.send_command("main", "id-1", b"first")
    await gateway.send_command("main", "id-1", b"first")  # a retry: same id
    await gateway.send_command("main", "id-2", b"second")
    consumer = await engine.take_commands("main")
    got = await engine.fetch(consumer, timeout=2)
    assert [(c.msg_id, c.data, c.redelivered) for c in got] == [
        ("id-1", b"first", False),
        ("id-2", b"second", False),
    ]
    for command in got:
        await command.ack()
    assert await engine.fetch(consumer, timeout=ACK_WAIT_S + 0.5) == []


async def test_a_command_not_acknowledged_in_time_is_delivered_again(
    make_bus: Callable[[], Any],
) -> None:
    gateway, engine = await make_bus(), await make_bus()
    await gateway.send_command("main", "id-1", b"taken, then the engine died")
    consumer = await engine.take_commands("main")
    (first,) = await engine.fetch(consumer, timeout=2)
    assert not first.redelivered
    # the same durable consumer, as an engine that takes over gets it
    successor = await engine.take_commands("main")
    again = await engine.fetch(successor, timeout=ACK_WAIT_S + 2)
    assert [(c.msg_id, c.redelivered) for c in again] == [("id-1", True)]
    await again[0].ack()


async def test_the_log_reaches_followers_in_order_each_entry_once(
    make_bus: Callable[[], Any],
) -> None:
    engine, gateway = await make_bus(), await make_bus()
    assert await engine.last_logged("main") == 0
    seen: list[tuple[int, str, bytes]] = []
    arrived = asyncio.Event()

    def on_entry(seq: int, msg_id: str, command: bytes) -> None:
        seen.append((seq, msg_id, command))
        if seq == 3:
            arrived.set()

    stop = await gateway.follow_log("main", on_entry)
    first = [(1, "a", b"c1"), (2, None, b"c2")]
    await engine.publish_log("main", first)
    await engine.publish_log("main", first)  # the same batch again: stored once
    await engine.publish_log("main", [(2, None, b"c2"), (3, "b", b"c3")])  # 2 in another cut
    await asyncio.wait_for(arrived.wait(), 5)
    # in order; an entry republished in a batch cut differently may come again
    assert seen[:2] == [(1, "a", b"c1"), (2, "", b"c2")]
    assert seen[-1] == (3, "b", b"c3")
    assert [s for s, _, _ in seen] in ([1, 2, 3], [1, 2, 2, 3])
    assert await engine.last_logged("main") == 3
    assert await engine.last_logged("other") == 0
    await stop()


async def test_prices_and_heartbeats_reach_who_follows(make_bus: Callable[[], Any]) -> None:
    engine, gateway = await make_bus(), await make_bus()
    await engine.answer_prices("main", lambda: {"BTC_USD": (650_000, 1)})
    prices: list[dict[str, tuple[int, int]]] = []
    got = asyncio.Event()

    def on_prices(update: dict[str, tuple[int, int]]) -> None:
        prices.append(update)
        got.set()

    await gateway.follow_prices("main", on_prices)
    assert prices == [{"BTC_USD": (650_000, 1)}]  # the current ones, at once
    got.clear()
    await engine.publish_prices("main", {"BTC_USD": (650_001, 1)})
    await asyncio.wait_for(got.wait(), 5)
    assert prices[-1] == {"BTC_USD": (650_001, 1)}
    beats: list[int] = []
    beat = asyncio.Event()
    await engine.follow_heartbeats(lambda g: (beats.append(g), beat.set()))
    await gateway.publish_heartbeat(42)
    await asyncio.wait_for(beat.wait(), 5)
    assert beats == [42]
