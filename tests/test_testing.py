"""census_receiver.testing: payload factories and signing helpers."""

from __future__ import annotations

import json

import pytest

from census_receiver import EVENT_TYPES, WebhookReceiver, compute_signature, parse_event
from census_receiver.testing import (
    DOCUMENTED_EXAMPLES,
    EVENT_NAMES,
    make_body,
    make_delivery,
    make_payload,
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
