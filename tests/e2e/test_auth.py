"""Login over a real socket: keys made with the command line against the server's database."""

from __future__ import annotations

import pytest

from tests.helpers import server_time_passes
from tradews.client import Client, ConnectionClosed, RpcError
from tradews.testing import ServerProcess, run_cli


async def login_error(server: ServerProcess, key: str, secret: str, encoding: str) -> RpcError:
    async with await Client.connect(server.url, encoding=encoding) as c:
        with pytest.raises(RpcError) as info:
            await c.login(key, secret)
        return info.value


async def test_login_success(server: ServerProcess, encoding: str) -> None:
    async with await Client.connect(server.url, encoding=encoding) as c:
        assert await c.login(server.api_key, server.api_secret) is True
        assert isinstance(await c.time(), int)


async def test_wrong_secret_and_unknown_key_look_the_same(
    server: ServerProcess, encoding: str
) -> None:
    wrong_secret = await login_error(server, server.api_key, "not-the-secret", encoding)
    unknown_key = await login_error(
        server, "tw_000000000000000000000000", server.api_secret, encoding
    )
    assert wrong_secret.code == unknown_key.code == 1002
    assert wrong_secret.message == unknown_key.message == "invalid API key or secret"


async def test_revoked_key(server: ServerProcess, encoding: str) -> None:
    created = server.cli("key", "create", "demo")
    run_cli("key", "revoke", created["apiKey"], db=server.db)
    err = await login_error(server, created["apiKey"], created["apiSecret"], encoding)
    assert err.code == 1003 and "revoked" in err.message
    # Without the secret, a revoked key is as unknown as any other.
    assert (await login_error(server, created["apiKey"], "guess", encoding)).code == 1002


async def test_revoking_a_key_disconnects_its_sessions(
    server: ServerProcess, encoding: str
) -> None:
    created = server.cli("key", "create", "demo")
    async with await Client.connect(server.url, encoding=encoding) as c:
        await c.login(created["apiKey"], created["apiSecret"])
        await c.quote_request("BTC_USD")
        run_cli("key", "revoke", created["apiKey"], db=server.db)
        closed = await c.wait_closed(timeout=5)
        assert closed.code == 1008 and "revoked" in closed.reason


async def test_standard_tier_is_refused(server: ServerProcess, encoding: str) -> None:
    name = f"retail-{encoding}"
    server.cli("account", "create", name, "--tier", "standard")
    created = server.cli("key", "create", name)
    err = await login_error(server, created["apiKey"], created["apiSecret"], encoding)
    assert err.code == 1005
    assert err.message == "websocket access requires the enterprise tier"


async def test_expired_key(server: ServerProcess, encoding: str) -> None:
    created = server.cli("key", "create", "demo", "--expires-in", "1s")
    async with await Client.connect(server.url, encoding=encoding) as c:
        assert created["expiresAt"] > await c.time()
        await server_time_passes(c, created["expiresAt"])
    err = await login_error(server, created["apiKey"], created["apiSecret"], encoding)
    assert err.code == 1004 and "expired" in err.message


async def test_a_session_ends_when_its_key_expires(server: ServerProcess, encoding: str) -> None:
    created = server.cli("key", "create", "demo", "--expires-in", "2s")
    async with await Client.connect(server.url, encoding=encoding) as c:
        await c.login(created["apiKey"], created["apiSecret"])
        closed = await c.wait_closed(timeout=5)
        assert closed.code == 1008 and "expired" in closed.reason


async def test_new_key_works_at_once(server: ServerProcess, encoding: str) -> None:
    created = server.cli("key", "create", "demo")
    async with await Client.connect(server.url, encoding=encoding) as c:
        assert await c.login(created["apiKey"], created["apiSecret"]) is True


@pytest.mark.parametrize(
    "method, params",
    [
        ("quote_request", {"symbol": "BTC_USD", "type": "RFQ"}),
        ("quote_cancel", {"subscription": "q1"}),
        ("market_data_request", None),
        ("market_data_cancel", None),
    ],
)
async def test_calls_before_login_are_refused(client: Client, method: str, params: object) -> None:
    with pytest.raises(RpcError) as info:
        await client.call(method, params)
    assert info.value.code == 1001
    assert "rpc.login" in info.value.message


async def test_time_and_discovery_need_no_login(client: Client) -> None:
    assert await client.time() > 0
    assert [i["symbol"] for i in await client.call("instruments")] == [
        "BTC_USD", "ETH_USD", "SOL_USD",
    ]  # fmt: skip
    if client.encoding == "proto":
        return  # the OpenRPC document describes the JSON-RPC encoding only
    doc = await client.call("rpc.discover")
    names = {m["name"] for m in doc["methods"]}
    assert {"rpc.login", "quote_request", "quote_cancel", "market_data_request", "time"} <= names
    login = next(m for m in doc["methods"] if m["name"] == "rpc.login")
    assert [(p["name"], p["required"]) for p in login["params"]] == [
        ("apiKey", True), ("apiSecret", False), ("timestamp", False), ("nonce", False),
        ("signature", False),
    ]  # fmt: skip


async def test_second_login_on_a_connection_is_refused(logged_in: Client) -> None:
    with pytest.raises(RpcError) as info:
        await logged_in.login("x", "y")
    assert info.value.code == 1006


async def test_missing_login_params(client: Client) -> None:
    with pytest.raises(RpcError) as info:
        await client.call("rpc.login", {"apiKey": "only-the-key"})
    assert info.value.code == -32602 and "apiSecret" in str(info.value.data)


async def test_repeated_failed_logins_close_the_connection(
    server: ServerProcess, encoding: str
) -> None:
    async with await Client.connect(server.url, encoding=encoding) as c:
        codes = []
        for _ in range(5):
            with pytest.raises(RpcError) as info:
                await c.login("tw_nope", "nope")
            codes.append(info.value.code)
        assert codes == [1002, 1002, 1002, 1002, 1007]
        closed = await c.wait_closed(timeout=5)
        assert closed.code == 1008
        with pytest.raises(ConnectionClosed):
            await c.time()
