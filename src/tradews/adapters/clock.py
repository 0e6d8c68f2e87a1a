"""The one place the server reads the wall clock. Tests inject their own ``now``."""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000
