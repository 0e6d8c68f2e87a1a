"""The distributed deployment: one engine and two gateways as separate processes, joined by the
real NATS JetStream of this machine, sharing one store. Killed with SIGKILL mid-burst, each
part must lose nothing that any client saw acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.databases import fresh_pg_database
from tests.helpers import eventually, funded_accounts, readyz, take
from tradews.adapters.nats_bus import Bus, parse_bus_url
from tradews.client import Client, ConnectionClosed, RpcError
from tradews.engine.commands import PlaceOrder, encoder
from tradews.testing import (
    NATS_URL,
    Deployment,
    ServerProcess,
    drop_bus,
    fresh_bus_url,
    nats_reachable,
    run_cli,
)

pytestmark = pytest.mark.timeout(180)

TRADERS = ("t1", "t2", "t3")


@pytest.fixture
def bus() -> Iterator[str]:
    require(nats_reachable(), f"NATS is not reachable at {NATS_URL}")
    url = fresh_bus_url()
    yield url
    drop_bus(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The deployment's store: a SQLite file the processes share on this machine, or a fresh
    PostgreSQL database (with the key file every process reads beside the test)."""
    if request.param == "sqlite":
        yield str(tmp_path / "tradews.db")
        return
    monkeypatch.setenv("TRADEWS_KEY_FILE", str(tmp_path / "tradews.key"))
    with fresh_pg_database() as url:
        yield url


@pytest.fixture
def deployment(store: str, bus: str) -> Iterator[tuple[Deployment, dict[str, dict[str, str]]]]:
    keys = funded_accounts(store, TRADERS)
    with Deployment.start(store, bus, gateways=2, demo=False) as d:
        yield d, keys


def state(server: ServerProcess) -> dict[str, Any]:
    return dict(json.loads(server.admin("/state?check=1")))


async def login(server: ServerProcess, key: dict[str, str]) -> Client:
    client = await Client.connect(server.url)
    await client.login(key["apiKey"], key["apiSecret"])
    return client


async def converged(d: Deployment) -> dict[str, Any]:
    """Wait until every gateway's replica is at the engine's seq with the same state hash; the
    engine's state then. The engine is read after the gateways each time: it may still be taking
    commands (those sent while it was down, after a restart), and a replica is never ahead of
    it, so equal readings are one state of the whole deployment."""

    async def probe() -> tuple[dict[str, Any], list[tuple[int, str]]]:
        replicas = [(s["seq"], s["stateHash"]) for s in map(state, d.gateways)]
        return state(d.engine), replicas

    engine, _ = await eventually(
        probe,
        lambda seen: all(r == (seen[0]["seq"], seen[0]["stateHash"]) for r in seen[1]),
        what="gateways at the engine's seq and hash (engine's state, replicas')",
    )
    return engine


async def test_clients_on_two_gateways_trade_and_see_the_same_streams(
    deployment: tuple[Deployment, dict[str, dict[str, str]]],
) -> None:
    d, keys = deployment
    g0, g1 = d.gateways
    seller = await login(g0, keys["t1"])
    await seller.subscribe("orders")
    buyer = await login(g1, keys["t2"])
    # t3 watches its own private streams and the book from both gateways
    watchers = [await login(g, keys["t3"]) for g in (g0, g1)]
    for w in watchers:
        await w.subscribe("orders")
        await w.subscribe("balances")
        await w.subscribe("book.ETH_USD", depth=10)
        await w.subscribe("trades.ETH_USD")
    t3 = watchers[0]
    await t3.place_order("ETH_USD", "buy", "1.000", price="2990.00", client_order_id="t3-a")
    await seller.place_order("ETH_USD", "sell", "2.000", price="3000.00", client_order_id="s1")
    fill = await buyer.place_order("ETH_USD", "buy", "1.500", price="3000.00", client_order_id="b1")
    assert fill["status"] == "filled"
    await t3.call("order_cancel", {"clientOrderId": "t3-a"})
    # the seller, on the other gateway, sees its fill
    fills = await take(seller, 1, {"fills"})
    assert Decimal(fills[0].params["quantity"]) == Decimal("1.5")
    # the same notifications, in the same order, on both gateways: once both replicas are at
    # the engine's seq, everything is sent; a round trip makes sure it has arrived
    await converged(d)
    seen = []
    for w in watchers:
        await w.time()
        seen.append([(n.method, n.params) for n in w.drain_notifications()])
    methods = {m for m, _ in seen[0]}
    assert {"orders", "balances", "book", "trades"} <= methods, methods
    assert seen[0] == seen[1]
    for c in (seller, buyer, *watchers):
        await c.close()


