"""Keeping a desk safe when its client vanishes, over real sockets in both encodings: server
pings, cancel-on-disconnect (COD) and the dead-man's switch (cancel_all_after), through drops,
clean closes, logouts, server-side closes, kill -9 and restarts."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_crash import prepare
from tests.helpers import eventually, server_time_passes
from tests.raw_websocket import CLOSE, PING, PONG, TEXT, RawWebSocket
from tradews.client import Client, RpcError
from tradews.testing import ServerProcess, run_cli

_ids = itertools.count(1)


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory, encoding: str) -> Iterator[ServerProcess]:
    """A demo server without simulated traders, so that only the tests' orders are in the books."""
    db = tmp_path_factory.mktemp(f"liveness-{encoding}") / "liveness.db"
    with ServerProcess.start(db, demo=True, args=("--no-demo-traders",)) as proc:
        yield proc


async def connect(
    server: ServerProcess, encoding: str, key: dict[str, str] | None = None
) -> Client:
    client = await Client.connect(server.url, encoding=encoding)
    if key is None:
        await client.login(server.api_key, server.api_secret)
    else:
        await client.login(key["apiKey"], key["apiSecret"])
    return client


@pytest.fixture
async def watcher(desk: ServerProcess, encoding: str) -> AsyncIterator[Client]:
    """Another session of the same account: it sees what becomes of the other's orders."""
    c = await connect(desk, encoding)
    await eventually(
        lambda: c.call("balances"),
        lambda rows: any(b["asset"] == "USD" for b in rows),
        what="the demo account's funding",
    )
    yield c
    await c.cancel_all_after(0)  # the account's switch: never left armed for the next test
    await c.close()


async def rest(client: Client, symbol: str = "ETH_USD") -> str:
    """Rest a buy far below any price (it never trades); return its clientOrderId."""
    coid = f"live-{client.encoding}-{next(_ids)}"
    order = await client.place_order(symbol, "buy", "0.010", price="100.00", client_order_id=coid)
    assert order["status"] == "new"
    return coid


async def status(client: Client, coid: str) -> dict[str, Any]:
    return dict(await client.call("order_status", {"clientOrderId": coid}))


async def cancelled(client: Client, coid: str) -> dict[str, Any]:
    """Wait until the order is cancelled; return its state."""
    return await eventually(
        lambda: status(client, coid),
        lambda o: o["status"] == "cancelled",
        what=f"{coid} cancelled",
    )


async def still_open(client: Client, *coids: str) -> None:
    for coid in coids:
        assert (await status(client, coid))["status"] == "new", coid


async def settled(client: Client) -> None:
    """Every command submitted before now, by any session, is durable and visible: a command
    of this session goes through the engine after them, and its reply waits for them."""
    await client.call("order_cancel_all", {"symbol": "SOL_USD"})


async def dropped(server: ServerProcess, client: Client, witness: Client) -> None:
    """Drop ``client``'s connection without a close frame, and wait until the server has seen
    it go (its connection count falls) and whatever that caused is durable."""

    async def connections() -> float:
        return (await asyncio.to_thread(server.metrics))["tradews_connections"]

    before = await connections()
    client.abort()
    await eventually(connections, lambda n: n < before, what="the server seeing the drop")
    await settled(witness)


# Cancel-on-disconnect ------------------------------------------------------------------------


async def test_a_dropped_connection_cancels_its_sessions_orders_only(
    desk: ServerProcess, encoding: str, watcher: Client
) -> None:
    a = await connect(desk, encoding)
    before = await rest(a)  # placed before COD was on: not the session's to cancel
    assert await a.cancel_on_disconnect(True) is True
    assert await a.cancel_on_disconnect(True) is True  # idempotent
    mine = [await rest(a), await rest(a, "BTC_USD")]
    theirs = await rest(watcher)  # the same account's other session

    a.abort()  # no close frame: the TCP connection is simply gone

    for coid in mine:
        order = await cancelled(watcher, coid)
        assert order["reason"] == "CANCEL_ON_DISCONNECT"
    await still_open(watcher, before, theirs)


