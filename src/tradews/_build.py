"""Which build of the engine runs: compiled (the default install) or the pure-Python fallback.

``make install`` compiles the engine's modules (:data:`COMPILED`) with mypyc into C extensions
beside their sources; Python then imports the ``.so`` instead of the ``.py``. Both builds must
behave identically, so the tests run on both: with ``TRADEWS_PURE_PYTHON=1`` in the environment
(inherited by servers started from the tests), :func:`prefer_sources` makes those modules load
from their ``.py`` files even where a compiled one sits beside them.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

COMPILED = (
    "tradews.domain.orders",
    "tradews.domain.order_book",
    "tradews.domain.ledger",
    "tradews.engine.engine",
)
PURE_ENV = "TRADEWS_PURE_PYTHON"


class _SourcesFirst(importlib.abc.MetaPathFinder):
    """Finds the compiled modules' ``.py`` files, ahead of the path finder that prefers ``.so``."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in COMPILED or not path:
            return None
        name = fullname.rpartition(".")[2] + ".py"
        for folder in path:
            source = os.path.join(folder, name)
            if os.path.exists(source):
                return importlib.util.spec_from_file_location(fullname, source)
        return None


def prefer_sources() -> None:
    """Load the engine from its sources from now on (idempotent)."""
    if not any(isinstance(f, _SourcesFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourcesFirst())


def stale_compiled() -> list[str]:
    """Compiled modules older than their ``.py`` (Python would run the old code), unless the
    sources are what runs anyway."""
    if any(isinstance(f, _SourcesFirst) for f in sys.meta_path):
        return []
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    stale = []
    for name in COMPILED:
        source = os.path.join(root, *name.split(".")) + ".py"
        folder, stem = os.path.split(source[:-3])
        compiled = [e for e in os.listdir(folder) if e.startswith(stem + ".") and e.endswith(".so")]
        if any(
            os.path.getmtime(os.path.join(folder, e)) < os.path.getmtime(source) for e in compiled
        ):
            stale.append(name)
    return stale


def build() -> str:
    """``"compiled"`` or ``"pure Python"``: how the engine module in use was loaded."""
    import tradews.engine.engine as engine

    return "compiled" if str(engine.__file__).endswith(".so") else "pure Python"
