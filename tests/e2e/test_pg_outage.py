"""PostgreSQL going away and coming back, on a PostgreSQL server of the test's own that it stops
and starts: clients get clear errors meanwhile, gateways and standbys heal by themselves, and an
engine that lost its lease halts rather than write beside another one."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.helpers import eventually, funded_accounts, readyz
from tradews.client import Client, ConnectionClosed, RpcError
from tradews.testing import (
    NATS_URL,
    Deployment,
    ServerProcess,
    drop_bus,
    fresh_bus_url,
    nats_reachable,
    run_cli,
)

pytestmark = pytest.mark.timeout(120)

UNREACHABLE = "the database is unreachable"


def _program(name: str) -> str | None:
    found = shutil.which(name)
    if found is not None:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@dataclass
class PrivatePostgres:
    """A PostgreSQL server in a directory of its own (trust auth, loopback, a free port)."""

    pg_ctl: str
    data: Path
    port: int
    as_user: list[str]  # ``runuser -u postgres --`` when the tests run as root

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/tradews"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.as_user, self.pg_ctl, "-D", str(self.data), *args],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.data} -c fsync=off"
        self._ctl("-o", options, "-l", str(self.data / "server.log"), "-w", "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")


@pytest.fixture
def private_pg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivatePostgres]:
    """A fresh PostgreSQL server holding the database ``tradews`` at this release's schema."""
    initdb, pg_ctl = _program("initdb"), _program("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("the PostgreSQL server programs (initdb, pg_ctl) are not installed")
    pytest.importorskip("psycopg")
    as_user: list[str] = []
    home = tmp_path
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as its own user
        runuser = shutil.which("runuser")
        if runuser is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
            pytest.skip("running as root, without a postgres user to run PostgreSQL as")
        as_user = [runuser, "-u", "postgres", "--"]
        home = Path(tempfile.mkdtemp(prefix="tradews-pg-"))  # tmp_path is root's alone
        shutil.chown(home, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    data = home / "data"
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    pg = PrivatePostgres(pg_ctl, data, port, as_user)
    pg.start()
    monkeypatch.setenv("TRADEWS_KEY_FILE", str(tmp_path / "tradews.key"))
    try:
        import psycopg

        from tradews.adapters.registry import upgrade_database

        maintenance = pg.url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(maintenance, autocommit=True) as admin:
            admin.execute("CREATE DATABASE tradews")
        upgrade_database(pg.url)
        yield pg
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True, timeout=60,
        )  # fmt: skip
        if home != tmp_path:
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def bus() -> Iterator[str]:
    require(nats_reachable(), f"NATS is not reachable at {NATS_URL}")
    url = fresh_bus_url()
    yield url
    drop_bus(url)


async def login(server: ServerProcess, key: dict[str, str]) -> Client:
    client = await Client.connect(server.url)
    await client.login(key["apiKey"], key["apiSecret"])
    return client


async def refused_login(server: ServerProcess, key: dict[str, str]) -> RpcError:
    """A login on a new connection, which must be refused with a clear error."""
    async with await Client.connect(server.url) as client:
        with pytest.raises(RpcError) as refused:
            await client.login(key["apiKey"], key["apiSecret"])
    return refused.value


async def logs_in(server: ServerProcess, key: dict[str, str]) -> bool:
    """True once a login succeeds; False while it is refused because the database is down."""
    try:
        client = await login(server, key)
    except RpcError as exc:
        assert exc.code == 4002 and UNREACHABLE in exc.message, exc
        return False
    await client.close()
    return True


def exit_code(server: ServerProcess, timeout: float) -> int | None:
    try:
        return server.process.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


async def test_all_in_one_refuses_clearly_halts_and_recovers_everything_acknowledged(
    private_pg: PrivatePostgres,
) -> None:
    pg = private_pg
    keys = funded_accounts(pg.url, ["t1"])
    with ServerProcess.start(pg.url, demo=False) as server:
        client = await login(server, keys["t1"])
        placed = await client.place_order(
            "ETH_USD", "buy", "1.000", price="2000.00", client_order_id="kept"
        )
        assert placed["status"] == "new"
        stranger = await Client.connect(server.url)
        pg.stop()
        # The engine halts within a second or so (its lease and journal are gone); until it
        # does, a login and an order are refused with what is wrong, never an internal error.
        try:
            with pytest.raises(RpcError) as login_refused:
                await stranger.login(keys["t1"]["apiKey"], keys["t1"]["apiSecret"])
            assert login_refused.value.code == 4002
            assert UNREACHABLE in login_refused.value.message
            with pytest.raises(RpcError) as order_refused:
                await client.place_order("ETH_USD", "buy", "1.000", price="2000.00")
            assert order_refused.value.code == 4002
        except ConnectionClosed:
            pass  # it halted first: the process's exit below is the clear answer
        assert await asyncio.to_thread(exit_code, server, 10) == 3
        assert "trading halted" in "\n".join(server.output)
        # An admin command says in one line that the database is down.
        done = run_cli("account", "list", db=pg.url, check=False)
        assert done.returncode == 1
        assert "unreachable" in done.stderr and "Traceback" not in done.stderr
    # Started while the database is down, the server waits for it and then comes up.
    starting = asyncio.create_task(asyncio.to_thread(ServerProcess.start, pg.url, demo=False))
    await asyncio.sleep(1.5)
    assert not starting.done()
    pg.start()
    with await starting as again:
        assert any("waiting for the database at" in line for line in again.output)
        client = await login(again, keys["t1"])
        order = await client.call("order_status", {"clientOrderId": "kept"})
        assert order["status"] == "new"  # acknowledged before the outage: still there
        await client.close()


async def test_a_gateway_refuses_logins_while_the_database_is_down_and_heals_by_itself(
    private_pg: PrivatePostgres, bus: str
) -> None:
    pg = private_pg
    keys = funded_accounts(pg.url, ["t1", "t2"])
    with Deployment.start(pg.url, bus, gateways=1, demo=False) as d, standby_engine(d) as standby:
        gateway = d.gateways[0]
        client = await login(gateway, keys["t1"])
        await client.place_order("ETH_USD", "buy", "1.000", price="2000.00", client_order_id="a")
        pg.stop()
        error = await refused_login(gateway, keys["t2"])
        assert error.code == 4002 and UNREACHABLE in error.message
        # a load balancer's readiness probe takes the gateway out meanwhile
        assert await readyz(gateway.url) == (503, f"not ready: {UNREACHABLE}\n".encode())
        # reads from the replica go on
        assert [o["clientOrderId"] for o in await client.call("orders_open", {})] == ["a"]
        assert await client.call("balances", {})
        # the engine lost its lease with the database: it halts rather than go on alone
        assert await asyncio.to_thread(exit_code, d.engine, 10) == 3
        pg.start()
        await eventually(
            lambda: logs_in(gateway, keys["t2"]), bool, what="a login once the database is back"
        )
        assert gateway.process.poll() is None  # the same gateway process
        await eventually(lambda: readyz(gateway.url), (200, b"ready\n").__eq__, what="200")

        async def said() -> str:
            return "\n".join(gateway.output)

        # one line when the database went, one when it came back; no stack traces
        output = await eventually(said, lambda o: "reachable again" in o, what="the log line")
        assert output.count("is unreachable") == 1 and output.count("reachable again") == 1
        assert "Traceback" not in output
        # The standby waited out the outage and took the lease once the database was back.
        taken = await asyncio.to_thread(_read_until, standby, "Press Ctrl+C")
        assert taken.count("is unreachable") <= 1, taken  # said once, if it tried meanwhile
        assert "the engine lease is ours" in taken

        async def placed() -> dict[str, Any] | None:
            try:
                return dict(await client.place_order("ETH_USD", "buy", "1.000", price="2000.00"))
            except RpcError as exc:
                assert exc.code == 4002, exc
                return None

        await eventually(placed, lambda o: o is not None, what="trading back", timeout=20)
        await client.close()


@contextlib.contextmanager
def standby_engine(d: Deployment) -> Iterator[subprocess.Popen[str]]:
    """A second engine on the deployment, waiting as a standby (its first line says so)."""
    standby = subprocess.Popen(
        [sys.executable, "-m", "tradews", "engine", "--db", str(d.db), "--bus", d.bus,
         "--port", "0", "--admin-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert standby.stdout is not None
        line = standby.stdout.readline()
        assert "standby" in line, line
        yield standby
    finally:
        standby.terminate()
        standby.wait(15)


def _read_until(process: subprocess.Popen[str], marker: str) -> str:
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            break
    return "".join(seen)


async def test_an_engine_whose_lease_is_taken_away_halts(private_pg: PrivatePostgres) -> None:
    import psycopg

    pg = private_pg
    funded_accounts(pg.url, ["t1"])
    with ServerProcess.start(pg.url, demo=False) as server:
        with psycopg.connect(pg.url, autocommit=True) as admin:
            terminated = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
            ).fetchall()
        assert terminated == [(True,)]
        started = time.monotonic()
        assert await asyncio.to_thread(exit_code, server, 10) == 3
        print(f"halted {time.monotonic() - started:.2f} s after its lease was taken away")
        assert "no longer holds the advisory lock" in "\n".join(server.output)
