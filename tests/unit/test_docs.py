"""The published error table must match the code."""

from __future__ import annotations

import re
from pathlib import Path

from tradews.api.errors import ErrorCode

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_error_table_matches_error_codes() -> None:
    text = DOC.read_text()
    table = text[text.index("<!-- error-codes") :]
    rows = re.findall(r"^\| (-?\d+) \| ([A-Z_]+) \|", table, flags=re.MULTILINE)
    assert [(int(code), name) for code, name in rows] == [(int(c), c.name) for c in ErrorCode]
