"""The inspector in a real headless Chromium, served by ``census-receiver serve``.

``serve`` runs as a subprocess on 127.0.0.1 with a journal file and an
``--exec`` relay that fails until a flag file exists; deliveries are sent with
``census-receiver send``; Debian's Chromium is driven through its
chromedriver by Selenium (nothing is downloaded). The browser opens the URL
``serve`` prints, with its ``?token=``, once; the cookie it sets carries every
later page. Without Chromium, chromedriver or Selenium the tests ``need`` them
(a skip, or a failure in CI).

``test_screenshots_for_the_docs`` serves a journal filled with a morning of
runs and writes ``docs/inspector.png`` and ``docs/inspector-runs.png`` when
``CENSUS_UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from census_receiver import Event, WebhookReceiver
from census_receiver.cli import EXIT_OK, main
from census_receiver.journal import SQLiteJournal
from census_receiver.testing import make_delivery
from tests.cli_tools import WAIT, Serve
from tests.conftest import SECRET, need

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
UPDATE_SCREENSHOTS = "CENSUS_UPDATE_SCREENSHOTS"
#: How soon a sent delivery must show in the open list, without a reload.
LIVE_WITHIN = 5.0
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--lang=en-US",
    "--window-size=1360,900",
)


def _found(*names: str) -> str | None:
    return next((path for name in names if (path := shutil.which(name))), None)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium with a fresh profile, driven through chromedriver."""
    chromium = _found("chromium", "chromium-browser", "google-chrome")
    driver = _found("chromedriver")
    if chromium is None or driver is None:
        need("chromium or chromedriver not found (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        need("selenium not installed (pip install -e '.[test]')")
    with tempfile.TemporaryDirectory(prefix="census-inspector-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        service = Service(executable_path=driver, log_output=subprocess.DEVNULL)
        chrome = webdriver.Chrome(options=options, service=service)
        try:
            chrome.set_page_load_timeout(WAIT)
            yield chrome
        finally:
            chrome.quit()


class Inspected:
    """``census-receiver serve`` with the inspector: its URLs, and a relay flag to flip."""

    def __init__(self, folder: Path, *extra: str) -> None:
        self.flag = folder / "relay-may-succeed"
        self.flag.touch()
        self.serve = Serve(
            "--secret", SECRET, "--journal", str(folder / "journal.db"),
            "--exec", f"test -e {shlex.quote(str(self.flag))}", *extra,
        )  # fmt: skip
        # serve prints its whole greeting at once, the inspector's URL with it.
        login = None
        deadline = time.monotonic() + 3.0
        while login is None and time.monotonic() < deadline:
            login = re.search(r"http://\S+/\?token=\S+", self.serve.output)
            time.sleep(0.05)
        if login is None:
            self.serve.stop()
            raise AssertionError(f"serve printed no inspector URL:\n{self.serve.output}")
        self.login = login.group(0)
        self.base = self.login.split("/?token=")[0]

    def url(self, path: str = "/") -> str:
        return self.base + path

    def send(self, event: str, *sets: str) -> int:
        """``census-receiver send EVENT --set ...`` to this server; its exit status."""
        argv = ["send", event, "--url", self.serve.url, "--secret", SECRET]
        for value in sets:
            argv += ["--set", value]
        return main(argv)


@pytest.fixture(scope="module")
def inspected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inspected]:
    served = Inspected(tmp_path_factory.mktemp("inspected"))
    yield served
    assert served.serve.stop() == EXIT_OK


@pytest.fixture(scope="module")
def page(browser: WebDriver, inspected: Inspected) -> WebDriver:
    """The browser, signed in through the URL ``serve`` printed."""
    browser.get(inspected.login)
    return browser


def wait_until(browser: WebDriver, predicate: Callable[[WebDriver], Any], within: float) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, within, poll_frequency=0.05).until(predicate)


