"""A broken invariant inside Engine.apply halts trading: nothing is acknowledged or applied after."""

from __future__ import annotations

from pathlib import Path

from tests.domain.test_invariants import BUYER, two_sided_engine, unlocked_behind_the_engine
from tradews.adapters.registry import open_journal
from tradews.app.engine_host import EngineHost
from tradews.domain.invariants import InvariantViolation
from tradews.engine.commands import CancelOrder, Deposit
from tradews.engine.engine import Result


def test_an_invariant_violation_in_apply_is_fatal(tmp_path: Path) -> None:
    engine, bid, ask = two_sided_engine()
    unlocked_behind_the_engine(BUYER, "USD")(engine, bid, ask)
    fatal: list[BaseException] = []
    replies: list[Result] = []
    published: list[object] = []
    journal = open_journal(str(tmp_path / "journal.db"))
    host = EngineHost(
        engine, journal, lambda events, records: published.append(events), fatal.append
    )
    try:
        assert host.submit(CancelOrder(1, BUYER, bid.order_id, None), replies.append) is False
        assert isinstance(host.failed, InvariantViolation)
        assert "unlock of" in str(host.failed) and "account 1" in str(host.failed)
        assert fatal == [host.failed]
        # Nothing was acknowledged or published, and the host takes no more commands.
        seq = engine.seq
        assert host.submit(Deposit(2, BUYER, "USD", 1, "after"), replies.append) is False
        assert engine.seq == seq
        assert replies == [] and published == []
    finally:
        host.close()
        journal.close()
