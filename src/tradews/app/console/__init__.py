"""The browser console: a page on the public JSON-RPC API, served by the server at ``/``.

Plain ES modules and a style sheet, read from ``static/`` in this package and served as they
are (no build step, nothing fetched from elsewhere). Every response carries a strict
Content-Security-Policy: scripts and styles from the server's own origin only (no inline code),
and connections only to the server's own WebSocket origin, so a page of the console can talk to
nothing but the server that served it. The WebSocket origin check admits that origin
(:class:`tradews.adapters.ws_server.OriginPolicy`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

# The console's files, by URL path: the page at "/" and its assets under /console/.
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_FILES = {
    b"/": "index.html",
    b"/console/console.css": "console.css",
    b"/console/app.js": "app.js",
    b"/console/rpc.js": "rpc.js",
    b"/console/book.js": "book.js",
    b"/console/icon.svg": "icon.svg",
}

# A Host header as a browser sends it: a name, an IPv4 address or a bracketed IPv6 one, and an
# optional port. Anything else gets no WebSocket source in the policy (the page cannot connect).
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


def content_security_policy(host: str | None, *, secure: bool) -> str:
    """The policy for the console served to a browser that asked for ``host``: its own scripts
    and styles only, and WebSocket connections to that host only (``wss:`` over TLS)."""
    connect = f"{'wss' if secure else 'ws'}://{host}" if host and _HOST.match(host) else "'none'"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


class Console:
    """The console's files, read once, and the headers each is served with."""

    def __init__(self, *, secure: bool = False) -> None:
        self._secure = secure
        root = resources.files(__name__).joinpath("static")
        self._files: Mapping[bytes, tuple[bytes, str]] = MappingProxyType(
            {
                path: (root.joinpath(name).read_bytes(), _TYPES[name[name.rindex(".") :]])
                for path, name in _FILES.items()
            }
        )

    @property
    def paths(self) -> frozenset[bytes]:
        return frozenset(self._files)

    def page(self, path: bytes, host: str | None) -> tuple[bytes, dict[str, str]] | None:
        """The body and headers of the file at ``path``; None if the console has none there."""
        found = self._files.get(path)
        if found is None:
            return None
        body, content_type = found
        return body, {
            "Content-Type": content_type,
            "Content-Security-Policy": content_security_policy(host, secure=self._secure),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        }