def rows(browser: WebDriver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [row.text for row in browser.find_elements(By.CSS_SELECTOR, "#rows tr")]


def row_of(browser: WebDriver, run: int) -> Any:
    from selenium.webdriver.common.by import By

    for row in browser.find_elements(By.CSS_SELECTOR, "#rows tr"):
        if str(run) in row.text:
            return row
    return None


def has_row(browser: WebDriver, run: int) -> bool:
    return row_of(browser, run) is not None


def live_list(browser: WebDriver, inspected: Inspected) -> None:
    """Open the list and wait until its live stream is connected."""
    browser.get(inspected.url("/"))
    wait_until(
        browser,
        lambda b: (
            b.execute_script("return document.getElementById('live').dataset.state") == "open"
        ),
        WAIT,
    )


# -- signing in -------------------------------------------------------------------------------


def test_login_url_leaves_a_clean_address_and_a_cookie(
    page: WebDriver, inspected: Inspected
) -> None:
    assert page.current_url == inspected.url("/")
    assert "token=" not in page.current_url
    assert page.title.startswith("Deliveries")
    cookie = page.get_cookie("census_inspector")
    assert cookie is not None
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"


def test_a_fresh_browser_without_the_token_is_refused(
    browser: WebDriver, inspected: Inspected
) -> None:
    browser.delete_all_cookies()
    try:
        browser.get(inspected.url("/"))
        assert "needs credentials" in browser.page_source
        assert "sync." not in browser.page_source
    finally:
        browser.get(inspected.login)


# -- the live list ----------------------------------------------------------------------------


def test_sent_deliveries_appear_in_the_open_list_without_a_reload(
    page: WebDriver, inspected: Inspected
) -> None:
    live_list(page, inspected)
    page.execute_script("window.censusNoReload = true")
    for run in (7001, 7002, 7003):
        sent = time.monotonic()
        assert inspected.send("sync.triggered", f"sync_run_id={run}") == EXIT_OK
        wait_until(page, functools.partial(has_row, run=run), LIVE_WITHIN)
        assert time.monotonic() - sent < LIVE_WITHIN
    assert page.execute_script("return window.censusNoReload") is True
    shown = rows(page)
    assert "7003" in shown[0] and "7002" in shown[1] and "7001" in shown[2]
    assert "sync.triggered" in shown[0] and "handled" in shown[0]


def test_delivery_view_shows_its_ids_and_payload(page: WebDriver, inspected: Inspected) -> None:
    from selenium.webdriver.common.by import By

    live_list(page, inspected)
    assert inspected.send("sync.completed", "sync_id=4242", "sync_run_id=7100") == EXIT_OK
    wait_until(page, lambda b: row_of(b, 7100) is not None, LIVE_WITHIN)
    row_of(page, 7100).click()  # the whole row is a link
    wait_until(page, lambda b: b.title.startswith("Delivery #"), WAIT)
    text = page.find_element(By.TAG_NAME, "main").text
    assert "sync.completed" in text and "4242" in text and "7100" in text and "3167" in text
    payload = page.find_element(By.ID, "payload").text
    assert '"sync_run_id": 7100' in payload and '"status": "ok"' in payload


def test_failed_delivery_replays_from_the_button(page: WebDriver, inspected: Inspected) -> None:
    from selenium.webdriver.common.by import By

    live_list(page, inspected)
    inspected.flag.unlink()  # the relay's command fails until the flag is back
    assert inspected.send("sync.failed", "sync_run_id=7200") != EXIT_OK
    wait_until(page, lambda b: row_of(b, 7200) is not None, LIVE_WITHIN)
    assert "failed" in row_of(page, 7200).text
    row_of(page, 7200).find_element(By.TAG_NAME, "a").click()
    wait_until(page, lambda b: b.title.startswith("Delivery #"), WAIT)
    assert page.find_element(By.ID, "status").text == "failed"
    assert "RelayFailed" in page.find_element(By.CSS_SELECTOR, ".traceback").text
    inspected.flag.touch()
    page.find_element(By.ID, "replay").click()
    wait_until(page, lambda b: b.find_elements(By.ID, "replayed"), WAIT)
    assert "answered 200" in page.find_element(By.ID, "replayed").text
    assert page.find_element(By.ID, "status").text == "handled"
    assert page.find_elements(By.ID, "replay") == []


def test_runs_view_draws_a_run(page: WebDriver, inspected: Inspected) -> None:
    from selenium.webdriver.common.by import By

    for event, extra in [
        ("sync.triggered", ()),
        ("sync.started", ()),
        ("sync.completed", ("status=ok",)),
        ("sync.success", ()),
    ]:
        assert inspected.send(event, "sync_id=5150", "sync_run_id=7300", *extra) == EXIT_OK
        time.sleep(0.2)  # the bar's length is the time between them
    page.get(inspected.url("/runs"))
    run = page.find_element(By.ID, "run-7300")
    assert "succeeded" in run.text
    queued = run.find_element(By.CSS_SELECTOR, ".seg.queue")
    ran = run.find_element(By.CSS_SELECTOR, ".seg.work")
    track = run.find_element(By.CSS_SELECTOR, ".track")
    assert queued.size["width"] > 0 and ran.size["width"] > 0
    # The sync's one finished run sets the scale: its two segments fill the track.
    assert queued.size["width"] + ran.size["width"] >= 0.95 * track.size["width"]
    assert ran.value_of_css_property("background-color") == "rgba(47, 181, 97, 1)"
    health = page.find_element(By.ID, "sync-5150").text
    assert "100%" in health


HOSTILE = (
    "<script>window.censusPwned = 1; document.title = 'pwned'</script>"
    '<img src=x onerror="window.censusPwned = 2">'
)


def test_script_in_a_payload_runs_no_script(page: WebDriver, inspected: Inspected) -> None:
    from selenium.webdriver.common.by import By

    live_list(page, inspected)
    assert inspected.send("sync.triggered", "sync_run_id=7400") == EXIT_OK
    assert inspected.send("sync.alert.raised", f"message={HOSTILE}", "sync_run_id=7400") == EXIT_OK
    wait_until(page, lambda b: "sync.alert.raised" in (rows(b) or [""])[0], LIVE_WITHIN)
    page.find_element(By.CSS_SELECTOR, "#rows tr a").click()
    wait_until(page, lambda b: b.title.startswith("Delivery #"), WAIT)
    assert "<script>window.censusPwned" in page.find_element(By.ID, "payload").text
    page.get(inspected.url("/runs"))
    assert "<script>window.censusPwned" in page.find_element(By.ID, "run-7400").text
    for _ in range(2):
        assert page.execute_script("return window.censusPwned") is None
        assert page.title != "pwned"
        page.back()


# -- the screenshots in docs/inspector.md -----------------------------------------------------


def fill_a_morning(path: Path) -> None:
    """Record the runs of three syncs over the last hours, one failing, at chosen times."""
    started = time.time() - 4 * 3600
    clock = _Clock(started)
    journal = SQLiteJournal(path, clock=clock, synchronous="off")
    receiver = WebhookReceiver(SECRET, journal=journal)

    def crm(event: Event) -> None:
        if event.sync_run_id == 81000011:
            raise ConnectionError("CRM API answered 503 Service Unavailable")

    receiver.on("sync.failed")(crm)
    receiver.on("sync.triggered", "sync.started", "sync.completed", "sync.success")(_nothing)
    plan = [
        (3167956, (14, 318), "ok"), (4100231, (33, 140), "ok"), (3167956, (9, 344), "ok"),
        (4100231, (8, 106), "ok"), (3167956, (31, 290), "ok"), (4100877, (5, 73), "ok"),
        (3167956, (6, 512), "failed"), (4100231, (40, 151), "ok"), (4100877, (27, 249), "ok"),
        (3167956, (12, 301), "ok"), (4100231, (5, 521), "failed"), (4100877, (28, 0), "open"),
    ]  # fmt: skip
    step = (time.time() - 900 - started) / (len(plan) - 1)
    for number, (sync, (queued, ran), outcome) in enumerate(plan):
        # The last run was triggered a minute and a half ago, and is running still.
        clock.now = started + number * step if outcome != "open" else time.time() - 95
        run = 81000001 + number

        def send(event: str, sync: int = sync, run: int = run, **fields: Any) -> None:
            delivery = make_delivery(event, secret=SECRET, sync_id=sync, sync_run_id=run, **fields)
            receiver.handle(delivery.body, delivery.headers)

        send("sync.triggered")
        clock.now += queued
        send("sync.started")
        if outcome == "open":
            continue
        clock.now += ran
        send("sync.completed", status="ok" if outcome == "ok" else "emergency")
        clock.now += 0.4
        send("sync.success" if outcome == "ok" else "sync.failed")
        if outcome == "failed":
            clock.now += 1.1
            send("sync.alert.raised", alert_instance_id=626000 + number)
    for number in range(3):
        journal.note_rejection(401, "invalid_signature", f"127.0.0.{20 + number}", 240 + number)
    receiver.close()
    journal.close()


def _nothing(event: Event) -> None:
    pass


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_screenshots_for_the_docs(
    browser: WebDriver, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("screenshots")
    fill_a_morning(folder / "journal.db")
    served = Inspected(folder)
    try:
        browser.get(served.login)
        live_list(browser, served)
        shots = {"inspector.png": "/", "inspector-runs.png": "/runs"}
        for name, path in shots.items():
            if path != "/":
                browser.get(served.url(path))
            png = browser.get_screenshot_as_png()
            assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000
            if os.environ.get(UPDATE_SCREENSHOTS, "") not in ("", "0"):
                (DOCS / name).write_bytes(png)
            (folder / name).write_bytes(png)
    finally:
        browser.get("about:blank")
        assert served.serve.stop() == EXIT_OK
