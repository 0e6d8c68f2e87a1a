"""tradews: a self-hosted real-time trading server speaking JSON-RPC 2.0 over WebSocket."""

import os as _os

__version__ = "0.1.0"

if _os.environ.get("TRADEWS_PURE_PYTHON") == "1":  # the tested fallback: see tradews._build
    from tradews._build import prefer_sources as _prefer_sources

    _prefer_sources()
