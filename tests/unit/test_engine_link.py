"""The engine role drops a redelivered command that its journal already holds: the command an
engine journaled and then died before acknowledging is delivered again, to its successor."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tradews.adapters.nats_bus import Bus, Command, parse_bus_url
from tradews.adapters.registry import open_journal, open_store
from tradews.app.engine_host import EngineHost
from tradews.app.engine_node import EngineLink
from tradews.engine.commands import Deposit, encoder
from tradews.engine.engine import Engine


async def test_a_redelivered_command_in_the_journal_is_acknowledged_not_applied(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "tradews.db")
    open_store(db).close()  # the schema
    journal = open_journal(db)
    engine = Engine([], fee_account_id=2)
    host = EngineHost(engine, journal, lambda events, records: None, lambda exc: None)
    # the predecessor journaled "m1", then died before acknowledging it
    host.submit(Deposit(1, 1, "USD", 100, "r1"), None, msg_id="m1")
    await host.drain()
    assert host.failed is None
    server: Any = SimpleNamespace(engine_host=host, journal=journal, engine=engine)
    link = EngineLink(server, Bus(parse_bus_url("nats://127.0.0.1:4222"), name="t"), "main",
                      now_ms=lambda: 5)  # fmt: skip
    acked: list[str] = []

    def ack(name: str) -> Any:
        async def done() -> None:
            acked.append(name)

        return done

    blob = encoder.encode(Deposit(0, 1, "USD", 100, "r1"))
    link._take(Command(blob, "m1", True, ack("m1")))  # delivered again, to the successor
    link._take(Command(encoder.encode(Deposit(0, 1, "USD", 7, "r2")), "m2", False, ack("m2")))
    await host.drain()
    await asyncio.sleep(0)  # the acknowledgement tasks run
    assert link.duplicates == 1 and link.taken == 1
    assert engine.seq == 2  # m1 once (before), m2 now
    assert acked == ["m1"]  # m2 is acknowledged only once published to the log
    assert journal.lookup_msg_ids(["m1", "m2"]).keys() == {"m1", "m2"}
    host.close()
    journal.close()
