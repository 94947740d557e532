"""Fixtures shared by the whole suite: a secret, a receiver, signed deliveries, servers.

A test that needs something this machine lacks (a server binary, a browser)
calls ``need(reason)``: it skips with that one-line reason, or fails with it
when ``CENSUS_TEST_REQUIRE_ALL=1`` (as CI sets), so that CI runs every test. A
``ServerNotFound`` raised by a server helper, in a fixture or in a test, goes
through ``need`` too.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from hypothesis import settings

from census_receiver import WebhookReceiver
from census_receiver.journal import Journal, SQLiteJournal
from census_receiver.testing import Delivery, make_delivery

from .log_secrecy import log_secrecy as log_secrecy  # session-wide: no secret in any log
from .postgres_server import PostgresServer
from .redis_server import RedisServer, ServerNotFound
from .support import Clock

SECRET = "whsec_census_test"

# No per-example deadline: on a loaded machine (CI, parallel runs) a slow example
# is not a failure, and Hypothesis' deadline made property tests flaky there.
settings.register_profile("census", deadline=None)
settings.load_profile("census")


@pytest.fixture
def secret() -> str:
    return SECRET


@pytest.fixture
def receiver(secret: str) -> Iterator[WebhookReceiver]:
    r = WebhookReceiver(secret=secret)
    yield r
    r.close()


@pytest.fixture
def failed_delivery(secret: str) -> Delivery:
    return make_delivery("sync.failed", secret=secret)


#: Set to 1, a test that cannot run here fails instead of skipping.
REQUIRE_ALL = "CENSUS_TEST_REQUIRE_ALL"


def need(reason: str) -> NoReturn:
    """Skip the test for lack of ``reason`` (one line), or fail under ``CENSUS_TEST_REQUIRE_ALL=1``.

    Call it when something the test needs cannot be had here::

        if shutil.which("chromium") is None:
            need("chromium not found (apt install chromium chromium-driver)")
    """
    if os.environ.get(REQUIRE_ALL, "") not in ("", "0"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _needing_servers() -> Generator[None, None, None]:
    """Run a test phase; a server it finds not installed is ``need``ed (skip, or fail in CI)."""
    try:
        return (yield)
    except ServerNotFound as missing:
        reason = str(missing)
    need(reason)  # outside the except block: the reason alone, with no exception chain


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """A fixture whose server is not installed."""
    return (yield from _needing_servers())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """A test that starts a server that is not installed."""
    return (yield from _needing_servers())


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on 127.0.0.1 (free port, no persistence) shared by the session.

    Tests that use it call ``redis_server.flush()`` first, or use their own key prefix.
    """
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 shared by the session (``.conninfo``).

    Tests that use it work in a database or schema of their own, or clean up.
    """
    with PostgresServer() as server:
        yield server


def pytest_configure(config: pytest.Config) -> None:
    # Installed (pip install -e .), census_receiver's pytest plugin loads through its
    # pytest11 entry point; from a plain checkout, register it here so the suite's own
    # tests can use its fixtures either way. -p no:census_receiver still turns it off.
    if not config.pluginmanager.has_plugin("census_receiver"):
        from census_receiver import pytest_plugin

        config.pluginmanager.register(pytest_plugin, "census_receiver")


@pytest.fixture
def clock() -> Clock:
    """A clock the test moves: no sleeps for leases, backoff or overdue runs."""
    return Clock()


@pytest.fixture(params=["sqlite", "postgres"])
def journal(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Journal]:
    """A fresh, empty journal on each backend (a SQLite file; the session's PostgreSQL)."""
    if request.param == "sqlite":
        made: Journal = SQLiteJournal(tmp_path / "journal.db", clock=clock)
    else:
        from census_receiver.journal import PostgresJournal

        server: PostgresServer = request.getfixturevalue("postgres_server")
        made = PostgresJournal(server.conninfo, clock=clock)
        with made.transaction() as cur:
            cur.execute(
                "TRUNCATE census_deliveries, census_attempts, census_rejections, "
                "census_runs, census_run_alerts",
                (),
            )
    yield made
    made.close()