async def test_a_close_frame_without_logout_cancels(
    desk: ServerProcess, encoding: str, watcher: Client
) -> None:
    a = await connect(desk, encoding)
    await a.cancel_on_disconnect(True)
    coid = await rest(a)
    await a.close()
    assert (await cancelled(watcher, coid))["reason"] == "CANCEL_ON_DISCONNECT"


async def test_logout_leaves_the_orders_and_closes_with_1000(
    desk: ServerProcess, encoding: str, watcher: Client
) -> None:
    a = await connect(desk, encoding)
    await a.cancel_on_disconnect(True)
    coid = await rest(a)
    assert await a.logout() is True
    closed = await a.wait_closed()
    assert (closed.code, closed.reason) == (1000, "logged out")
    await settled(watcher)
    await still_open(watcher, coid)
    # A new connection of the same key does not inherit the setting.
    again = await connect(desk, encoding)
    fresh = await rest(again)
    await dropped(desk, again, watcher)
    await still_open(watcher, coid, fresh)


async def test_cod_off_leaves_the_orders(
    desk: ServerProcess, encoding: str, watcher: Client
) -> None:
    never = await connect(desk, encoding)
    untouched = await rest(never)
    await dropped(desk, never, watcher)
    switched_off = await connect(desk, encoding)
    await switched_off.cancel_on_disconnect(True)
    was_tagged = await rest(switched_off)
    assert await switched_off.cancel_on_disconnect(False) is False
    assert await switched_off.cancel_on_disconnect(False) is False
    after = await rest(switched_off)
    await dropped(desk, switched_off, watcher)
    await still_open(watcher, untouched, was_tagged, after)


async def test_a_server_side_close_cancels(
    desk: ServerProcess, encoding: str, watcher: Client
) -> None:
    key = desk.cli("key", "create", "demo")
    a = await connect(desk, encoding, key)
    await a.cancel_on_disconnect(True)
    coid = await rest(a)
    run_cli("key", "revoke", key["apiKey"], db=desk.db)
    closed = await a.wait_closed()
    assert closed.code == 1008
    assert (await cancelled(watcher, coid))["reason"] == "CANCEL_ON_DISCONNECT"


async def test_a_read_only_key_cannot_arm_either(desk: ServerProcess, encoding: str) -> None:
    key = desk.cli("key", "create", "demo", "--scopes", "read")
    async with await connect(desk, encoding, key) as a:
        for method, params in (("cancel_on_disconnect", {"enabled": True}),
                               ("cancel_all_after", {"timeoutMs": 5000})):  # fmt: skip
            with pytest.raises(RpcError) as info:
                await a.call(method, params)
            assert info.value.code == 1008 and "'trade' permission" in info.value.message
        assert await a.logout() is True  # logging out needs no permission


async def test_logout_needs_no_login_and_ends_the_frame(server: ServerProcess) -> None:
    async with await Client.connect(server.url, raw=True) as raw:
        batch = [{"jsonrpc": "2.0", "method": "rpc.logout", "id": 1},
                 {"jsonrpc": "2.0", "method": "time", "id": 2}]  # fmt: skip
        raw.send_text(json.dumps(batch))
        # The requests after the logout are not processed; the reply comes before the close.
        assert await raw.recv_json() == [{"jsonrpc": "2.0", "result": True, "id": 1}]
        closed = await raw.wait_closed()
        assert (closed.code, closed.reason) == (1000, "logged out")


# Dead-man's switch -----------------------------------------------------------------------------


async def test_cancel_all_after_fires_without_a_refresh(
    desk: ServerProcess, encoding: str, watcher: Client
) -> None:
    a = await connect(desk, encoding)
    coids = [await rest(a), await rest(watcher)]  # every session's orders: the whole account
    before = await a.time()
    deadline = await a.cancel_all_after(1_000)
    assert deadline is not None and before + 1_000 <= deadline <= await a.time() + 1_000
    for coid in coids:
        order = await cancelled(watcher, coid)
        assert order["reason"] == "CANCEL_ALL_AFTER" and order["updatedAt"] >= deadline
    # Fired once: the switch is disarmed, and new orders stay.
    later = await rest(a)
    await server_time_passes(a, deadline + 1_500)
    await still_open(a, later)
    await a.close()


