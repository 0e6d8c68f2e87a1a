"""What the operator reads about accounts: balances, orders and trades, from the database.

Orders and trades come from the read models the engine commits with its journal. Balances live
in the engine, so they are the engine's state rebuilt from the journal (newest snapshot, then the
rest), read-only: the same numbers a running server holds as of its last durable batch, without
asking it anything.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tradews.adapters.registry import open_journal
from tradews.adapters.sql_store import FEE_ACCOUNT, Operations, SqlStore
from tradews.app.engine_host import recover
from tradews.domain.instrument import Instrument
from tradews.domain.ledger import format_atoms
from tradews.engine.engine import Engine
from tradews.session.formats import SIDE_NAMES, order_state


class ReportError(Exception):
    pass


def _account_id(store: SqlStore, name: str) -> int:
    account = store.get_account(name)
    if account is None:
        raise ReportError(f"no account named {name!r}")
    return account.id


def engine_state(store: SqlStore) -> Engine:
    """The engine as its journal leaves it (read-only: nothing is written)."""
    fees = store.get_account(FEE_ACCOUNT)
    journal = open_journal(store.url)
    try:
        engine, _, _ = recover(
            store.list_instruments(),
            journal,
            fee_account_id=0 if fees is None else fees.id,
            shard_number=store.shard_number(),
        )
    finally:
        journal.close()
    return engine


def balances(store: SqlStore, account: str | None) -> list[dict[str, Any]]:
    """Every account's balances (or one account's), by account name then asset; zero rows of
    assets an account held once are left out."""
    wanted = None if account is None else _account_id(store, account)
    engine = engine_state(store)
    names = Operations(store).account_names()
    rows = []
    for (account_id, asset), (available, locked) in engine.ledger.items():
        if wanted is not None and account_id != wanted or not (available or locked):
            continue
        rows.append(
            {
                "account": names.get(account_id, str(account_id)),
                "asset": asset,
                "available": format_atoms(available),
                "locked": format_atoms(locked),
                "total": format_atoms(available + locked),
                "frozen": engine.is_frozen(account_id),
            }
        )
    rows.sort(key=lambda r: (r["account"], r["asset"]))
    return rows


def orders(store: SqlStore, account: str, *, open_only: bool) -> list[dict[str, Any]]:
    """An account's orders, oldest first, as the API shows them (``order_status``)."""
    account_id = _account_id(store, account)
    catalog = _instruments(store)
    found = Operations(store).orders_of(account_id, open_only=open_only)
    return [msgspec.to_builtins(order_state(o, catalog[o.symbol])) for o in found]


def trades(
    store: SqlStore, *, account: str | None, symbol: str | None, since: int | None
) -> list[dict[str, Any]]:
    """Trades, oldest first, with both sides' accounts and fees."""
    account_id = None if account is None else _account_id(store, account)
    catalog = _instruments(store)
    if symbol is not None and symbol not in catalog:
        raise ReportError(f"no instrument {symbol!r}")
    names = Operations(store).account_names()
    rows = []
    for t in Operations(store).trades_matching(account_id=account_id, symbol=symbol, since=since):
        inst = catalog[t.symbol]
        rows.append(
            {
                "tradeId": t.trade_id,
                "symbol": t.symbol,
                "price": inst.format_price(t.price),
                "quantity": inst.format_quantity(t.quantity),
                "takerSide": SIDE_NAMES[t.taker_side],
                "maker": names.get(t.maker_account_id, str(t.maker_account_id)),
                "taker": names.get(t.taker_account_id, str(t.taker_account_id)),
                "makerFee": format_atoms(t.maker_fee),
                "takerFee": format_atoms(t.taker_fee),
                "quoteId": t.quote_id,
                "timestamp": t.at,
            }
        )
    return rows


def _instruments(store: SqlStore) -> dict[str, Instrument]:
    return {i.symbol: i for i in store.list_instruments()}
