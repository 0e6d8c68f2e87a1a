"""The RFQ desk's spread by size (`--spread-ladder`), over real sockets: each size is quoted at its
step's spread, a size above the ladder is not quoted (2008), and a change made with
`tradews instrument spread` reaches the running server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import pytest

from tests.helpers import rfq_desk
from tradews.client import Client, RpcError
from tradews.testing import ServerProcess, run_cli

SYMBOL = "BTC_USD"
REFERENCE = Decimal("65000")


@pytest.fixture(scope="module")
def desk(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    db = tmp_path_factory.mktemp("ladder") / "desk.db"
    key = rfq_desk(db, "--spread-ladder", "1:5,10:20")
    run_cli("price", "set", SYMBOL, str(REFERENCE), "--max-age", "1h", db=db)
    with ServerProcess.start(db, demo=False, args=("--tick-interval", "0.05")) as server:
        yield server, key


def expected(bps: str) -> tuple[str, str]:
    m = Decimal(bps) / 10_000
    tick = Decimal("0.01")
    buy = (REFERENCE * (1 - m)).quantize(tick, rounding=ROUND_FLOOR)
    sell = (REFERENCE * (1 + m)).quantize(tick, rounding=ROUND_CEILING)
    return str(buy), str(sell)


async def quote(client: Client, quantity: str) -> dict[str, Any]:
    sub = await client.quote_request(SYMBOL, quantity=quantity)
    while True:
        note = await client.next_notification(timeout=5)
        if note.method == "quote" and note.params["subscription"] == sub["subscription"]:
            await client.quote_cancel(sub["subscription"])
            return dict(note.params)


async def quoted_at(client: Client, quantity: str, bps: str) -> None:
    """Wait until ``quantity`` is quoted at ``bps`` (a change reaches the server within a
    second)."""
    for _ in range(100):
        try:
            q = await quote(client, quantity)
        except RpcError as exc:  # the old ladder may not quote that size
            assert exc.code == 2008, exc
        else:
            if (q["buyPrice"], q["sellPrice"]) == expected(bps):
                return
        await asyncio.sleep(0.05)
    pytest.fail(f"{quantity} was not quoted at {bps} bps")


async def test_each_size_at_its_step_and_nothing_above_the_ladder(
    desk: tuple[ServerProcess, dict[str, str]],
) -> None:
    server, key = desk
    async with await Client.connect(server.url) as client:
        await client.login(key["apiKey"], key["apiSecret"])
        for quantity, bps in (("0.5", "5"), ("1", "5"), ("1.0001", "20"), ("10", "20")):
            q = await quote(client, quantity)
            assert (q["buyPrice"], q["sellPrice"]) == expected(bps), quantity
        with pytest.raises(RpcError) as info:
            await client.quote_request(SYMBOL, quantity="10.0001")
        assert info.value.code == 2008
        assert info.value.message.endswith(f"the desk quotes at most 10 {SYMBOL}")


async def test_a_change_reaches_the_running_desk(
    desk: tuple[ServerProcess, dict[str, str]],
) -> None:
    server, key = desk
    done = await asyncio.to_thread(
        run_cli, "instrument", "spread", SYMBOL, "--spread-ladder", "50:8", db=server.db
    )
    assert f"{SYMBOL} RFQ spread: 50:8" in done.stdout
    listed = await asyncio.to_thread(run_cli, "instrument", "list", "--json", db=server.db)
    assert listed[0]["spreadLadder"] == "50:8"
    async with await Client.connect(server.url) as client:
        await client.login(key["apiKey"], key["apiSecret"])
        await quoted_at(client, "20", "8")
        # and back to a flat spread
        await asyncio.to_thread(
            run_cli, "instrument", "spread", SYMBOL, "--spread-ladder", "", "--spread-bps", "3",
            db=server.db,
        )  # fmt: skip
        await quoted_at(client, "60", "3")


@pytest.mark.parametrize(
    ("ladder", "message"),
    [
        ("1:5,0.5:8", "the spread ladder's quantities must be positive and ascending"),
        ("1-5", "spread ladder step '1-5': write QUANTITY:BPS, e.g. 1:5"),
        ("1:-5", "the spread ladder's spreads must not be negative"),
        ("0.00001:5", "spread ladder quantity 0.00001 is not a multiple of 0.0001"),
    ],
)
def test_a_bad_ladder_is_one_line(
    desk: tuple[ServerProcess, dict[str, str]], ladder: str, message: str
) -> None:
    server, _ = desk
    done = run_cli("instrument", "spread", SYMBOL, "--spread-ladder", ladder, db=server.db,
                   check=False)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: {message}"
