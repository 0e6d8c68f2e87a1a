from __future__ import annotations

from tradews.domain.market_stats import BUCKET_MS, WINDOW_MS, RollingStats


def test_rolling_window() -> None:
    s = RollingStats()
    assert s.snapshot(0) is None
    s.observe(100, 1, 0)
    s.observe(120, 2, 10)
    s.observe(90, 0, BUCKET_MS + 5)
    snap = s.snapshot(BUCKET_MS + 5)
    assert snap is not None
    assert (snap.last, snap.open, snap.high, snap.low, snap.volume) == (90, 100, 120, 90, 3)
    # A day later the first bucket has left the window.
    later = WINDOW_MS + BUCKET_MS + 1
    s.observe(95, 0, later)
    snap = s.snapshot(later)
    assert snap is not None
    assert (snap.open, snap.high, snap.low, snap.volume) == (90, 95, 90, 0)


def test_memory_is_bounded() -> None:
    s = RollingStats()
    for minute in range(3 * 24 * 60):
        s.observe(100 + minute % 7, 1, minute * BUCKET_MS)
    assert len(s._buckets) <= WINDOW_MS // BUCKET_MS + 1