async def test_stopped_gateways_and_engine_exit_by_themselves_with_status_0(
    deployment: tuple[Deployment, dict[str, dict[str, str]]],
) -> None:
    """What ``systemctl stop`` does: SIGTERM, then SIGKILL if the process has not exited within
    a grace (``ServerProcess.stop``: 10 s, whose kill would make the status -9). Each part,
    having carried orders, leaves by itself, cleanly."""
    d, keys = deployment
    client = await login(d.gateways[0], keys["t1"])
    await client.place_order("ETH_USD", "buy", "1.000", price="2000.00", client_order_id="s1")
    await client.close()
    await converged(d)
    for part in (*d.gateways, d.engine):
        assert await asyncio.to_thread(part.stop) == 0, part.output[-5:]
        assert "stopped at seq" in part.output[-1], part.output[-5:]


async def burst(server: ServerProcess, name: str, key: dict[str, str], orders: int,
                acked: list[str], stop: asyncio.Event) -> None:  # fmt: skip
    """Crossing orders, 16 in flight; record each acknowledged clientOrderId. Once ``stop`` is
    set, an order left unanswered owes nothing."""
    rng = random.Random(name)
    client = await login(server, key)
    window = asyncio.Semaphore(16)

    async def one(n: int) -> None:
        async with window:
            if stop.is_set():
                return
            coid = f"{name}-{n}"
            try:
                await client.place_order(
                    "ETH_USD", rng.choice(("buy", "sell")), f"{rng.randint(1, 9)}.000",
                    price=f"{3000 + rng.randint(-3, 3)}.00", client_order_id=coid,
                )  # fmt: skip
            except (ConnectionClosed, TimeoutError, RpcError):
                if stop.is_set():
                    return
                raise
            acked.append(coid)

    try:
        await asyncio.gather(*(one(n) for n in range(orders)))
    finally:
        await client.close()


async def test_a_gateway_killed_mid_burst_loses_no_acknowledged_order(
    deployment: tuple[Deployment, dict[str, dict[str, str]]],
) -> None:
    d, keys = deployment
    g0, g1 = d.gateways
    bystander = await login(g1, keys["t3"])
    acked: list[str] = []
    stop = asyncio.Event()
    task = asyncio.create_task(burst(g0, "t1", keys["t1"], 400, acked, stop))
    await eventually(lambda: asyncio.sleep(0, len(acked)), lambda n: n >= 100, what="acks")
    stop.set()
    g0.stop(signal.SIGKILL)
    await task
    # t1 reconnects to the other gateway and finds every order it was told about
    again = await login(g1, keys["t1"])
    for coid in acked:
        order = await again.call("order_status", {"clientOrderId": coid})
        assert order["clientOrderId"] == coid
    # the other gateway's client noticed nothing: same connection, still trading
    placed = await bystander.place_order("ETH_USD", "buy", "1.000", price="2000.00")
    assert placed["status"] == "new"
    d.gateways = [g1]
    await converged(d)
    await again.close()
    await bystander.close()


