"""The browser console's files and the policy they are served with (no browser needed here;
tests/e2e/test_console.py drives the console in Chromium)."""

from __future__ import annotations

import re

import pytest

from tradews.app.console import Console, content_security_policy


def test_every_file_is_served_with_its_type_and_the_policy() -> None:
    console = Console()
    assert b"/" in console.paths
    for path in console.paths:
        page = console.page(path, "127.0.0.1:8765")
        assert page is not None, path
        body, headers = page
        assert body
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "connect-src ws://127.0.0.1:8765;" in headers["Content-Security-Policy"]
    assert console.page(b"/", None) is not None
    assert console.page(b"/nothing", "127.0.0.1:8765") is None
    assert console.page(b"/console/../../cli.py", "127.0.0.1:8765") is None


def test_the_page_has_no_inline_script_or_style_and_loads_only_its_own_files() -> None:
    console = Console()
    page = console.page(b"/", "h")
    assert page is not None
    html = page[0].decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)  # every script is a file
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)  # no event handler attributes
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert url.encode() in console.paths, url
    for path in console.paths:
        if path.endswith(b".js"):
            text = (console.page(path, "h") or (b"", {}))[0].decode()
            for module in re.findall(r'from "\./([^"]+)"', text):
                assert b"/console/" + module.encode() in console.paths, module


def test_the_policy_allows_the_pages_own_origin_only() -> None:
    policy = content_security_policy("desk.example.com:8443", secure=True)
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives == {
        "default-src": "'none'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self'",
        "connect-src": "wss://desk.example.com:8443",
        "base-uri": "'none'",
        "form-action": "'none'",
        "frame-ancestors": "'none'",
    }
    assert "connect-src ws://[::1]:8765;" in content_security_policy("[::1]:8765", secure=False)


@pytest.mark.parametrize("host", [None, "", "a b", "evil; script-src *", "x\r\nSet-Cookie: a"])
def test_a_strange_host_header_gets_no_connection_at_all(host: str | None) -> None:
    assert "connect-src 'none';" in content_security_policy(host, secure=False)
