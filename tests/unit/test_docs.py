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


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors for a Markdown file's headings."""
    out = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_links_between_the_docs_resolve() -> None:
    root = DOC.parents[1]
    broken = []
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for target, anchor in re.findall(r"\]\(([\w./-]*\.md)?(?:#([\w-]+))?\)", doc.read_text()):
            path = (doc.parent / target).resolve() if target else doc
            if not path.exists():
                broken.append(f"{doc.name}: {target}")
            elif anchor and anchor not in _anchors(path):
                broken.append(f"{doc.name}: {target}#{anchor}")
    assert not broken
