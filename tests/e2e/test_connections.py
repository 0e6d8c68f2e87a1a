"""Many clients at once, clients that vanish, and what the server keeps afterwards."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections.abc import Iterator
from decimal import Decimal

import pytest

from tests.helpers import eventually, readyz
from tradews.client import Client
from tradews.testing import ServerProcess


@pytest.fixture
def fresh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of its own, so that its gauges count only this test's clients."""
    with ServerProcess.start(tmp_path_factory.mktemp("fresh") / "t.db", demo=True) as proc:
        yield proc


async def metrics(server: ServerProcess) -> dict[str, float]:
    url = server.admin_url + "/metrics"

    def fetch() -> str:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    text = await asyncio.to_thread(fetch)
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"^(tradews_\w+) (\S+)$", text, flags=re.MULTILINE)
    }


async def wait_for_gauges(
    server: ServerProcess, expected: dict[str, float]
) -> dict[str, float | None]:
    """Poll /metrics until the gauges read ``expected``; fail with the values last seen."""

    async def gauges() -> dict[str, float | None]:
        seen = await metrics(server)
        return {name: seen.get(name) for name in expected}

    return await eventually(gauges, lambda seen: seen == expected, what="gauges")


async def stream_quotes(server: ServerProcess, symbol: str, n: int) -> list[dict[str, object]]:
    async with await Client.connect(server.url) as c:
        await c.login(server.api_key, server.api_secret)
        sub = await c.quote_request(symbol)
        got = []
        while len(got) < n:
            note = await c.next_notification(timeout=10)
            if note.method == "quote":
                assert note.params["subscription"] == sub["subscription"]
                got.append(note.params)
        return got


async def test_fifty_concurrent_clients(fresh_server: ServerProcess) -> None:
    symbols = ["BTC_USD", "ETH_USD", "SOL_USD"]
    results = await asyncio.gather(
        *(stream_quotes(fresh_server, symbols[i % 3], 10) for i in range(50))
    )
    quote_ids = [q["quoteId"] for stream in results for q in stream]
    assert len(quote_ids) == 500 and len(set(quote_ids)) == 500
    for i, stream in enumerate(results):
        assert [q["seq"] for q in stream] == list(range(1, 11))
        assert all(q["symbol"] == symbols[i % 3] for q in stream)
        assert all(Decimal(str(q["buyPrice"])) <= Decimal(str(q["sellPrice"])) for q in stream)
    await wait_for_gauges(fresh_server, {"tradews_connections": 0, "tradews_quote_streams": 0})


async def test_clients_vanishing_mid_stream_leave_nothing_behind(
    fresh_server: ServerProcess,
) -> None:
    clients = []
    for _ in range(20):
        c = await Client.connect(fresh_server.url)
        await c.login(fresh_server.api_key, fresh_server.api_secret)
        await c.quote_request("BTC_USD")
        await c.quote_request("ETH_USD")
        await c.market_data_request()
        await c.next_notification()
        clients.append(c)
    during = await metrics(fresh_server)
    assert during["tradews_connections"] == 20
    assert during["tradews_quote_streams"] == 40
    assert during["tradews_market_data_subscribers"] == 20
    # Half go away politely, half drop the TCP connection without a close frame.
    for i, c in enumerate(clients):
        if i % 2:
            await c.close()
        else:
            c.abort()
    after = await wait_for_gauges(
        fresh_server,
        {
            "tradews_connections": 0,
            "tradews_sessions_authenticated": 0,
            "tradews_quote_streams": 0,
            "tradews_market_data_subscribers": 0,
        },
    )
    assert after["tradews_connections"] == 0
    assert after["tradews_quote_streams"] == 0
    assert after["tradews_market_data_subscribers"] == 0
    # ...and the server still serves.
    assert len(await stream_quotes(fresh_server, "BTC_USD", 3)) == 3


async def test_healthz(server: ServerProcess) -> None:
    url = server.url.replace("ws://", "http://") + "/healthz"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    assert body == b"ok\n"


async def test_readyz_on_both_listeners(server: ServerProcess) -> None:
    assert await readyz(server.url) == (200, b"ready\n")
    assert await readyz(server.admin_url) == (200, b"ready\n")


async def test_the_browser_console_and_the_api_share_the_root_path(server: ServerProcess) -> None:
    """A plain GET of / is the console's page (on a gateway too); a handshake on / the API."""
    url = server.url.replace("ws://", "http://") + "/"

    def fetch() -> tuple[str, bytes]:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.headers["Content-Security-Policy"], response.read()

    policy, page = await asyncio.to_thread(fetch)
    assert page.startswith(b"<!doctype html>") and b"tradews console" in page
    assert f"connect-src {server.url};" in policy
    async with await Client.connect(server.url + "/") as client:
        assert isinstance(await client.time(), int)
