"""Fixtures shared by the whole suite: a secret, a receiver, signed deliveries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from census_receiver import WebhookReceiver
from census_receiver.testing import Delivery, make_delivery

SECRET = "whsec_census_test"


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
