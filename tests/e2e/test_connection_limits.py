"""How many connections, for how long without a login, and where operators look from."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import eventually, http_get
from tests.raw_websocket import RawWebSocket
from tradews.client import Client, RpcError
from tradews.testing import ServerProcess


async def test_state_and_metrics_are_not_on_the_client_port(server: ServerProcess) -> None:
    public = server.url.replace("ws://", "http://")
    for path in ("/state", "/state?check=1", "/metrics"):
        status, body = await asyncio.to_thread(http_get, public + path)
        assert status != 200 and b"stateHash" not in body and b"tradews_" not in body, path
    status, body = await asyncio.to_thread(http_get, public + "/healthz")
    assert (status, body) == (200, b"ok\n")  # for load balancers; says nothing else


async def test_the_admin_listener_serves_them(server: ServerProcess) -> None:
    assert server.admin_url.startswith("http://127.0.0.1:")
    cheap = json.loads(await asyncio.to_thread(server.admin, "/state"))
    assert set(cheap) == {"role", "seq", "durable", "openOrders", "netDeposits"}
    assert cheap["role"] in ("all", "gateway")  # which process of the deployment answers
    full = json.loads(await asyncio.to_thread(server.admin, "/state?check=1"))
    assert full["valid"] is True and len(full["stateHash"]) == 64
    assert full["netDeposits"] == full["balanceSums"]
    assert "tradews_connections" in await asyncio.to_thread(server.metrics)


async def test_the_admin_token_is_required_when_set(tmp_path: Path) -> None:
    args = ("--admin-token", "s3cret-token")
    with ServerProcess.start(tmp_path / "a.db", demo=False, args=args) as server:
        status, _ = await asyncio.to_thread(http_get, server.admin_url + "/metrics")
        assert status == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await asyncio.to_thread(http_get, server.admin_url + "/metrics", wrong))[0] == 401
        right = {"Authorization": "Bearer s3cret-token"}
        status, body = await asyncio.to_thread(http_get, server.admin_url + "/metrics", right)
        assert status == 200 and b"tradews_connections" in body


def test_an_exposed_admin_listener_needs_a_token(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tradews", "serve", "--db", str(tmp_path / "x.db"), "--port", "0",
         "--admin-host", "0.0.0.0"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 1
    assert "--admin-token" in done.stderr and "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("strict") / "strict.db"
    args = ("--login-timeout", "1", "--max-connections-per-address", "4", "--no-demo-traders")
    with ServerProcess.start(db, demo=True, args=args) as proc:
        yield proc


async def test_no_login_within_the_deadline_closes_the_connection(strict: ServerProcess) -> None:
    async with (
        await Client.connect(strict.url) as anonymous,
        await Client.connect(strict.url) as member,
    ):
        await member.login(strict.api_key, strict.api_secret)
        closed = await anonymous.wait_closed(timeout=5)
        assert closed.code == 1008 and closed.reason == "no login within 1 s"
        assert isinstance(await member.time(), int)  # a logged-in session is not touched


async def test_connections_over_the_per_address_cap_are_refused(strict: ServerProcess) -> None:
    clients = [await Client.connect(strict.url) for _ in range(4)]
    try:
        for c in clients:
            await c.login(strict.api_key, strict.api_secret)
        extra = await RawWebSocket.connect(strict.url)
        refusal = await extra.recv_close()
        extra.close()
        assert refusal.close_code == 1013
        assert refusal.payload[2:] == b"at most 4 connections per address"
        for c in clients:
            assert isinstance(await c.time(), int)
    finally:
        for c in clients:
            await c.close()


async def test_connections_over_the_total_cap_are_refused(tmp_path: Path) -> None:
    with ServerProcess.start(tmp_path / "t.db", demo=False, args=("--max-connections", "2")) as s:
        first, second = await Client.connect(s.url), await Client.connect(s.url)
        third = await RawWebSocket.connect(s.url)
        refusal = await third.recv_close()
        third.close()
        assert refusal.close_code == 1013
        assert refusal.payload[2:] == b"server full: at most 2 connections"
        await first.close()
        await second.close()


async def test_sessions_over_the_per_key_cap_are_refused(tmp_path: Path, encoding: str) -> None:
    args = ("--max-sessions-per-key", "2", "--no-demo-traders")
    with ServerProcess.start(tmp_path / "k.db", demo=True, args=args) as s:
        first = await Client.connect(s.url, encoding=encoding)
        second = await Client.connect(s.url, encoding=encoding)
        third = await Client.connect(s.url, encoding=encoding)
        await first.login(s.api_key, s.api_secret)
        await second.login(s.api_key, s.api_secret)
        with pytest.raises(RpcError) as info:
            await third.login(s.api_key, s.api_secret)
        assert info.value.code == 1013 and "2 sessions open" in info.value.message
        await first.close()
        # The closed session no longer counts: the waiting connection gets in.
        await eventually(
            lambda: try_login(third, s), lambda ok: ok, what="a login once a session closed"
        )
        await second.close()
        await third.close()


async def try_login(client: Client, server: ServerProcess) -> bool:
    try:
        return await client.login(server.api_key, server.api_secret)
    except RpcError as exc:
        assert exc.code == 1013
        return False