async def test_the_engine_killed_mid_burst_restarts_with_every_acknowledged_order(
    deployment: tuple[Deployment, dict[str, dict[str, str]]],
) -> None:
    d, keys = deployment
    g0, g1 = d.gateways
    acked: list[str] = []
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(burst(g, name, keys[name], 300, acked, stop))
        for g, name in ((g0, "t1"), (g1, "t2"))
    ]
    await eventually(lambda: asyncio.sleep(0, len(acked)), lambda n: n >= 150, what="acks")
    d.engine.stop(signal.SIGKILL)
    stop.set()
    await asyncio.gather(*tasks)
    d.restart_engine()
    final = await converged(d)
    assert final["valid"], final
    for name, gateway in (("t1", g0), ("t2", g1)):
        client = await login(gateway, keys[name])
        mine = [c for c in acked if c.startswith(f"{name}-")]
        for coid in mine:
            assert (await client.call("order_status", {"clientOrderId": coid}))["clientOrderId"]
        # and trading goes on through the same gateways
        await client.place_order("ETH_USD", "buy", "1.000", price="2000.00")
        await client.close()
    final = await converged(d)
    # the engine's state is the journal's: a replay of it gives the same hash
    d.stop()
    assert replay_hash(d.db) == (final["seq"], final["stateHash"])


def replay_hash(db: Path | str) -> tuple[int, str]:
    """Recover an engine from the journal alone (no snapshot) in a fresh process."""
    code = (
        "import sys, json\n"
        "from tradews.adapters.registry import open_journal, open_store\n"
        "from tradews.adapters.sql_store import Operations\n"
        "from tradews.app.engine_host import replay\n"
        "from tradews.engine.engine import Engine\n"
        "store = open_store(sys.argv[1])\n"
        "fee = Operations(store).system_accounts(0)[1]\n"
        "engine = Engine(store.list_instruments(), fee_account_id=fee)\n"
        "replay(engine, open_journal(sys.argv[1]))\n"
        "print(json.dumps([engine.seq, engine.state_hash()]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(db)], capture_output=True, text=True, check=True
    )
    seq, digest = json.loads(out.stdout)
    return seq, digest


async def test_a_duplicated_command_is_applied_once(
    deployment: tuple[Deployment, dict[str, dict[str, str]]], bus: str
) -> None:
    d, keys = deployment
    client = await login(d.gateways[0], keys["t1"])
    await client.subscribe("orders")
    names = {a["name"]: a["id"] for a in run_cli("account", "list", "--json", db=d.db)}
    command = PlaceOrder(0, names["t1"], "ETH_USD", 1, 1, 250_000, 1000, 1, False, "dup-1", 0, 0)
    link = Bus(parse_bus_url(bus), name="test-duplicates")
    await link.connect(wait=False)
    try:
        for _ in range(3):  # a gateway retrying after a fault sends the same id again
            await link.send_command("main", "retry-1", encoder.encode(command))
    finally:
        await link.close()
    await take(client, 1, {"orders"})
    await converged(d)
    orders = await client.call("orders_open", {"symbol": "ETH_USD"})
    assert [o["clientOrderId"] for o in orders].count("dup-1") == 1
    seq_before = state(d.engine)["seq"]
    await converged(d)
    assert state(d.engine)["seq"] == seq_before
    await client.close()


async def test_a_standby_engine_takes_over(
    deployment: tuple[Deployment, dict[str, dict[str, str]]],
) -> None:
    d, keys = deployment
    g0, g1 = d.gateways
    first = d.engine
    standby = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "tradews", "engine", "--db", str(d.db), "--bus", d.bus,
         "--admin-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert standby.stdout is not None
        line = await asyncio.to_thread(standby.stdout.readline)
        assert "standby" in line, line
        client = await login(g0, keys["t1"])
        await client.place_order("ETH_USD", "sell", "1.000", price="3100.00", client_order_id="a")
        first.stop(signal.SIGKILL)
        taken = await asyncio.to_thread(_read_until, standby, "Press Ctrl+C")
        assert "the engine lease is ours" in taken
        other = await login(g1, keys["t2"])
        fill = await other.place_order("ETH_USD", "buy", "1.000", price="3100.00")
        assert fill["status"] == "filled"
        # the other gateway applies the same log entry a moment later
        await eventually(
            lambda: client.call("order_status", {"clientOrderId": "a"}),
            lambda order: order["status"] == "filled",
            what="the resting order filled, as seen on the other gateway",
        )
        await client.close()
        await other.close()
    finally:
        standby.send_signal(signal.SIGTERM)
        standby.wait(15)


