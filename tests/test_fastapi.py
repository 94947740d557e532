"""FastAPI: the ASGI middleware in a FastAPI app, and the census_event dependency."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from census_receiver import Event, WebhookReceiver
from census_receiver.fastapi import census_event
from census_receiver.starlette import CensusWebhookMiddleware
from census_receiver.testing import make_delivery
from tests.adapter_contract import LIMIT, PATH, Probe, probing
from tests.conftest import SECRET
from tests.support import Channel, http_scope, run_asgi


@pytest.fixture
def probe() -> Iterator[Probe]:
    with probing() as p:
        yield p


class Item(BaseModel):
    name: str
    size: int


# -- the middleware in a FastAPI app ---------------------------------------------------


def middleware_app(receiver: WebhookReceiver) -> FastAPI:
    app = FastAPI()

    @app.post("/items")
    async def create(item: Item) -> Item:
        return item

    app.add_middleware(CensusWebhookMiddleware, receiver=receiver, path=PATH)
    return app


def test_middleware_leaves_fastapi_routes_alone(probe: Probe) -> None:
    client = TestClient(middleware_app(probe.receiver))
    answer = client.post("/items", json={"name": "x" * LIMIT, "size": 3})
    assert answer.json() == {"name": "x" * LIMIT, "size": 3}
    assert client.post("/items", json={"name": 1}).status_code == 422
    assert client.get("/openapi.json").json()["paths"].keys() == {"/items"}


# -- the census_event dependency -------------------------------------------------------


def route_app(receiver: WebhookReceiver, routed: list[Event]) -> FastAPI:
    app = FastAPI()

    # A string annotation naming a local alias cannot be resolved by FastAPI, so the
    # dependency goes in the default here; at module level, Annotated works as well.
    @app.post(PATH)
    async def census(event: Event = Depends(census_event(receiver))) -> dict[str, str]:  # noqa: B008
        routed.append(event)
        return {"status": "ok"}

    return app


def test_dependency_gives_the_route_the_typed_event(receiver: WebhookReceiver) -> None:
    app = FastAPI()

    @app.post("/hooks")
    def census(event: Event = Depends(census_event(receiver))) -> dict[str, Any]:  # noqa: B008
        return {"type": type(event).__name__, "run": event.sync_run_id}

    d = make_delivery("sync.completed", secret=SECRET, sync_run_id=12)
    answer = TestClient(app).post("/hooks", content=d.body, headers=d.headers)
    assert answer.json() == {"type": "SyncCompleted", "run": 12}


def test_dependency_client_leaving_mid_body_reaches_no_route_and_logs_nothing(
    probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    routed: list[Event] = []
    app = route_app(probe.receiver, routed)
    d = make_delivery("sync.failed", secret=SECRET)
    # Ten bytes of the body, then the client is gone.
    channel = Channel([{"type": "http.request", "body": d.body[:10], "more_body": True}])
    with caplog.at_level(logging.WARNING):
        run_asgi(app, http_scope(headers=d.headers.items()), channel)
    assert (routed, probe.calls) == ([], [])
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_dependency_route_is_post_only(probe: Probe) -> None:
    answer = TestClient(route_app(probe.receiver, [])).get(PATH)
    assert (answer.status_code, answer.headers["allow"]) == (405, "POST")
