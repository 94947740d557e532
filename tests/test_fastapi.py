"""FastAPI: the ASGI middleware in a FastAPI app, and the census_event dependency."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from census_receiver import Event, WebhookReceiver
from census_receiver._types import Message, Scope
from census_receiver.dedup import InMemoryDedupStore
from census_receiver.fastapi import census_event
from census_receiver.starlette import CensusWebhookMiddleware
from census_receiver.testing import make_delivery
from tests.adapter_contract import (
    CASES,
    CHUNKED_OK,
    DEDUP_ROWS,
    LIMIT,
    PATH,
    WAIT,
    Answer,
    Case,
    DownStore,
    Probe,
    check,
    delivery,
    make_probe,
    probing,
)
from tests.adapter_contract import (
    client_poster as poster,
)
from tests.conftest import SECRET


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


@pytest.mark.parametrize("case", [*CASES, CHUNKED_OK], ids=lambda c: c.id)
def test_middleware_answers_the_contract(case: Case, probe: Probe) -> None:
    check(case, poster(TestClient(middleware_app(probe.receiver)))(case.request), probe)


@pytest.mark.parametrize(
    ("row", "options", "check_row"), DEDUP_ROWS, ids=[r[0] for r in DEDUP_ROWS]
)
def test_middleware_answers_the_dedup_contract(row: str, options: Any, check_row: Any) -> None:
    with probing(**options()) as probe, TestClient(middleware_app(probe.receiver)) as client:
        check_row(poster(client), probe)


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


# The route is the handler: a verified delivery no handler matches still reaches it.
_ROUTED = {"handled", "handled-chunked", "no-handler", "unknown-event"}


@pytest.mark.parametrize("case", [*CASES, CHUNKED_OK], ids=lambda c: c.id)
def test_dependency_answers_the_contract(case: Case, probe: Probe) -> None:
    routed: list[Event] = []
    answer = poster(TestClient(route_app(probe.receiver, routed)))(case.request)
    assert answer.status == case.status
    assert len(probe.calls) == case.calls
    assert len(routed) == (1 if case.id in _ROUTED else 0)
    if case.id in _ROUTED:
        assert answer.json() == {"status": "ok"}  # the route's own answer
    elif case.answer == {"status": "dropped"}:
        assert answer.json() == {"detail": "dropped"}
    else:  # FastAPI's error shape, with the message every adapter gives
        assert set(answer.json()) == {"detail"} and answer.json()["detail"]
    if case.allow is not None:
        assert answer.headers["allow"] == case.allow


def test_dependency_gives_the_route_the_typed_event(receiver: WebhookReceiver) -> None:
    app = FastAPI()

    @app.post("/hooks")
    def census(event: Event = Depends(census_event(receiver))) -> dict[str, Any]:  # noqa: B008
        return {"type": type(event).__name__, "run": event.sync_run_id}

    d = make_delivery("sync.completed", secret=SECRET, sync_run_id=12)
    answer = TestClient(app).post("/hooks", content=d.body, headers=d.headers)
    assert answer.json() == {"type": "SyncCompleted", "run": 12}


def test_dependency_with_dedup_skips_the_route_for_a_duplicate() -> None:
    receiver = WebhookReceiver(secret=SECRET, dedup=InMemoryDedupStore())
    routed: list[Event] = []
    client = TestClient(route_app(receiver, routed))
    d = make_delivery("sync.failed", secret=SECRET)
    try:
        first = client.post(PATH, content=d.body, headers=d.headers)
        second = client.post(PATH, content=d.body, headers=d.headers)
    finally:
        receiver.close()
    assert (first.status_code, first.json()) == (200, {"status": "ok"})
    assert (second.status_code, second.json()) == (200, {"detail": "duplicate"})
    assert len(routed) == 1


def test_dependency_answers_409_while_the_first_copy_is_handled() -> None:
    with probing(dedup=InMemoryDedupStore()) as probe:
        routed: list[Event] = []
        req = delivery("sync.triggered")
        with TestClient(route_app(probe.receiver, routed)) as client:
            post = poster(client)

            async def both() -> tuple[Answer, Answer]:
                first = asyncio.ensure_future(asyncio.to_thread(post, req))
                assert await asyncio.to_thread(probe.started.wait, WAIT)
                second = await asyncio.to_thread(post, req)
                probe.gate.set()
                return await asyncio.wait_for(first, WAIT), second

            first, second = asyncio.run(both())
    assert (first.status, second.status) == (200, 409)
    assert len(routed) == 1


def test_dependency_answers_503_when_the_store_is_down() -> None:
    probe = make_probe(dedup=DownStore())
    routed: list[Event] = []
    answer = poster(TestClient(route_app(probe.receiver, routed)))(delivery("sync.failed"))
    probe.receiver.close()
    assert (answer.status, routed, probe.calls) == (503, [], [])


def test_dependency_client_leaving_mid_body_reaches_no_route_and_logs_nothing(
    probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    routed: list[Event] = []
    app = route_app(probe.receiver, routed)
    d = make_delivery("sync.failed", secret=SECRET)
    messages: list[Message] = [{"type": "http.request", "body": d.body[:10], "more_body": True}]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in d.headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    with caplog.at_level(logging.WARNING):
        asyncio.run(asyncio.wait_for(app(scope, receive, send), WAIT))
    assert (routed, probe.calls) == ([], [])
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_dependency_route_is_post_only(probe: Probe) -> None:
    answer = TestClient(route_app(probe.receiver, [])).get(PATH)
    assert (answer.status_code, answer.headers["allow"]) == (405, "POST")