async def test_cancel_all_after_refreshed_in_time_does_not_fire(
    desk: ServerProcess, encoding: str, watcher: Client
) -> None:
    coid = await rest(watcher)
    first = await watcher.cancel_all_after(1_500)
    assert first is not None
    deadline = first
    while deadline < first + 3_000:  # a heartbeat twice a timeout, for two timeouts
        await server_time_passes(watcher, deadline - 1_000)
        deadline = await watcher.cancel_all_after(1_500)
        assert deadline is not None
    assert await watcher.cancel_all_after(0) is None  # disarmed
    await server_time_passes(watcher, deadline + 500)
    await still_open(watcher, coid)


async def test_cancel_all_after_zero_disarms(
    desk: ServerProcess, encoding: str, watcher: Client
) -> None:
    coid = await rest(watcher)
    deadline = await watcher.cancel_all_after(1_000)
    assert deadline is not None
    assert await watcher.cancel_all_after(0) is None
    assert await watcher.cancel_all_after(0) is None  # disarming a disarmed switch is fine
    await server_time_passes(watcher, deadline + 500)
    await still_open(watcher, coid)


@pytest.mark.parametrize("timeout_ms", [1, 999, 600_001])
async def test_cancel_all_after_bounds(watcher: Client, timeout_ms: int) -> None:
    with pytest.raises(RpcError) as info:
        await watcher.cancel_all_after(timeout_ms)
    assert info.value.code == -32602
    assert "600000" in str(info.value.data)


async def test_cancel_all_after_at_the_bounds(watcher: Client) -> None:
    for timeout_ms in (1_000, 600_000):
        now = await watcher.time()
        deadline = await watcher.cancel_all_after(timeout_ms)
        assert deadline is not None and deadline >= now + timeout_ms
    assert await watcher.cancel_all_after(0) is None


# Server pings ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pinging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that pings after 0.5 s of silence and gives up 0.5 s later."""
    db = tmp_path_factory.mktemp("pings") / "pings.db"
    args = ("--no-demo-traders", "--ping-interval", "0.5", "--ping-timeout", "0.5")
    with ServerProcess.start(db, demo=True, args=args) as proc:
        yield proc


async def raw_login(server: ServerProcess, encoding: str) -> RawWebSocket:
    """A raw connection logged in with text frames (JSON) or for protobuf with nothing sent."""
    protocol = "tradews.v1.proto" if encoding == "proto" else None
    raw = await RawWebSocket.connect(server.url, protocol=protocol)
    if encoding == "json":
        login = {"jsonrpc": "2.0", "method": "rpc.login", "id": 1,
                 "params": {"apiKey": server.api_key, "apiSecret": server.api_secret}}  # fmt: skip
        raw.send_frame(TEXT, json.dumps(login).encode())
        reply = await raw.recv()
        assert reply is not None and json.loads(reply.payload)["result"] is True
    return raw


async def test_a_peer_that_never_answers_pings_is_closed(
    pinging: ServerProcess, encoding: str
) -> None:
    raw = await raw_login(pinging, encoding)
    first = await raw.recv()
    assert first is not None and first.opcode == PING  # after 0.5 s of silence
    closing = await raw.recv()
    assert closing is not None and closing.opcode == CLOSE and closing.close_code == 1001
    assert await raw.closed_by_server()
    raw.close()


async def test_a_peer_that_answers_pings_stays(pinging: ServerProcess, encoding: str) -> None:
    raw = await raw_login(pinging, encoding)
    pings = 0

    async def answer() -> None:
        nonlocal pings
        while (frame := await raw.recv(timeout=30)) is not None:
            assert frame.opcode == PING, frame
            pings += 1
            raw.send_frame(PONG, frame.payload)

    answering = asyncio.create_task(answer())
    async with await Client.connect(pinging.url) as clock:
        start = await clock.time()
        await server_time_passes(clock, start + 3_000)  # three times interval + timeout
        assert not answering.done(), "the server closed a peer that answered its pings"
        assert pings >= 2
    answering.cancel()
    raw.close()


