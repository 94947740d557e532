"""Mistakes in setting a receiver or an adapter up, caught at construction with the fix.

Each of these used to surface only at the first request (a TypeError, a
Werkzeug error, a 500) or not at all.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from census_receiver import ConfigurationError, WebhookReceiver
from census_receiver.dedup import InMemoryDedupStore
from census_receiver.flask import CensusWebhooks, census_webhook
from census_receiver.starlette import CensusWebhookMiddleware as ASGIMiddleware
from census_receiver.wsgi import CensusWebhookMiddleware as WSGIMiddleware

from .conftest import SECRET


async def app(scope: Any, receive: Any, send: Any) -> None:
    """Stands for the wrapped app."""


@pytest.mark.parametrize("middleware", [ASGIMiddleware, WSGIMiddleware])
def test_a_middleware_given_a_secret_instead_of_a_receiver_says_what_to_pass(
    middleware: Any,
) -> None:
    with pytest.raises(ConfigurationError, match=r"WebhookReceiver\(secret=\.\.\.\)") as info:
        middleware(app, receiver="whsec_pasted_here")
    assert "whsec_pasted_here" not in str(info.value)


def test_census_webhook_without_its_receiver_says_to_call_it() -> None:
    def census(event: Any) -> None:
        """A view."""

    with pytest.raises(ConfigurationError, match=r"@census_webhook\(receiver\) above census"):
        census_webhook(census)  # type: ignore[arg-type]


def test_a_flask_webhook_path_without_a_leading_slash_is_refused_with_an_example() -> None:
    flask_app = Flask(__name__)
    flask_app.config.update(CENSUS_WEBHOOK_SECRET=SECRET, CENSUS_WEBHOOK_PATH="webhooks/census")
    with pytest.raises(ConfigurationError, match="CENSUS_WEBHOOK_PATH must start with '/'"):
        CensusWebhooks(flask_app)


@pytest.mark.parametrize("allowed", [3167, "3167"])
def test_a_single_workspace_id_is_refused_with_the_set_to_write(allowed: Any) -> None:
    with pytest.raises(ConfigurationError, match="allowed_workspaces=\\{"):
        WebhookReceiver(SECRET, allowed_workspaces=allowed)


def test_a_deadline_without_a_store_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="deadline= needs dedup= or journal="):
        WebhookReceiver(SECRET, deadline=5)


def test_the_deadline_defaults_to_8_s_with_a_store_and_none_without() -> None:
    assert WebhookReceiver(SECRET).deadline is None
    assert WebhookReceiver(SECRET, dedup=InMemoryDedupStore()).deadline == 8.0
    assert WebhookReceiver(SECRET, dedup=InMemoryDedupStore(), deadline=None).deadline is None


def test_importing_the_flask_adapter_without_flask_names_the_extra_to_install() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['flask'] = None  # as if Flask were not installed\n"
        "import census_receiver.flask\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "pip install 'census-receiver[flask]'" in done.stderr.splitlines()[-1]


def test_census_webhook_above_the_route_decorator_is_refused_with_the_order_to_write() -> None:
    receiver = WebhookReceiver(SECRET)
    flask_app = Flask(__name__)
    with pytest.raises(ConfigurationError, match=r"below @app.post"):

        @census_webhook(receiver)  # type: ignore[type-var]
        @flask_app.post("/webhooks/census")
        def census(event: Any) -> None:
            """Decorators in the wrong order."""

    @flask_app.post("/hooks")
    @census_webhook(receiver)
    def right(event: Any) -> None:
        """In the right order: accepted."""

    receiver.close()