def _read_until(process: subprocess.Popen[str], marker: str) -> str:
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            break
    return "".join(seen)


async def test_a_revoked_key_is_refused_by_every_gateway_within_a_second(
    deployment: tuple[Deployment, dict[str, dict[str, str]]],
) -> None:
    d, keys = deployment
    clients = [await login(g, keys["t1"]) for g in d.gateways]
    run_cli("key", "revoke", keys["t1"]["apiKey"], db=d.db)
    for client in clients:
        closed = await client.wait_closed(timeout=1.5)
        assert "revoked" in str(closed.reason)


async def test_a_frozen_account_is_refused_on_every_gateway(
    deployment: tuple[Deployment, dict[str, dict[str, str]]],
) -> None:
    """A freeze is an engine command: the engine applies it from its inbox, and each gateway's
    replica applies it from the log at the same point, so every gateway refuses the account."""
    d, keys = deployment
    clients = [await login(g, keys["t1"]) for g in d.gateways]
    frozen = run_cli("account", "freeze", "t1", "--json", db=d.db)
    assert frozen["ok"] and frozen["via"] == "server"
    await converged(d)
    for client in clients:
        with pytest.raises(RpcError) as info:
            await client.place_order("ETH_USD", "buy", "1", price="3000")
        assert info.value.code == 4003
        assert {b["asset"] for b in await client.call("balances")} == {"ETH", "USD"}
    other = await login(d.gateways[1], keys["t2"])
    assert (await other.place_order("ETH_USD", "buy", "1", price="3000"))["status"] == "new"
    assert run_cli("account", "unfreeze", "t1", "--json", db=d.db)["ok"]
    await converged(d)
    for client in clients:
        assert (await client.place_order("ETH_USD", "sell", "1", price="3100"))["status"] == "new"
    for client in (*clients, other):
        await client.close()


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """A NATS server (JetStream on) of this test's own, which it may kill and start again."""
    binary = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )
    if binary is None:
        pytest.skip("the nats-server program is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = tmp_path / "nats"
    cmd = [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)]
    running: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        running.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(100):
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                return
            time.sleep(0.05)
        raise AssertionError("the private nats-server did not start")

    def kill() -> None:
        for p in running:
            p.kill()
            p.wait()
        running.clear()

    start()
    try:
        yield f"nats://127.0.0.1:{port}/outage", kill, start
    finally:
        kill()


async def test_a_nats_outage_gives_clear_errors_and_heals_by_itself(
    tmp_path: Path, private_nats: tuple[str, Callable[[], None], Callable[[], None]]
) -> None:
    bus, kill, start = private_nats
    db = tmp_path / "tradews.db"
    keys = funded_accounts(db, TRADERS)
    with Deployment.start(db, bus, gateways=1, demo=False) as d:
        client = await login(d.gateways[0], keys["t1"])
        await client.place_order("ETH_USD", "buy", "1.000", price="2000.00", client_order_id="a")
        kill()

        async def refused() -> RpcError | None:
            try:
                await client.place_order("ETH_USD", "buy", "1.000", price="2000.00")
            except RpcError as exc:
                return exc
            return None

        error = await eventually(refused, lambda e: e is not None, what="a refusal")
        assert error is not None and error.code == 4002
        assert "bus is down" in str(error.message) or "could not be reached" in str(error.message)
        not_ready = (503, b"not ready: the bus (NATS) is unreachable\n")
        await eventually(lambda: readyz(d.gateways[0].url), not_ready.__eq__, what="503")
        # reads go on from the replica meanwhile
        assert (await client.call("order_status", {"clientOrderId": "a"}))["status"] == "new"
        start()

        async def placed() -> dict[str, Any] | None:
            try:
                return dict(
                    await client.place_order(
                        "ETH_USD", "buy", "1.000", price="2000.00", client_order_id="b"
                    )
                )
            except RpcError as exc:
                if exc.code == 4002:
                    return None
                raise

        # a probe sent while NATS is still coming back may wait out the gateway's confirm
        # timeout (5 s, answered 4002) before a later one goes through
        order = await eventually(placed, lambda o: o is not None, what="trading back", timeout=30)
        assert order is not None and order["clientOrderId"] == "b"
        await eventually(lambda: readyz(d.gateways[0].url), (200, b"ready\n").__eq__, what="200")
        await converged(d)
        await client.close()


