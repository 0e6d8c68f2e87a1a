"""Client-caused log lines are held back when they repeat."""

from __future__ import annotations

import logging

from tradews.app.logs import RepeatFilter


def record(msg: str, level: int = logging.WARNING, name: str = "tradews.x") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


def test_repeats_are_held_back_and_counted() -> None:
    now = [0.0]
    f = RepeatFilter(burst=3, window=10, clock=lambda: now[0])
    passed = [f.filter(record("slow consumer %s")) for _ in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert f.filter(record("another kind")) is True  # other templates have their own count
    now[0] = 10.0
    first = record("slow consumer %s")
    assert f.filter(first) is True
    assert "[7 more like this in the last 10 s]" in str(first.msg)


def test_critical_records_always_pass() -> None:
    f = RepeatFilter(burst=1, window=60, clock=lambda: 0.0)
    assert all(f.filter(record("halted", logging.CRITICAL)) for _ in range(5))
