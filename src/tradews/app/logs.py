"""Logging for a server that strangers can talk to.

Many log lines are caused by clients: a malformed frame, a slow consumer dropped, a refused
login. Each is worth seeing, but a client that causes one a thousand times a second must not
fill the disk or drown the lines that matter. :class:`RepeatFilter` lets through at most
``burst`` records of the same kind (same logger, same message template) per ``window`` seconds,
and says how many it held back when the window turns over.

Lines are text or JSON (``--log-format json``: one object per line, for a log pipeline). A line
logged on behalf of a connection carries its ``conn`` id, ``peer`` and ``account`` (see
:func:`connection_extra`). Whatever the format, :class:`Redactor` masks secrets that a message
or a traceback might quote: an API secret or signature, a bearer token, a database password in
a URL, a private key.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec


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


# What a log line may quote that must not reach the log: (pattern, replacement).
_SECRETS = [
    # "apiSecret": "...", apiSecret=..., signature: ..., in JSON, repr or key=value form
    (
        re.compile(
            r"""(?i)(["']?(?:api_?secret|secret|signature|password|token)["']?\s*[:=]\s*["']?)"""
            r"""[^"'\s,}&]+"""
        ),
        r"\1***",
    ),  # fmt: skip
    (re.compile(r"(?i)(bearer\s+)[\w.~+/=-]+"), r"\1***"),
    (re.compile(r"(\w+://[^:/@\s]+:)[^@\s]+(@)"), r"\1***\2"),  # scheme://user:pass@host
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
        "-----PRIVATE KEY REDACTED-----",
    ),  # fmt: skip
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


# The fields a connection's log lines carry, beside the message.
CONTEXT_FIELDS = ("conn", "peer", "account")


def connection_extra(conn: int, peer: str | None, account: str | None) -> dict[str, Any]:
    """``extra=`` for a line logged on behalf of a connection."""
    return {"conn": conn, "peer": peer, "account": account}


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = [f"{k}={getattr(record, k)}" for k in CONTEXT_FIELDS
                   if getattr(record, k, None) is not None]  # fmt: skip
        if context:
            first, nl, rest = line.partition("\n")
            line = f"{first} [{' '.join(context)}]{nl}{rest}"
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``msg``, the
    connection's fields where there is one, and ``exc`` (the traceback) where there is one."""

    _encoder = msgspec.json.Encoder()

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for k in CONTEXT_FIELDS:
            value = getattr(record, k, None)
            if value is not None:
                out[k] = value
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return self._encoder.encode(out).decode()


LOG_FORMATS = ("text", "json")


def configure(level: str, fmt: str = "text") -> None:
    """Log to stderr at ``level`` in ``fmt`` (text or json), with repeats held back (see
    :class:`RepeatFilter`) and secrets masked (see :func:`redact`)."""
    logging.basicConfig(level=level.upper())
    formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
        handler.addFilter(RepeatFilter())
    # picows logs every connection at INFO: too much for a server with thousands of clients.
    logging.getLogger("picows").setLevel(max(logging.WARNING, logging.getLogger().level))