async def test_cancel_on_disconnect_survives_an_engine_restart_and_fires_for_a_killed_gateway(
    deployment: tuple[Deployment, dict[str, dict[str, str]]],
) -> None:
    d, keys = deployment
    g0, g1 = d.gateways
    doomed = await login(g0, keys["t1"])
    await doomed.cancel_on_disconnect(True)
    await doomed.place_order("ETH_USD", "buy", "1.000", price="2000.00", client_order_id="d1")
    alive = await login(g1, keys["t2"])
    await alive.cancel_on_disconnect(True)
    await alive.place_order("ETH_USD", "buy", "1.000", price="2000.00", client_order_id="a1")
    # the engine restarts: both gateways live on, so both sessions do too
    d.engine.stop()
    d.restart_engine()
    # the engine gives silent gateways GATEWAY_SILENCE_S (5 s) after its start: wait past it
    await asyncio.sleep(7)
    for client, coid in ((doomed, "d1"), (alive, "a1")):
        assert (await client.call("order_status", {"clientOrderId": coid}))["status"] == "new"
    # a gateway killed cannot end its sessions: the engine does, once it has gone silent
    g0.stop(signal.SIGKILL)
    watcher = await login(g1, keys["t1"])
    order = await eventually(
        lambda: watcher.call("order_status", {"clientOrderId": "d1"}),
        lambda o: o["status"] == "cancelled",
        what="the killed gateway's cancel-on-disconnect order cancelled",
        timeout=15,
    )
    assert order["reason"] == "CANCEL_ON_DISCONNECT"
    assert (await alive.call("order_status", {"clientOrderId": "a1"}))["status"] == "new"
    for c in (alive, watcher):
        await c.close()