async def test_a_silent_peer_with_cod_has_its_orders_cancelled(pinging: ServerProcess) -> None:
    raw = await raw_login(pinging, "json")
    for n, (method, params) in enumerate(
        [("cancel_on_disconnect", {"enabled": True}),
         ("order_place", {"symbol": "ETH_USD", "side": "buy", "type": "limit",
                          "quantity": "0.010", "price": "100.00", "clientOrderId": "silent"})],
        start=2,
    ):  # fmt: skip
        raw.send_frame(TEXT, json.dumps({"jsonrpc": "2.0", "method": method, "id": n,
                                         "params": params}).encode())  # fmt: skip
        reply = await raw.recv()
        assert reply is not None and "result" in json.loads(reply.payload), reply
    # Then nothing: no pong, no request, as if the network had gone. The server pings, gives
    # up, closes, and the session's order is cancelled.
    async with await Client.connect(pinging.url) as other:
        await other.login(pinging.api_key, pinging.api_secret)
        assert (await cancelled(other, "silent"))["reason"] == "CANCEL_ON_DISCONNECT"
    raw.close()


def test_ping_options_are_checked(tmp_path: Path) -> None:
    args = ("--ping-interval", "1", "--ping-timeout", "2")
    with pytest.raises(RuntimeError, match="--ping-timeout must be positive and at most"):
        ServerProcess.start(tmp_path / "p.db", demo=False, args=args)


# Restarts -------------------------------------------------------------------------------------------


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_kill_9_then_restart_cancels_what_cod_sessions_and_due_switches_left(
    tmp_path: Path,
) -> None:
    db = tmp_path / "restart.db"
    keys = prepare(db)  # t1..t4, funded, ETH_USD
    # Snapshots every 5 commands: the restart restores one that holds tags and a deadline.
    args = ("--snapshot-every", "5")
    server = ServerProcess.start(db, demo=False, args=args)
    cod = {enc: await connect(server, enc, keys["t1"]) for enc in ("json", "proto")}
    for client in cod.values():
        await client.cancel_on_disconnect(True)
    doomed = [await rest(cod["json"]), await rest(cod["proto"])]
    plain = await connect(server, "json", keys["t1"])
    kept = await rest(plain)  # the same account, no COD
    switch = await connect(server, "proto", keys["t2"])
    expiring = await rest(switch)
    deadline = await switch.cancel_all_after(1_000)
    assert deadline is not None
    other = await connect(server, "json", keys["t3"])
    armed = await rest(other)
    far = await other.cancel_all_after(600_000)  # not due by the restart
    assert far is not None

    server.stop(signal.SIGKILL)
    await eventually(lambda: asyncio.to_thread(now_ms), lambda t: t > deadline,
                     what="the switch's deadline passing while the server is down")  # fmt: skip
    with ServerProcess.start(db, demo=False, args=args) as again:
        banner = next(line for line in again.output if line.startswith("engine: replayed"))
        assert "after the snapshot at seq" in banner
        t1 = await connect(again, "json", keys["t1"])
        t2 = await connect(again, "proto", keys["t2"])
        t3 = await connect(again, "json", keys["t3"])
        for coid in doomed:
            assert (await status(t1, coid))["status"] == "cancelled"
            assert (await status(t1, coid))["reason"] == "CANCEL_ON_DISCONNECT"
        expired = await status(t2, expiring)
        assert (expired["status"], expired["reason"]) == ("cancelled", "CANCEL_ALL_AFTER")
        await still_open(t1, kept)
        await still_open(t3, armed)
        for client in (t1, t2, t3, *cod.values(), plain, switch, other):
            await client.close()


async def test_a_clean_stop_cancels_cod_orders_before_its_last_snapshot(tmp_path: Path) -> None:
    db = tmp_path / "stop.db"
    keys = prepare(db)
    server = ServerProcess.start(db, demo=False)
    a = await connect(server, "proto", keys["t1"])
    await a.cancel_on_disconnect(True)
    coid = await rest(a)
    assert server.stop(signal.SIGTERM) == 0
    closed = await a.wait_closed()
    assert closed.code == 1001
    assert "cancel-on-disconnect: ended 1 sessions" in "\n".join(server.output)
    with ServerProcess.start(db, demo=False) as again:
        # Nothing was left for the start-up to end.
        assert "cancel-on-disconnect: ended" not in "\n".join(again.output)
        b = await connect(again, "json", keys["t1"])
        order = await status(b, coid)
        assert (order["status"], order["reason"]) == ("cancelled", "CANCEL_ON_DISCONNECT")
        await b.close()
