"""The browser console (``/``) end to end: Debian's headless Chromium, driven by Selenium, against
a real demo server. One browser for the module; the tests follow one session, in order.

Screenshots are saved in tests/artifacts/console/ (ignored by git)."""

from __future__ import annotations

import asyncio
import os
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.conftest import require
from tradews.api.checksum import book_checksum
from tradews.client import Client
from tradews.testing import ServerProcess, run_cli

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "console"
WAIT = 20.0

T = TypeVar("T")


def browser_available() -> bool:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        return False
    try:
        import selenium  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("console") / "tradews.db"
    with ServerProcess.start(db, demo=True) as proc:
        yield proc


@pytest.fixture(scope="module")
def console_url(demo: ServerProcess) -> str:
    return demo.url.replace("ws://", "http://") + "/"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require(
        browser_available(),
        f"{CHROMIUM} and {CHROMEDRIVER} (Debian's chromium, chromium-driver) and selenium are "
        "needed (run `make test`)",
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1400,2000"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(browser: Any, condition: Callable[[], T | None], what: str) -> T:
    """Poll ``condition`` until it returns something truthy; fail saying ``what`` was awaited."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.wait import WebDriverWait

    try:
        result: T = WebDriverWait(browser, WAIT, poll_frequency=0.05,
                                  ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda _: condition()
        )  # fmt: skip
    except TimeoutException:
        shot(browser, "timeout")
        pytest.fail(f"timed out waiting for {what}")
    return result


def shot(browser: Any, name: str) -> None:
    browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def by_id(browser: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, element_id)


def css(browser: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(browser.find_elements(By.CSS_SELECTOR, selector))


def status(browser: Any) -> str:
    return str(by_id(browser, "status").get_attribute("data-state"))


def balance(browser: Any, asset: str) -> Decimal | None:
    rows = css(browser, f'#balance-rows tr[data-asset="{asset}"] td')
    return Decimal(rows[1].text) if len(rows) > 1 and rows[1].text else None


def log_in(browser: Any, key: str, secret: str) -> None:
    by_id(browser, "api-key").clear()
    by_id(browser, "api-key").send_keys(key)
    by_id(browser, "api-secret").send_keys(secret)
    by_id(browser, "login-button").click()


def test_the_page_is_served_with_a_strict_content_security_policy(console_url: str) -> None:
    with urllib.request.urlopen(console_url, timeout=5) as response:
        policy = response.headers["Content-Security-Policy"]
        assert response.headers["Content-Type"].startswith("text/html")
        assert b'<script type="module" src="/console/app.js">' in response.read()
    host = console_url.split("/")[2]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert f"connect-src ws://{host};" in policy


def test_a_wrong_secret_shows_the_servers_message(
    browser: Any, console_url: str, demo: ServerProcess
) -> None:
    browser.get(console_url)
    assert status(browser) == "disconnected"
    assert not by_id(browser, "desk").is_displayed()
    log_in(browser, demo.api_key, "not-the-secret")
    error = wait_for(
        browser, lambda: by_id(browser, "error").is_displayed() and by_id(browser, "error"), "error"
    )
    assert error.text == "Login refused: invalid API key or secret (1002)"
    assert status(browser) == "logged-out"
    assert by_id(browser, "login").is_displayed()
    shot(browser, "01-wrong-secret")


BOOK_CHECKS = """
const done = arguments[arguments.length - 1];
import("/console/book.js").then(({ Book, OutOfSync, crc32 }) => {
  const book = new Book("ETH_USD", "0.01", "0.001");
  book.apply({ type: "snapshot", seq: 5, prevSeq: null, checksum: arguments[0],
               bids: [["3000.00", "2.000"], ["2999.99", "1.000"]], asks: [["3001.00", "0.500"]] });
  const after = { type: "delta", seq: 9, prevSeq: 5, checksum: arguments[1],
                  bids: [["3000.00", "0.000"]], asks: [["3000.50", "0.250"]] };
  book.apply(after);
  const gap = () => { try { book.apply({ ...after, seq: 12, prevSeq: 10 }); return "applied"; }
                      catch (e) { return e instanceof OutOfSync ? e.message : String(e); } };
  const wrong = () => { try { book.apply({ ...after, seq: 10, prevSeq: 9, checksum: 7 });
                              return "applied"; }
                        catch (e) { return e instanceof OutOfSync ? e.message : String(e); } };
  done({ crc: crc32("201:4|202:3"), checksum: book.checksum, gap: gap(), wrong: wrong() });
}).catch((e) => done({ error: String(e) }));
"""


def test_the_ladder_checks_sequence_and_checksum_as_the_server_computes_them(
    browser: Any,
) -> None:
    """book.js against tradews.api.checksum, on docs/protocol.md's example."""
    snapshot = book_checksum([(300000, 2000), (299999, 1000)], [(300100, 500)])
    delta = book_checksum([(299999, 1000)], [(300050, 250), (300100, 500)])
    result = browser.execute_async_script(BOOK_CHECKS, snapshot, delta)
    assert result == {
        "crc": zlib.crc32(b"201:4|202:3"),
        "checksum": delta,
        "gap": "expected prevSeq 9, got 10",
        "wrong": "checksum mismatch at seq 10",
    }


def test_log_in_and_see_quotes_move(browser: Any, demo: ServerProcess) -> None:
    log_in(browser, demo.api_key, demo.api_secret)
    wait_for(browser, lambda: status(browser) == "logged-in", "the login")
    assert not by_id(browser, "error").is_displayed()
    assert not by_id(browser, "login").is_displayed() and by_id(browser, "desk").is_displayed()
    card = by_id(browser, "quote-BTC_USD")
    first = wait_for(browser, lambda: card.get_attribute("data-quote-id"), "a first quote")
    wait_for(browser, lambda: card.get_attribute("data-quote-id") != first, "a new quote")
    assert int(card.get_attribute("data-seq")) >= 2
    assert css(browser, "#quotes .quote") and len(css(browser, "#quotes .quote")) == 3
    wait_for(browser, lambda: len(css(browser, "#ticker-rows tr")) == 3, "a ticker per symbol")
    # A signed login (http://127.0.0.1 is a secure context): the secret never crosses the wire.
    log = by_id(browser, "log").text
    assert demo.api_secret not in log and "apiSecret" not in log
    assert '"method":"rpc.login"' in log and '"signature":"' in log
    shot(browser, "02-logged-in")


def test_accept_a_quote_and_see_the_fill_and_the_balance(browser: Any) -> None:
    before = wait_for(browser, lambda: balance(browser, "BTC"), "the BTC balance")
    button = css(browser, "#quote-BTC_USD button.buy")[0]
    wait_for(browser, button.is_enabled, "a firm quote")
    button.click()
    result = wait_for(
        browser, lambda: by_id(browser, "rfq-result").text, "the reply to quote_accept"
    )
    assert result.startswith("Bought 1.0000 BTC_USD at "), result
    fill = wait_for(browser, lambda: css(browser, "#fill-rows tr"), "the fill")[0]
    assert fill.text.split()[1:3] == ["BTC_USD", "buy"] and fill.text.endswith("rfq")
    wait_for(browser, lambda: balance(browser, "BTC") == before + 1, "the BTC balance to grow")
    shot(browser, "03-quote-accepted")


def best_bid(browser: Any) -> Decimal:
    def price() -> str | None:
        cells = css(browser, "#ladder tr.bid td")
        return str(cells[1].text) if cells else None

    return Decimal(wait_for(browser, price, "the book's bids"))


def ladder_level(browser: Any, price: str) -> str | None:
    for row in css(browser, "#ladder tr.bid"):
        cells = row.find_elements("css selector", "td")
        if cells[1].text == price:
            return str(cells[0].text)
    return None


def test_place_amend_and_cancel_an_order_and_watch_the_book(browser: Any) -> None:
    from selenium.webdriver.support.select import Select

    # A resting bid a little under the best: in the ladder's ten levels, out of the demo's way.
    price = f"{(best_bid(browser) * Decimal('0.995')).quantize(Decimal('0.01'))}"
    Select(by_id(browser, "order-symbol")).select_by_value("BTC_USD")
    by_id(browser, "order-price").send_keys(price)
    by_id(browser, "order-quantity").send_keys("0.0123")
    by_id(browser, "order-post-only").click()
    by_id(browser, "order-place").click()
    result = wait_for(browser, lambda: by_id(browser, "ticket-result").text, "the order")
    assert result.endswith(f"new: buy 0.0123 BTC_USD @ {price}"), result
    order_id = result.split()[1]
    row = wait_for(
        browser, lambda: css(browser, f'#order-rows tr[data-order-id="{order_id}"]'), "open order"
    )[0]
    assert "0.0123" in row.text
    wait_for(browser, lambda: ladder_level(browser, price) == "0.0123", "the bid in the book")
    shot(browser, "04-order-placed")

    row.find_element("css selector", "input.amend-quantity").send_keys("0.0100")
    row.find_element("css selector", "button.amend").click()
    wait_for(browser, lambda: ladder_level(browser, price) == "0.0100", "the amended bid")

    row.find_element("css selector", "button.cancel").click()
    wait_for(
        browser,
        lambda: not css(browser, f'#order-rows tr[data-order-id="{order_id}"]'),
        "the order to leave the open orders",
    )
    wait_for(browser, lambda: ladder_level(browser, price) is None, "the bid to leave the book")
    assert not by_id(browser, "error").is_displayed()
    shot(browser, "05-order-cancelled")


async def burst_and_follow(demo: ServerProcess, browser: Any) -> None:
    """A burst of orders from another session; the console's book must reach the same state as
    the server's: at some seq the server sent, the console's own checksum equals the server's."""
    async with await Client.connect(demo.url) as client:
        await client.login(demo.api_key, demo.api_secret)
        await client.call("subscribe", {"channel": "book.BTC_USD", "depth": 25})
        checksums: dict[int, int] = {}

        async def record() -> None:
            async for note in client.notifications():
                if note.method == "book":
                    checksums[note.params["seq"]] = note.params["checksum"]

        reader = asyncio.create_task(record())
        # Post-only bids and asks 2-4 % either side of the demo's price, some inside the ten
        # levels the checksum covers, some deeper.
        mid = Decimal(best_bid(browser))
        last_seq = 0
        placed: list[int] = []
        for i in range(40):
            side, away = ("buy", -1) if i % 2 == 0 else ("sell", 1)
            price = mid * (1 + away * (Decimal("0.02") + Decimal(i) / 2000))
            order = await client.call("order_place", {
                "symbol": "BTC_USD", "side": side, "type": "limit", "postOnly": True,
                "quantity": f"0.00{10 + i}", "price": str(price.quantize(Decimal("0.01"))),
            })  # fmt: skip
            placed.append(order["orderId"])
            last_seq = max(last_seq, order["seq"])
        for order_id in placed[::3]:
            cancelled = await client.call("order_cancel", {"orderId": order_id})
            last_seq = max(last_seq, cancelled["seq"])

        def caught_up() -> bool:
            view = by_id(browser, "book")
            seq, mine = view.get_attribute("data-seq"), view.get_attribute("data-checksum")
            return seq is not None and int(seq) >= last_seq and checksums.get(int(seq)) == int(mine)

        await asyncio.to_thread(wait_for, browser, caught_up, "the console's book to catch up")
        await client.call("order_cancel_all", {"symbol": "BTC_USD"})
        reader.cancel()


def test_the_consoles_book_equals_the_servers_after_a_burst(
    browser: Any, demo: ServerProcess
) -> None:
    asyncio.run(burst_and_follow(demo, browser))
    shot(browser, "06-after-burst")


def test_the_log_pauses(browser: Any) -> None:
    def last() -> str:
        return str(css(browser, "#log li")[-1].text)

    by_id(browser, "log-pause").click()
    shown = last()
    wait_for(browser, lambda: by_id(browser, "log-skipped").text, "messages held back")
    assert last() == shown
    by_id(browser, "log-pause").click()
    wait_for(browser, lambda: last() != shown, "the log to go on")
    assert not by_id(browser, "log-skipped").text


def test_no_script_or_policy_errors_in_the_browser(browser: Any) -> None:
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


# Loaded before the page's own scripts (through the DevTools protocol, which the page's policy
# does not govern): a WebSocket that drops the next book delta when told to, as a lost message.
DROP_A_DELTA = """
(() => {
  const Native = window.WebSocket;
  window.dropNextDelta = false;
  window.WebSocket = class extends Native {
    set onmessage(handler) {
      super.onmessage = (event) => {
        if (window.dropNextDelta && String(event.data).includes('"type":"delta"')) {
          window.dropNextDelta = false;
          return;
        }
        handler(event);
      };
    }
  };
})();
"""


def test_a_lost_book_message_makes_the_ladder_resynchronise(
    browser: Any, console_url: str, demo: ServerProcess
) -> None:
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": DROP_A_DELTA})
    browser.get(console_url)
    log_in(browser, demo.api_key, demo.api_secret)
    book = by_id(browser, "book")
    wait_for(browser, lambda: book.get_attribute("data-synced") == "true", "the book")
    assert book.get_attribute("data-resyncs") is None
    browser.execute_script("window.dropNextDelta = true")
    wait_for(browser, lambda: book.get_attribute("data-resyncs") == "1", "a resynchronisation")
    # Synchronised again: only a new snapshot (a new subscription) starts a replica after a gap.
    wait_for(browser, lambda: book.get_attribute("data-synced") == "true", "the book again")
    assert by_id(browser, "book-status").text.endswith(" verified")
    assert not by_id(browser, "error").is_displayed()


def test_log_out_and_back_in_then_ride_out_a_server_restart(
    browser: Any, demo: ServerProcess
) -> None:
    by_id(browser, "logout").click()
    wait_for(browser, lambda: status(browser) == "logged-out", "the logged-out state")
    assert by_id(browser, "login").is_displayed() and not by_id(browser, "desk").is_displayed()
    # A key of its own: a demo server issues a new banner key, and revokes the old, each start.
    key = demo.cli("key", "create", "demo")
    log_in(browser, key["apiKey"], key["apiSecret"])
    wait_for(browser, lambda: status(browser) == "logged-in", "the second login")

    port = demo.url.rsplit(":", 1)[1]
    demo.stop()
    wait_for(browser, lambda: status(browser) == "reconnecting", "the reconnecting state")
    assert "reconnecting in" in by_id(browser, "status").text
    assert by_id(browser, "quote-BTC_USD").get_attribute("data-expired") == "true"
    shot(browser, "07-reconnecting")
    with ServerProcess.start(demo.db, demo=True, args=("--port", port)) as again:
        assert again.url == demo.url
        wait_for(browser, lambda: status(browser) == "logged-in", "the console to log in again")
        card = by_id(browser, "quote-BTC_USD")
        wait_for(browser, lambda: card.get_attribute("data-expired") == "false", "fresh quotes")
        wait_for(browser, lambda: by_id(browser, "book").get_attribute("data-synced") == "true",
                 "the book again")  # fmt: skip
        shot(browser, "08-reconnected")

        # A key revoked while in use ends the session for good: said, and not retried.
        run_cli("key", "revoke", key["apiKey"], db=again.db)
        wait_for(browser, lambda: status(browser) == "logged-out", "the end of the session")
        assert by_id(browser, "error").text == "The server closed the session: api key revoked"
        assert by_id(browser, "login").is_displayed()
        shot(browser, "09-key-revoked")