async def test_a_command_repeated_after_jetstreams_window_is_dropped_by_the_engine(
    tmp_path: Path, bus: str
) -> None:
    """JetStream forgets an id after its duplicate window; the engine remembers what it applied.
    The window is made short here (the streams are created before the engine makes them)."""
    from nats.js.api import RetentionPolicy, StreamConfig

    url = parse_bus_url(bus)
    link = Bus(url, name="test-window")
    await link.connect(wait=False)  # creates the streams with the default window...
    await link.delete_streams()  # ...which this test replaces with a half-second one
    js = link._js
    await js.add_stream(
        StreamConfig(
            name=url.commands_stream,
            subjects=[f"{url.namespace}.cmd.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            duplicate_window=0.5,
        )
    )
    db = tmp_path / "tradews.db"
    keys = funded_accounts(db, TRADERS)
    names = {a["name"]: a["id"] for a in run_cli("account", "list", "--json", db=db)}
    command = PlaceOrder(0, names["t1"], "ETH_USD", 1, 1, 250_000, 1000, 1, False, "w-1", 0, 0)
    try:
        with Deployment.start(db, bus, gateways=1, demo=False) as d:
            client = await login(d.gateways[0], keys["t1"])
            await client.subscribe("orders")
            await link.send_command("main", "late-1", encoder.encode(command))
            await take(client, 1, {"orders"})
            seq = state(d.engine)["seq"]
            await asyncio.sleep(1.0)  # past JetStream's window: it stores the repeat this time
            await link.send_command("main", "late-1", encoder.encode(command))
            await eventually(
                lambda: asyncio.to_thread(d.engine.metrics),
                lambda m: m.get("tradews_bus_duplicates_total") == 1,
                what="the engine dropping the repeat",
            )
            assert state(d.engine)["seq"] == seq
            await client.close()
    finally:
        await link.close()


async def test_a_signed_login_replayed_on_another_gateway_is_refused(
    deployment: tuple[Deployment, dict[str, dict[str, str]]],
) -> None:
    d, keys = deployment
    key, secret = keys["t1"]["apiKey"], keys["t1"]["apiSecret"]
    first = await Client.connect(d.gateways[0].url)
    assert await first.login(key, secret, signed=True, nonce="replayed-nonce-1")
    replay = await Client.connect(d.gateways[1].url)
    with pytest.raises(RpcError) as refused:  # the same nonce, as a captured login would carry
        await replay.login(key, secret, signed=True, nonce="replayed-nonce-1")
    assert refused.value.code == 1011
    for c in (first, replay):
        await c.close()


async def test_a_gateway_started_before_the_engine_lists_what_the_engine_lists(
    tmp_path: Path, bus: str
) -> None:
    """A gateway up before the engine's first start built its replica from a store with no
    instruments; the engine lists the store's instruments when it is built. The engine journals
    their listing at start, so the gateway's replica lists them too, at the same point."""
    db = tmp_path / "tradews.db"
    run_cli("account", "list", db=db)  # the store exists, empty
    gateway = ServerProcess.start(db, demo=False, command="gateway", args=("--bus", bus))
    keys = funded_accounts(db, TRADERS[:2])  # listed and funded while no engine runs
    d = Deployment(db, bus, ServerProcess.start(db, demo=False, command="engine",
                                                args=("--bus", bus)), [gateway])  # fmt: skip
    try:

        async def symbols() -> list[str]:
            async with await Client.connect(gateway.url) as probe:
                return [i["symbol"] for i in await probe.call("instruments")]

        await eventually(symbols, lambda seen: seen == ["ETH_USD"], what="ETH_USD listed")
        seller, buyer = await login(gateway, keys["t1"]), await login(gateway, keys["t2"])
        await seller.place_order("ETH_USD", "sell", "1.000", price="3000.00")
        filled = await buyer.place_order("ETH_USD", "buy", "1.000", price="3000.00")
        assert filled["status"] == "filled"
        await converged(d)  # the replica is the engine's state
        await seller.close()
        await buyer.close()
    finally:
        d.stop()


async def test_an_order_on_an_instrument_the_engine_has_not_listed_yet_is_applied_as_the_replica_does(
    tmp_path: Path, bus: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instrument in the store that the engine's watcher has not journaled yet (here: written
    without telling other processes, so the watcher never notices it): a gateway that starts
    now builds its replica with it, and its client orders on it. The engine journals the
    listing before the order, so both apply the order alike."""
    monkeypatch.setenv("TRADEWS_KEY_FILE", str(tmp_path / "tradews.key"))
    with fresh_pg_database() as db:
        keys = funded_accounts(db, TRADERS[:1])
        engine = ServerProcess.start(db, demo=False, command="engine", args=("--bus", bus))
        d = Deployment(db, bus, engine)
        try:
            import psycopg

            with psycopg.connect(db, autocommit=True) as raw:  # no revision bump: unnoticed
                raw.execute(
                    "INSERT INTO instruments(symbol, base, quote, tick, lot, min_size,"
                    " quote_size, spread_bps, created_at) VALUES"
                    " ('SOL_USD', 'SOL', 'USD', '0.01', '0.01', '0.01', '1', '5', 0)"
                )
            gateway = d.add_gateway()
            client = await login(gateway, keys["t1"])
            placed = await client.place_order("SOL_USD", "buy", "1.00", price="100.00")
            assert placed["status"] == "new"
            await converged(d)  # the engine took the order too: the same state
            await client.close()
        finally:
            d.stop()
