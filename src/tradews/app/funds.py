"""Operator deposits, withdrawals and account freezes: always through the engine, never around it.

If a server is running (it holds the database's engine lease), the command goes into the inbox
table; the server applies it within a tenth of a second and records the outcome in the same
transaction as the journal entry, and this waits for that outcome. If no server is running, this
process takes the lease and is the engine for one command: it replays the journal, applies the
command, and journals it. Either way the deposit is a journaled engine command, idempotent by
its ``ref``. Freezing an account goes the same way (:func:`freeze_account`).
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

from tradews.adapters import clock
from tradews.adapters.registry import open_journal, open_lease
from tradews.adapters.sql_journal import JournalEntry
from tradews.adapters.sql_store import FEE_ACCOUNT, HOUSE_ACCOUNT, Operations, SqlStore
from tradews.app.engine_host import recover
from tradews.app.server import result_text
from tradews.domain.ledger import to_atoms
from tradews.engine.commands import AnyCommand, Deposit, FreezeAccount, Withdraw, encoder


class FundsError(Exception):
    pass


def move_funds(
    store: SqlStore, kind: str, account: str, asset: str, amount: Decimal, ref: str,
    *, timeout: float = 10.0,
) -> dict[str, Any]:  # fmt: skip
    target = store.get_account(account)
    if target is None and account in (HOUSE_ACCOUNT, FEE_ACCOUNT):
        # the system accounts exist from the engine's first start; funding the desk may come
        # before it, on a database that has only its instruments
        Operations(store).system_accounts(clock.now_ms())
        target = store.get_account(account)
    if target is None:
        raise FundsError(f"no account named {account!r}")
    atoms = to_atoms(amount)
    if atoms is None or atoms <= 0:
        raise FundsError("amount must be positive with at most 8 decimals")
    cls = Deposit if kind == "deposit" else Withdraw
    return through_engine(store, cls(clock.now_ms(), target.id, asset, atoms, ref), kind, timeout)


def freeze_account(
    store: SqlStore, account: str, frozen: bool, *, timeout: float = 10.0
) -> dict[str, Any]:
    """Freeze (or unfreeze) an account in the engine: journaled, so it outlives a restart and
    every replica of a distributed deployment applies it at the same point."""
    target = store.get_account(account)
    if target is None:
        raise FundsError(f"no account named {account!r}")
    command = FreezeAccount(clock.now_ms(), target.id, frozen)
    return through_engine(store, command, "freeze" if frozen else "unfreeze", timeout)


def through_engine(
    store: SqlStore, command: AnyCommand, what: str, timeout: float = 10.0
) -> dict[str, Any]:
    """Apply ``command``: in the running server through its inbox, or here when none runs."""
    ops = Operations(store)
    lock = open_lease(store.url)
    if lock.try_acquire():
        try:
            return _apply_offline(store, ops, command)
        finally:
            lock.release()
    inbox_id = ops.inbox_add(encoder.encode(command), clock.now_ms())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outcome = ops.inbox_outcome(inbox_id)
        if outcome is not None:
            return _decorate(json.loads(outcome), "server")
        time.sleep(0.02)
    raise FundsError(
        f"the running server did not take the {what} within {timeout:.0f} s; it stays queued "
        f"(inbox #{inbox_id}) and will be applied when the server catches up"
    )


def _apply_offline(store: SqlStore, ops: Operations, command: AnyCommand) -> dict[str, Any]:
    _, fee_id = ops.system_accounts(clock.now_ms())
    journal = open_journal(store.url)
    try:
        engine, _, _ = recover(
            store.list_instruments(),
            journal,
            fee_account_id=fee_id,
            shard_number=store.shard_number(),
        )
        result, events = engine.apply(command)
        journal.append([JournalEntry(engine.seq, command.at, encoder.encode(command), events)])
    finally:
        journal.close()
    return _decorate(json.loads(result_text(result)), "offline")


def _decorate(outcome: dict[str, Any], via: str) -> dict[str, Any]:
    detail = outcome.pop("detail", None)
    if isinstance(detail, dict):
        outcome.update(detail)
    outcome["via"] = via
    return outcome
