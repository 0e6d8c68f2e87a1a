"""/metrics over a real server: requests by method and encoding with their latency, refusals by
reason, the engine's queue and the journal's commit latency, each moving as clients act."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest

from tradews.client import Client, RpcError
from tradews.testing import ServerProcess


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of its own, so that its counters count only this module's requests."""
    db = tmp_path_factory.mktemp("metrics") / "m.db"
    with ServerProcess.start(db, demo=True, args=("--no-demo-traders",)) as proc:
        yield proc


async def samples(server: ServerProcess) -> dict[str, float]:
    """Every tradews sample, keyed by name and labels as exposed."""
    text = (await asyncio.to_thread(server.admin, "/metrics")).decode()
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"^(tradews_\S+) (\S+)$", text, flags=re.MULTILINE)
    }


def count(method: str, encoding: str) -> str:
    return f'tradews_request_duration_seconds_count{{encoding="{encoding}",method="{method}"}}'


def errors(method: str, reason: str) -> str:
    return f'tradews_request_errors_total{{method="{method}",reason="{reason}"}}'


@pytest.mark.parametrize("encoding", ["json", "proto"])
async def test_requests_refusals_and_commits_are_counted(
    own_server: ServerProcess, encoding: str
) -> None:
    before = await samples(own_server)
    async with await Client.connect(own_server.url, encoding=encoding) as client:
        await client.login(own_server.api_key, own_server.api_secret)
        await client.place_order("ETH_USD", "buy", "0.010", price="100.00")
        with pytest.raises(RpcError) as info:  # above the instrument's maximum size
            await client.place_order("ETH_USD", "buy", "90000.000", price="100.00")
        assert info.value.code == 4001
        with pytest.raises(RpcError):
            await client.call("order_status", {"orderId": 999_999_999})
        await client.call("order_cancel_all")
    after = await samples(own_server)

    def moved(name: str) -> float:
        return after.get(name, 0) - before.get(name, 0)

    assert moved(count("rpc.login", encoding)) == 1
    assert moved(count("order_place", encoding)) == 2
    assert moved(count("order_status", encoding)) == 1
    assert moved(errors("order_place", "REJECTED:ABOVE_MAX_SIZE")) == 1
    assert moved(errors("order_status", "REJECTED:UNKNOWN_ORDER")) == 1
    # the orders and the cancel were journaled: commits were timed, and nothing is left queued
    assert moved("tradews_journal_commit_seconds_count") >= 2
    assert after["tradews_journal_commit_seconds_sum"] > before.get(
        "tradews_journal_commit_seconds_sum", 0
    )
    assert after["tradews_engine_queue_depth"] == 0
    # buckets are cumulative and end with every observation
    key = f'tradews_request_duration_seconds_bucket{{encoding="{encoding}",le="+Inf",method="order_place"}}'
    assert after[key] == after[count("order_place", encoding)]


async def test_a_method_that_does_not_exist_is_one_label(own_server: ServerProcess) -> None:
    """A client choosing method names does not choose the metrics' labels."""
    before = await samples(own_server)
    async with await Client.connect(own_server.url) as client:
        for name in ("no_such_method", "another_one", "x" * 40):
            with pytest.raises(RpcError) as info:
                await client.call(name)
            assert info.value.code == -32601
    after = await samples(own_server)
    assert after[count("unknown", "json")] - before.get(count("unknown", "json"), 0) == 3
    assert not any("no_such_method" in k or "another_one" in k for k in after)
