"""census_receiver.testing: payload factories and signing helpers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from census_receiver import EVENT_TYPES, Event, WebhookReceiver, compute_signature, parse_event
from census_receiver.testing import (
    DEFAULT_PATH,
    DOCUMENTED_EXAMPLES,
    EVENT_NAMES,
    RETRY_DELAYS,
    make_body,
    make_delivery,
    make_payload,
    post,
    sign,
    signed_headers,
)

from .conftest import SECRET


def test_event_names_are_the_documented_ones() -> None:
    assert set(EVENT_NAMES) == set(EVENT_TYPES) and len(EVENT_NAMES) == 7


@pytest.mark.parametrize("name", EVENT_NAMES)
def test_make_payload_parses_to_the_right_model(name: str) -> None:
    event = parse_event(make_body(name))
    assert type(event) is EVENT_TYPES[name]


def test_make_payload_uses_documented_values_and_puts_event_last() -> None:
    payload = make_payload("sync.alert.raised")
    assert list(payload)[-1] == "event"
    assert payload["alert_type"] == "FailureAlertConfiguration"
    assert make_payload("sync.alert.resolved")["message"] == "Sync Recovered"


def test_make_payload_overrides_and_removes_fields() -> None:
    payload = make_payload("sync.completed", status="emergency", sync_id=7, workspace_id=None)
    assert payload["status"] == "emergency" and payload["sync_id"] == 7
    assert "workspace_id" not in payload


def test_make_payload_for_unknown_names_has_ids_only() -> None:
    assert make_payload("sync.paused") == {
        "workspace_id": 3167,
        "sync_id": 3167956,
        "sync_run_id": 324399613,
        "event": "sync.paused",
    }


def test_documented_examples_are_all_there() -> None:
    assert len(DOCUMENTED_EXAMPLES) == 8
    assert {p["event"] for p in DOCUMENTED_EXAMPLES} == set(EVENT_NAMES)


def test_sign_and_signed_headers_match_compute_signature() -> None:
    body = make_body("sync.failed")
    assert sign(body, SECRET) == compute_signature(body, SECRET)
    assert sign(body.decode(), SECRET) == compute_signature(body, SECRET)
    assert signed_headers(body, SECRET) == {
        "Content-Type": "application/json",
        "X-Signature": compute_signature(body, SECRET),
    }


def test_make_delivery_is_accepted_by_a_receiver() -> None:
    delivery = make_delivery("sync.failed", secret=SECRET, sync_id=42)
    assert delivery.payload["sync_id"] == 42
    assert json.loads(delivery.body) == delivery.payload
    assert WebhookReceiver(SECRET).handle(delivery.body, delivery.headers).status == 200


def test_make_delivery_with_bad_signature_is_refused() -> None:
    delivery = make_delivery("sync.failed", secret=SECRET, bad_signature=True)
    assert WebhookReceiver(SECRET).handle(delivery.body, delivery.headers).status == 401
    bytes_secret = make_delivery("sync.failed", secret=SECRET.encode(), bad_signature=True)
    assert WebhookReceiver(SECRET).handle(bytes_secret.body, bytes_secret.headers).status == 401


def _recording_receiver(seen: list[Event]) -> WebhookReceiver:
    receiver = WebhookReceiver(SECRET)

    @receiver.on("*")
    def record(event: Event) -> None:
        seen.append(event)

    return receiver


def test_post_sends_content_through_a_starlette_test_client() -> None:
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from census_receiver.starlette import CensusWebhookMiddleware

    seen: list[Event] = []
    receiver = _recording_receiver(seen)
    app = CensusWebhookMiddleware(Starlette(), receiver=receiver, path=DEFAULT_PATH)
    with TestClient(app) as client:
        response = post(client, "sync.failed", secret=SECRET, sync_id=42)
        refused = post(client, "sync.failed", secret=SECRET, bad_signature=True)
    receiver.close()
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert refused.status_code == 401
    assert [(e.event, e.sync_id) for e in seen] == [("sync.failed", 42)]


def test_post_sends_data_through_a_werkzeug_test_client() -> None:
    from flask import Flask
    from werkzeug.test import Client
    from werkzeug.wrappers import Response

    from census_receiver.wsgi import CensusWebhookMiddleware

    seen: list[Event] = []
    receiver = _recording_receiver(seen)
    flask_app = Flask(__name__)
    flask_app.wsgi_app = CensusWebhookMiddleware(  # type: ignore[method-assign]
        flask_app.wsgi_app, receiver=receiver, path="/hooks"
    )
    flask_response = post(flask_app.test_client(), "sync.started", secret=SECRET, path="/hooks")
    plain = CensusWebhookMiddleware(Response("not here", 404), receiver=receiver, path="/hooks")
    werkzeug_response = post(Client(plain), "sync.alert.raised", secret=SECRET, path="/hooks")
    receiver.close()
    assert flask_response.status_code == werkzeug_response.status_code == 200
    assert [e.event for e in seen] == ["sync.started", "sync.alert.raised"]


def test_post_returns_the_coroutine_of_an_async_httpx_client() -> None:
    import httpx

    from census_receiver.starlette import CensusWebhookMiddleware

    async def not_found(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the webhook path must not reach the app")

    seen: list[Event] = []
    receiver = _recording_receiver(seen)
    app = CensusWebhookMiddleware(not_found, receiver=receiver)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response: httpx.Response = await post(
                client,
                "sync.completed",
                secret=SECRET,
                headers={"X-Extra": "1"},
                status="emergency",
            )
            return response

    response = asyncio.run(go())
    receiver.close()
    assert response.status_code == 200
    assert [(e.event, e.raw["status"]) for e in seen] == [("sync.completed", "emergency")]


def test_post_refuses_an_object_without_post() -> None:
    with pytest.raises(TypeError, match="test client with a post method"):
        post(object(), "sync.failed", secret=SECRET)


def test_retry_delays_are_censuss_schedule() -> None:
    assert RETRY_DELAYS == (4, 8, 16, 32, 64)
    assert DEFAULT_PATH == "/webhooks/census"
