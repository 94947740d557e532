"""The HTTP contract of DESIGN.md, run against every adapter.

The cases and rows are in ``tests/adapter_contract.py``; each runs against
the ASGI middleware (by hand, and in a Starlette and a FastAPI app), the
FastAPI dependency, the WSGI middleware, and the Flask view decorator and
extension.
"""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Callable
from typing import Any

import pytest

from census_receiver import ConfigurationError, WebhookReceiver

from .adapter_contract import (
    ADAPTERS,
    CASES,
    CHUNKED_OK,
    ROWS,
    Adapter,
    Case,
    Post,
    Probe,
    check,
    probing,
    unreachable_asgi,
    unreachable_wsgi,
)
from .support import DISGUISED as _BAD
from .support import SENTINEL


@pytest.fixture(params=ADAPTERS, ids=[a.name for a in ADAPTERS])
def adapter(request: pytest.FixtureRequest) -> Adapter:
    adapter: Adapter = request.param
    return adapter


@pytest.mark.parametrize("case", [*CASES, CHUNKED_OK], ids=lambda c: c.id)
def test_contract(adapter: Adapter, case: Case) -> None:
    with probing() as probe, adapter.serve(probe) as post:
        check(case, post(case.request), probe, adapter)


@pytest.mark.parametrize(("row", "options", "check_row"), ROWS, ids=[r[0] for r in ROWS])
def test_contract_row(
    adapter: Adapter,
    row: str,
    options: Callable[[], dict[str, Any]],
    check_row: Callable[[Post, Probe], None],
) -> None:
    with probing(**options()) as probe, adapter.serve(probe) as post:
        check_row(post, probe)


# -- setting an adapter up -------------------------------------------------------------

# Typed Any: deliberately the wrong type.
_TEXT: Any = SENTINEL


def _flask_extension(**config: Any) -> object:
    from flask import Flask

    from census_receiver.flask import CensusWebhooks

    app = Flask("configured")
    app.config.update(config)
    return CensusWebhooks(app)


def _middleware(module: str, app: Any, **options: Any) -> object:
    adapter = importlib.import_module(f"census_receiver.{module}")
    return adapter.CensusWebhookMiddleware(app, **options)


CONFIG_ERRORS: list[Any] = [
    pytest.param(
        lambda: _middleware(
            "starlette", unreachable_asgi, receiver=WebhookReceiver(SENTINEL), path=SENTINEL
        ),
        "path",
        id="asgi-path",
    ),
    pytest.param(
        lambda: _middleware("starlette", unreachable_asgi, receiver=SENTINEL),
        "receiver",
        id="asgi-receiver",
    ),
    pytest.param(
        lambda: _middleware(
            "wsgi", unreachable_wsgi, receiver=WebhookReceiver(SENTINEL), path=SENTINEL
        ),
        "path",
        id="wsgi-path",
    ),
    pytest.param(
        lambda: _middleware("wsgi", unreachable_wsgi, receiver=_BAD),
        "receiver",
        id="wsgi-receiver",
    ),
    pytest.param(
        lambda: importlib.import_module("census_receiver.fastapi").census_event(_TEXT),
        "receiver",
        id="fastapi-receiver",
    ),
    pytest.param(
        lambda: importlib.import_module("census_receiver.flask").census_webhook(_TEXT),
        "receiver",
        id="flask-view-receiver",
    ),
    pytest.param(lambda: _flask_extension(CENSUS_WEBHOOK_SECRET=_BAD), "secret", id="flask-secret"),
    pytest.param(
        lambda: _flask_extension(CENSUS_WEBHOOK_SECRET=[SENTINEL, ""]), "secret", id="flask-empty"
    ),
    pytest.param(
        lambda: _flask_extension(
            CENSUS_WEBHOOK_SECRET=SENTINEL, CENSUS_WEBHOOK_MAX_BODY_SIZE=_TEXT
        ),
        "max_body_size",
        id="flask-size",
    ),
    pytest.param(
        lambda: importlib.import_module("census_receiver.flask").CensusWebhooks(
            receiver=WebhookReceiver(SENTINEL), dedup=_TEXT
        ),
        "receiver",
        id="flask-both",
    ),
]


@pytest.mark.parametrize(("make", "setting"), CONFIG_ERRORS)
def test_adapter_configuration_errors_name_the_setting_not_its_value(
    make: Callable[[], object], setting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CENSUS_WEBHOOK_SECRET", raising=False)
    with pytest.raises(ConfigurationError) as info:
        make()
    assert setting in str(info.value)
    assert SENTINEL not in "".join(traceback.format_exception(info.value))
