"""Logging for a server that strangers can talk to.

Many log lines are caused by clients: a malformed frame, a slow consumer dropped, a refused
login. Each is worth seeing, but a client that causes one a thousand times a second must not
fill the disk or drown the lines that matter. :class:`RepeatFilter` lets through at most
``burst`` records of the same kind (same logger, same message template) per ``window`` seconds,
and says how many it held back when the window turns over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RepeatFilter(logging.Filter):
    def __init__(
        self,
        *,
        burst: int = 20,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._burst = burst
        self._window = window
        self._clock = clock
        # (logger, template) -> [window start, records seen in it]
        self._seen: dict[tuple[str, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.CRITICAL:
            return True  # a halt is never held back
        now = self._clock()
        key = (record.name, str(record.msg))
        entry = self._seen.get(key)
        if entry is None or now - entry[0] >= self._window:
            held = 0 if entry is None else int(entry[1]) - self._burst
            self._seen[key] = [now, 1]
            if len(self._seen) > 10_000:  # templates are few; this only bounds the worst case
                self._seen = {key: self._seen[key]}
            if held > 0:
                record.msg = f"{record.msg} [{held} more like this in the last {self._window:g} s]"
            return True
        entry[1] += 1
        return entry[1] <= self._burst


def configure(level: str) -> None:
    """Log to stderr at ``level``, with repeats held back (see :class:`RepeatFilter`)."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RepeatFilter())
    # picows logs every connection at INFO: too much for a server with thousands of clients.
    logging.getLogger("picows").setLevel(max(logging.WARNING, logging.getLogger().level))
