"""Engine shards: two engines, each owning its instruments, ledger and journal, on one
PostgreSQL database and one NATS JetStream, each with a gateway. Clients trade on both; ids are
unique across shards; a gateway names the shard that trades a symbol it does not; funds move
between shards; and one shard's engine dying leaves the other trading."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.databases import fresh_pg_database
from tests.helpers import funded_accounts
from tradews.adapters import sql_schema
from tradews.app.engine_host import SHARD_ID_BITS
from tradews.client import Client, RpcError
from tradews.testing import (
    NATS_URL,
    ServerProcess,
    drop_bus,
    fresh_bus_url,
    nats_reachable,
    run_cli,
    run_cli_many,
)

pytestmark = pytest.mark.timeout(180)

TRADERS = ("t1", "t2")


class Shards:
    """One engine and one gateway per shard (``main``: ETH_USD; ``eu``: BTC_EUR)."""

    def __init__(self, db: str, bus: str) -> None:
        self.db, self.bus = db, bus
        self.engines: dict[str, ServerProcess] = {}
        self.gateways: dict[str, ServerProcess] = {}

    def start_engine(self, shard: str) -> ServerProcess:
        self.engines[shard] = ServerProcess.start(
            self.db, demo=False, command="engine", args=("--bus", self.bus, "--shard", shard)
        )
        return self.engines[shard]

    def start_gateway(self, shard: str) -> ServerProcess:
        self.gateways[shard] = ServerProcess.start(
            self.db, demo=False, command="gateway", args=("--bus", self.bus, "--shard", shard)
        )
        return self.gateways[shard]

    def stop(self) -> None:
        for process in (*self.gateways.values(), *self.engines.values()):
            process.stop()


@pytest.fixture
def shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Shards, Any]]:
    require(nats_reachable(), f"NATS is not reachable at {NATS_URL}")
    monkeypatch.setenv("TRADEWS_KEY_FILE", str(tmp_path / "tradews.key"))
    bus = fresh_bus_url()
    with fresh_pg_database() as db:
        run_cli("db", "upgrade", "--shard", "eu", db=db)
        keys = funded_accounts(db, TRADERS)  # ETH_USD on main, funds on main
        eu: list[tuple[str, ...]] = [
            ("instrument", "add", "BTC_EUR", "--base", "BTC", "--quote", "EUR",
             "--tick", "0.01", "--lot", "0.0001", "--shard", "eu"),
        ]  # fmt: skip
        for name in TRADERS:
            for asset, amount in (("EUR", "1000000"), ("BTC", "100")):
                eu.append(("deposit", name, asset, amount, "--ref", f"eu-{name}-{asset}",
                           "--shard", "eu", "--json"))  # fmt: skip
        assert all(out["ok"] for out in run_cli_many(*eu, db=db)[1:])
        deployment = Shards(db, bus)
        try:
            for shard in ("main", "eu"):
                deployment.start_engine(shard)
                deployment.start_gateway(shard)
            yield deployment, keys
        finally:
            deployment.stop()
            drop_bus(bus)


async def login(server: ServerProcess, key: dict[str, str]) -> Client:
    client = await Client.connect(server.url)
    await client.login(key["apiKey"], key["apiSecret"])
    return client


def balance(balances: Any, asset: str) -> Decimal:
    rows = balances if isinstance(balances, list) else balances.get("balances", balances)
    for row in rows:
        if row["asset"] == asset:
            return Decimal(row["available"]) + Decimal(row.get("locked", "0"))
    return Decimal(0)


async def test_two_engine_shards_trade_apart_with_their_own_ledgers(
    shards: tuple[Shards, Any],
) -> None:
    d, keys = shards
    main, eu = d.gateways["main"], d.gateways["eu"]
    listed = run_cli("shard", "list", "--json", db=d.db)
    assert {s["shard"]: s["instruments"] for s in listed} == {
        "main": ["ETH_USD"],
        "eu": ["BTC_EUR"],
    }
    # the operator's commands on an instrument find it on any shard
    priced = run_cli("price", "set", "BTC_EUR", "50000", db=d.db, check=False)
    assert priced.returncode == 0, priced.stderr
    m1, m2 = await login(main, keys["t1"]), await login(main, keys["t2"])
    e1, e2 = await login(eu, keys["t1"]), await login(eu, keys["t2"])

    # each gateway lists its shard's instruments, and names the shard of another's
    assert [i["symbol"] for i in await m1.call("instruments")] == ["ETH_USD"]
    assert [i["symbol"] for i in await e1.call("instruments")] == ["BTC_EUR"]
    with pytest.raises(RpcError) as wrong:
        await m1.place_order("BTC_EUR", "buy", "1", price="50000.00")
    assert "shard (eu)" in wrong.value.message
    with pytest.raises(RpcError) as wrong_book:
        await m1.subscribe("book.BTC_EUR")
    assert wrong_book.value.code == 2001 and "shard (eu)" in wrong_book.value.message

    # trades on both shards; the eu shard's ids are above its base, so unique across shards
    await m1.place_order("ETH_USD", "sell", "1.000", price="3000.00", client_order_id="m-s")
    main_fill = await m2.place_order("ETH_USD", "buy", "1.000", price="3000.00")
    assert main_fill["status"] == "filled"
    await e1.place_order("BTC_EUR", "sell", "0.5", price="50000.00", client_order_id="e-s")
    eu_fill = await e2.place_order("BTC_EUR", "buy", "0.5", price="50000.00")
    assert eu_fill["status"] == "filled"
    eu_base = 1 << SHARD_ID_BITS
    assert main_fill["orderId"] < eu_base < eu_fill["orderId"]
    eu_trades = await e2.call("trades", {"symbol": "BTC_EUR"})
    main_trades = await m2.call("trades", {"symbol": "ETH_USD"})
    assert all(t["tradeId"] > eu_base for t in eu_trades)
    assert all(t["tradeId"] < eu_base for t in main_trades)

    # each shard keeps its own ledger: the eu sale paid EUR on eu only
    eur = balance(await e1.call("balances"), "EUR")
    assert Decimal("1024900") < eur < Decimal("1025000")  # 25,000 less the maker's fee
    assert balance(await m1.call("balances"), "EUR") == 0
    assert balance(await m1.call("balances"), "USD") > Decimal("10002990")
    assert balance(await e1.call("balances"), "USD") == 0

    # funds move between shards while both engines run, through their inboxes
    moved = run_cli(
        "transfer", "t1", "EUR", "1000", "--from", "eu", "--to", "main", "--ref", "tr-1",
        "--json", db=d.db,
    )  # fmt: skip
    assert moved["withdraw"]["ok"] and moved["deposit"]["ok"], moved
    assert (moved["withdraw"]["shard"], moved["deposit"]["shard"]) == ("eu", "main")
    assert balance(await e1.call("balances"), "EUR") == eur - 1000
    assert balance(await m1.call("balances"), "EUR") == Decimal("1000")
    again = run_cli(
        "transfer", "t1", "EUR", "1000", "--from", "eu", "--to", "main", "--ref", "tr-1",
        db=d.db,
    )  # fmt: skip
    assert again.returncode == 0 and "already done" in again.stdout
    assert balance(await m1.call("balances"), "EUR") == Decimal("1000")
    too_much = run_cli(
        "transfer", "t1", "EUR", "99999999", "--from", "eu", "--to", "main", "--ref", "tr-2",
        db=d.db, check=False,
    )  # fmt: skip
    assert too_much.returncode == 1 and "INSUFFICIENT" in too_much.stderr
    assert balance(await m1.call("balances"), "EUR") == Decimal("1000")

    # the eu engine dies: main trades on; eu comes back with every acknowledged order
    await e1.place_order("BTC_EUR", "sell", "0.1", price="51000.00", client_order_id="e-rest")
    d.engines["eu"].stop(signal.SIGKILL)
    await m1.place_order("ETH_USD", "sell", "1.000", price="3001.00", client_order_id="m-2")
    assert (await m2.place_order("ETH_USD", "buy", "1.000", price="3001.00"))["status"] == (
        "filled"
    )
    d.start_engine("eu")
    rest = await e1.call("order_status", {"clientOrderId": "e-rest"})
    assert rest["status"] == "new" and rest["orderId"] > eu_base
    assert (await e2.place_order("BTC_EUR", "buy", "0.1", price="51000.00"))["status"] == ("filled")
    for client in (m1, m2, e1, e2):
        await client.close()


def test_every_migration_statement_belongs_to_the_shared_schema_or_a_shards() -> None:
    """A shard's schema gets the statements on its own tables; a statement of a shape the
    split does not know would be an error at `db upgrade --shard`, so it is one here."""
    types = {"int": "BIGINT", "blob": "BYTEA", "id": "BIGINT", "without_rowid": ""}
    for number in range(1, sql_schema.VERSION + 1):
        for dialect in ("sqlite", "postgresql"):
            every = sql_schema.statements(number, dialect, types)
            mine = sql_schema.statements(number, dialect, types, shard=True)
            assert set(mine) <= set(every)
    tables = {
        sql_schema._target(s)
        for n in range(1, sql_schema.VERSION + 1)
        for s in sql_schema.statements(n, "postgresql", types, shard=True)
    }
    assert tables == set(sql_schema.SHARD_TABLES)


def test_shards_other_than_main_need_postgresql(tmp_path: Path) -> None:
    db = tmp_path / "tradews.db"
    done = run_cli("balances", "--shard", "eu", db=db, check=False)
    assert done.returncode == 1
    assert "need a PostgreSQL store" in done.stderr
    served = run_cli("serve", "--shard", "eu", db=db, check=False)
    assert served.returncode == 1 and "--shard is for" in served.stderr


def test_an_engine_on_a_shard_not_set_up_says_how(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("TRADEWS_KEY_FILE", str(tmp_path / "tradews.key"))
    with fresh_pg_database() as db:
        done = run_cli("balances", "--shard", "asia", db=db, check=False)
        assert done.returncode == 1
        assert f"tradews db upgrade --db {db} --shard asia" in done.stderr
        listed = run_cli(
            "instrument", "add", "X_Y", "--base", "X", "--quote", "Y", "--tick", "1",
            "--lot", "1", "--shard", "asia", db=db, check=False,
        )  # fmt: skip
        assert listed.returncode == 1 and "no shard 'asia'" in listed.stderr
