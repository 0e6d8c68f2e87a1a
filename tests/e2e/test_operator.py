"""A server without --demo: it serves what its database lists, and sees CLI changes live."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.helpers import eventually
from tradews.client import Client, RpcError
from tradews.testing import ServerProcess, run_cli


async def test_plain_server_serves_its_database(tmp_path: Path) -> None:
    db = tmp_path / "ops.db"
    run_cli("account", "create", "fund-a", "--tier", "enterprise", db=db)
    key = run_cli("key", "create", "fund-a", "--json", db=db)
    run_cli(
        "instrument", "add", "BTC_EUR", "--base", "BTC", "--quote", "EUR",
        "--tick", "0.5", "--lot", "0.001", db=db,
    )  # fmt: skip
    with ServerProcess.start(db, demo=False) as server:
        assert server.api_key == ""  # no demo account is created or printed
        async with await Client.connect(server.url) as c:
            await c.login(key["apiKey"], key["apiSecret"])
            sub = await c.market_data_request()
            assert sub["symbols"] == ["BTC_EUR"]
            # No reference price (no demo walk, no `tradews price set`): a clear error, no
            # silent empty stream.
            with pytest.raises(RpcError) as info:
                await c.quote_request("BTC_EUR")
            assert info.value.code == 2003 and "BTC_EUR" in info.value.message

            run_cli(
                "instrument", "add", "ETH_EUR", "--base", "ETH", "--quote", "EUR",
                "--tick", "0.01", "--lot", "0.01", db=db,
            )  # fmt: skip
            listed = await eventually(
                lambda: c.call("instruments"),
                lambda rows: "ETH_EUR" in [i["symbol"] for i in rows],
                what="ETH_EUR listed by the running server",
            )
            assert [i["symbol"] for i in listed] == ["BTC_EUR", "ETH_EUR"]
            with pytest.raises(RpcError) as info:
                await c.quote_request("ETH_EUR")
            assert info.value.code == 2003  # listed now, not unknown


async def test_sigterm_closes_clients_with_going_away(tmp_path: Path) -> None:
    server = ServerProcess.start(tmp_path / "stop.db", demo=True)
    try:
        async with await Client.connect(server.url) as c:
            await c.login(server.api_key, server.api_secret)
            await c.quote_request("BTC_USD")
            stopping = asyncio.create_task(asyncio.to_thread(server.stop))
            closed = await c.wait_closed(timeout=10)
            assert closed.code == 1001 and closed.reason == "server shutting down"
            assert await stopping == 0
    finally:
        server.stop()
