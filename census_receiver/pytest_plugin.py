"""pytest fixtures for testing code that receives Census webhooks.

Registered through the ``pytest11`` entry point, so installing census_receiver
makes these fixtures available in every test session, with no import::

    def test_failed_syncs_page_someone(census_post, client):
        response = census_post(client, "sync.failed", sync_id=42)
        assert response.status_code == 200

Fixtures:

- ``census_secret``: the secret deliveries are signed with; override it in your
  ``conftest.py`` to use your app's.
- ``census_env``: sets ``CENSUS_WEBHOOK_SECRET`` to ``census_secret`` for the
  test, for apps that read their secret from the environment.
- ``census_receiver``: a ``WebhookReceiver`` on ``census_secret``, closed after
  the test.
- ``census_path``: the webhook path ``census_post`` posts to; override it if
  your app listens elsewhere.
- ``census_delivery``: a factory of signed deliveries (body and headers).
- ``census_post``: posts a signed delivery to your app through its own test
  client (Starlette, FastAPI, httpx, Flask or Werkzeug).

pytest loads this module in every session of every project that installs
census_receiver, so it imports no web framework, and not even the rest of the
package until a fixture is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._types import Secret
    from .receiver import WebhookReceiver
    from .testing import Delivery

__all__ = [
    "DEFAULT_SECRET",
    "CensusDeliveryFactory",
    "CensusPoster",
    "census_delivery",
    "census_env",
    "census_path",
    "census_post",
    "census_receiver",
    "census_secret",
]

#: The secret the fixtures sign with unless ``census_secret`` is overridden.
DEFAULT_SECRET = "census-receiver-test-secret"


class CensusDeliveryFactory(Protocol):
    """The type of the ``census_delivery`` fixture."""

    def __call__(self, event: str, *, bad_signature: bool = False, **fields: Any) -> Delivery:
        """A delivery of ``event`` signed with ``census_secret``."""


class CensusPoster(Protocol):
    """The type of the ``census_post`` fixture."""

    def __call__(
        self,
        client: Any,
        event: str,
        *,
        path: str | None = None,
        bad_signature: bool = False,
        headers: dict[str, str] | None = None,
        **fields: Any,
    ) -> Any:
        """Post a delivery of ``event`` signed with ``census_secret`` through ``client``."""


@pytest.fixture
def census_secret() -> Secret:
    """The webhook secret deliveries are signed with.

    Returns:
        A fixed test secret; override this fixture to use your app's.
    """
    return DEFAULT_SECRET


@pytest.fixture
def census_env(census_secret: Secret, monkeypatch: pytest.MonkeyPatch) -> Secret:
    """Set ``CENSUS_WEBHOOK_SECRET`` to ``census_secret`` for the test.

    Returns:
        The secret.
    """
    value = census_secret.decode("utf-8") if isinstance(census_secret, bytes) else census_secret
    monkeypatch.setenv("CENSUS_WEBHOOK_SECRET", value)
    return census_secret


@pytest.fixture
def census_receiver(census_secret: Secret) -> Iterator[WebhookReceiver]:
    """A ``WebhookReceiver`` verifying with ``census_secret``; closed after the test.

    Returns:
        The receiver, with no handler registered.
    """
    from .receiver import WebhookReceiver

    receiver = WebhookReceiver(secret=census_secret)
    yield receiver
    receiver.close()


@pytest.fixture
def census_path() -> str:
    """The webhook path ``census_post`` posts to.

    Returns:
        ``"/webhooks/census"``; override this fixture if your app listens elsewhere.
    """
    from .testing import DEFAULT_PATH

    return DEFAULT_PATH


@pytest.fixture
def census_delivery(census_secret: Secret) -> CensusDeliveryFactory:
    """A factory of deliveries signed with ``census_secret``.

    ``census_delivery("sync.failed", sync_id=42)`` returns a ``Delivery`` whose
    ``body`` and ``headers`` go to any client; ``bad_signature=True`` signs with
    another secret.

    Returns:
        The factory.
    """
    from .testing import make_delivery

    def factory(event: str, *, bad_signature: bool = False, **fields: Any) -> Delivery:
        return make_delivery(event, secret=census_secret, bad_signature=bad_signature, **fields)

    return factory


@pytest.fixture
def census_post(census_secret: Secret, census_path: str) -> CensusPoster:
    """Post signed deliveries to your app through its own test client.

    ``census_post(client, "sync.failed", sync_id=42)`` signs a realistic
    ``sync.failed`` payload with ``census_secret`` and posts it to
    ``census_path`` (or ``path=...``); it returns the client's response.

    Returns:
        The posting function.
    """
    from .testing import post

    def poster(
        client: Any,
        event: str,
        *,
        path: str | None = None,
        bad_signature: bool = False,
        headers: dict[str, str] | None = None,
        **fields: Any,
    ) -> Any:
        return post(
            client,
            event,
            secret=census_secret,
            path=census_path if path is None else path,
            bad_signature=bad_signature,
            headers=headers,
            **fields,
        )

    return poster
