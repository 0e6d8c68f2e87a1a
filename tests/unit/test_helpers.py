"""The test suite's waiting helper must fail loudly, or the tests that use it cannot fail."""

from __future__ import annotations

import itertools

import pytest

from tests.helpers import eventually


async def test_eventually_returns_the_value_that_satisfied_it() -> None:
    counter = itertools.count()

    async def probe() -> int:
        return next(counter)

    assert await eventually(probe, lambda n: n >= 3, what="three", interval=0) == 3


async def test_eventually_fails_with_the_last_value_seen() -> None:
    counter = itertools.count()

    async def probe() -> dict[str, int]:
        return {"tradews_connections": next(counter) % 2 + 1}

    with pytest.raises(AssertionError, match=r"no connections: not reached within 0.2 s; "
                                             r"last seen: \{'tradews_connections': [12]\}"):  # fmt: skip
        await eventually(probe, lambda seen: not seen["tradews_connections"],
                         what="no connections", timeout=0.2, interval=0.01)  # fmt: skip
