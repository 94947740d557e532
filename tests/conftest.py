"""Fixtures shared by the whole suite: a secret, a receiver, signed deliveries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings

from census_receiver import WebhookReceiver
from census_receiver.testing import Delivery, make_delivery

from .log_secrecy import log_secrecy as log_secrecy  # session-wide: no secret in any log
from .redis_server import RedisServer

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


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on 127.0.0.1 (free port, no persistence) shared by the session.

    Tests that use it call ``redis_server.flush()`` first, or use their own key prefix.
    """
    with RedisServer() as server:
        yield server


def pytest_configure(config: pytest.Config) -> None:
    # Installed (pip install -e .), census_receiver's pytest plugin loads through its
    # pytest11 entry point; from a plain checkout, register it here so the suite's own
    # tests can use its fixtures either way. -p no:census_receiver still turns it off.
    if not config.pluginmanager.has_plugin("census_receiver"):
        from census_receiver import pytest_plugin

        config.pluginmanager.register(pytest_plugin, "census_receiver")
