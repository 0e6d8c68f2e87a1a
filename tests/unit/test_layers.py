"""Imports point down only: the pure layers do no I/O, and only adapters touch the network,
the database or the WebSocket library (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "tradews"
PURE = ("domain", "engine", "api", "codecs", "session")
DATABASES = ("sqlite3", "psycopg", "asyncpg")
IO = {"asyncio", "picows", "socket", "ssl", "selectors", "uvloop", "urllib", "http", *DATABASES}
LAYERS = ["domain", "engine", "api", "codecs", "session", "adapters", "app"]  # bottom to top


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def modules(layer: str) -> list[Path]:
    return sorted(p for p in (SRC / layer).rglob("*.py") if "/pb/" not in str(p))


def test_pure_layers_do_no_io() -> None:
    found = [
        f"{path.relative_to(SRC)} imports {name}"
        for layer in PURE
        for path in modules(layer)
        for name in imports(path)
        if name.split(".")[0] in IO
    ]
    assert not found


def test_only_adapters_import_the_websocket_library_and_the_database() -> None:
    found = [
        f"{path.relative_to(SRC)} imports {name}"
        for layer in LAYERS
        if layer != "adapters"
        for path in modules(layer)
        for name in imports(path)
        if name.split(".")[0] in ("picows", *DATABASES)
    ]
    assert not found


def test_imports_point_down() -> None:
    found = []
    for rank, layer in enumerate(LAYERS):
        above = LAYERS[rank + 1 :]
        for path in modules(layer):
            for name in imports(path):
                parts = name.split(".")
                if parts[0] == "tradews" and len(parts) > 1 and parts[1] in above:
                    found.append(f"{path.relative_to(SRC)} imports {name}")
    assert not found
