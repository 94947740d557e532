"""parse_event and the typed event models."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from census_receiver import (
    EVENT_TYPES,
    Event,
    MalformedPayload,
    SyncAlertRaised,
    SyncAlertResolved,
    SyncCompleted,
    SyncFailed,
    SyncStarted,
    SyncSuccess,
    SyncTriggered,
    parse_event,
)
from census_receiver.events import event_from_payload
from census_receiver.testing import DOCUMENTED_EXAMPLES

EXPECTED_MODELS = [
    SyncTriggered,
    SyncStarted,
    SyncCompleted,
    SyncCompleted,
    SyncSuccess,
    SyncFailed,
    SyncAlertRaised,
    SyncAlertResolved,
]


def encode(payload: Any) -> bytes:
    return json.dumps(payload).encode()


@pytest.mark.parametrize(
    ("payload", "model"), list(zip(DOCUMENTED_EXAMPLES, EXPECTED_MODELS, strict=True))
)
def test_documented_example_parses_to_its_model(
    payload: dict[str, Any], model: type[Event]
) -> None:
    event = parse_event(encode(payload))
    assert type(event) is model
    assert event.event == payload["event"]
    assert (event.workspace_id, event.sync_id, event.sync_run_id) == (
        payload["workspace_id"],
        payload["sync_id"],
        payload["sync_run_id"],
    )
    assert dict(event.raw) == payload


def test_every_documented_name_has_a_model() -> None:
    assert set(EVENT_TYPES) == {
        "sync.triggered",
        "sync.started",
        "sync.completed",
        "sync.success",
        "sync.failed",
        "sync.alert.raised",
        "sync.alert.resolved",
    }
    assert all(issubclass(cls, Event) and cls.name == name for name, cls in EVENT_TYPES.items())


def test_sync_completed_succeeded_reflects_status() -> None:
    ok, emergency = (parse_event(encode(p)) for p in DOCUMENTED_EXAMPLES[2:4])
    assert isinstance(ok, SyncCompleted) and isinstance(emergency, SyncCompleted)
    assert ok.status == "ok" and ok.succeeded
    assert emergency.status == "emergency" and not emergency.succeeded


def test_alert_fields_are_typed_attributes() -> None:
    event = parse_event(encode(DOCUMENTED_EXAMPLES[6]))
    assert isinstance(event, SyncAlertRaised)
    assert event.alert_instance_id == 626248
    assert event.alert_type == "FailureAlertConfiguration"
    assert event.message == "Sync Failed"
    assert event.details is not None and event.details.startswith("Sync has failed")
    assert (
        event.followup_url == "https://app.getcensus.com/workspaces/3167/syncs/3167956/sync-history"
    )


def test_events_are_frozen_and_raw_is_read_only() -> None:
    event = parse_event(encode(DOCUMENTED_EXAMPLES[0]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.sync_id = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        event.raw["sync_id"] = 1  # type: ignore[index]


def test_events_are_hashable_and_compare_by_value() -> None:
    a = parse_event(encode(DOCUMENTED_EXAMPLES[5]))
    b = parse_event(encode(DOCUMENTED_EXAMPLES[5]))
    assert a == b and hash(a) == hash(b)
    assert a != parse_event(encode({**DOCUMENTED_EXAMPLES[5], "extra": 1}))


def test_repr_leaves_out_raw() -> None:
    event = parse_event(encode({**DOCUMENTED_EXAMPLES[5], "note": "long text"}))
    assert "long text" not in repr(event)


def test_key_order_does_not_matter() -> None:
    payload = dict(reversed(list(DOCUMENTED_EXAMPLES[2].items())))
    assert parse_event(encode(payload)) == parse_event(encode(DOCUMENTED_EXAMPLES[2]))


def test_unknown_fields_are_kept_in_raw() -> None:
    event = parse_event(encode({**DOCUMENTED_EXAMPLES[4], "new_field": [1, 2]}))
    assert event.raw["new_field"] == [1, 2]


def test_unknown_event_name_parses_as_plain_event() -> None:
    event = parse_event(
        b'{"event": "sync.paused", "workspace_id": 1, "sync_id": 2, "sync_run_id": 3}'
    )
    assert type(event) is Event
    assert (event.event, event.workspace_id, event.sync_id, event.sync_run_id) == (
        "sync.paused",
        1,
        2,
        3,
    )


def test_unknown_event_name_without_ids_parses_leniently() -> None:
    event = parse_event(b'{"event": "workspace.updated", "sync_id": "abc"}')
    assert type(event) is Event
    assert event.workspace_id is None and event.sync_id is None and event.sync_run_id is None
    assert event.raw["sync_id"] == "abc"


def test_missing_optional_fields_are_none() -> None:
    event = parse_event(
        b'{"event": "sync.alert.raised", "workspace_id": 1, "sync_id": 2, "sync_run_id": 3}'
    )
    assert isinstance(event, SyncAlertRaised)
    assert event.alert_type is None and event.alert_instance_id is None


@pytest.mark.parametrize("field", ["workspace_id", "sync_id", "sync_run_id"])
def test_documented_event_without_id_names_the_field(field: str) -> None:
    payload = {k: v for k, v in DOCUMENTED_EXAMPLES[5].items() if k != field}
    with pytest.raises(MalformedPayload, match=f"no '{field}' field"):
        parse_event(encode(payload))


@pytest.mark.parametrize("value", ["3167", 3167.0, True, None, [1]])
def test_documented_event_with_mistyped_id_names_the_field(value: object) -> None:
    payload = {**DOCUMENTED_EXAMPLES[5], "sync_id": value}
    with pytest.raises(MalformedPayload, match="'sync_id' field must be an integer"):
        parse_event(encode(payload))


def test_mistyped_optional_field_names_the_field() -> None:
    with pytest.raises(MalformedPayload, match="'status' field must be a string"):
        parse_event(encode({**DOCUMENTED_EXAMPLES[2], "status": 1}))
    with pytest.raises(MalformedPayload, match="'alert_instance_id' field must be an integer"):
        parse_event(encode({**DOCUMENTED_EXAMPLES[6], "alert_instance_id": "626248"}))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"[]", "must be a JSON object, not an array"),
        (b'"sync.failed"', "not a string"),
        (b"null", "not null"),
        (b"true", "not a boolean"),
        (b"12", "not a number"),
        (b"{}", "no 'event' field"),
        (b'{"event": 7}', "'event' field must be a string"),
        (b'{"event": null}', "no 'event' field"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b'\xef\xbb\xbf{"event": "x"}', "not valid JSON"),
        (b'{"event": "x", "a": NaN}', "NaN"),
        (b'{"event": "x", "a": -Infinity}', "-Infinity"),
        (b'{"event": "x", "a": 1e400}', "too large for a float"),
        (b'{"event": "x", "a": ' + b"9" * 5000 + b"}", "number is too long"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"event": "x", "event": "y"}', "repeats the key 'event'"),
        (b'{"event": "x", "d": {"k": 1, "k": 2}}', "repeats the key 'k'"),
        (b'{"event": "x:y", "d": {"k": 1, "k": 2}}', "repeats the key 'k'"),
        (b'{"event": "x", "a": 1, "a": 2}', "repeats the key 'a'"),
    ],
)
def test_malformed_payload_is_refused_with_reason(body: bytes, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        parse_event(body)


class _Object(list[tuple[str, Any]]):
    """A JSON object as its written pairs, so that a key may repeat."""


def _dump(value: object) -> str:
    if isinstance(value, _Object):
        return "{" + ", ".join(f"{json.dumps(k)}: {_dump(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_dump(v) for v in value) + "]"
    return json.dumps(value)


class _Repeated(Exception):
    pass


def _strict_reference(text: str) -> object:
    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in pairs}) != len(pairs):
            raise _Repeated
        return dict(pairs)

    return json.loads(text, object_pairs_hook=pairs_hook)


# Keys and strings with colons, braces and quotes: what could fool a shortcut that
# counts colons to rule out a repeated key.
_texts = st.sampled_from(["event", "a", "b", "a:b", ":", '"}:{"', "k"])
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | _texts,
    lambda children: (
        st.lists(children, max_size=3)
        | st.lists(st.tuples(_texts, children), max_size=4).map(_Object)
    ),
    max_leaves=12,
)


@given(pairs=st.lists(st.tuples(_texts, _json_values), max_size=5))
def test_a_repeated_key_is_refused_at_any_depth_and_nothing_else(
    pairs: list[tuple[str, Any]],
) -> None:
    text = _dump(_Object([("event", "sync.x"), *pairs]))
    try:
        expected = _strict_reference(text)
    except _Repeated:
        with pytest.raises(MalformedPayload, match="repeats the key"):
            parse_event(text.encode())
        return
    assert isinstance(expected, dict)
    assert dict(parse_event(text.encode()).raw) == expected


def test_malformed_payload_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="JSON"):
        parse_event(b"not json")


def test_messages_clip_long_payload_text() -> None:
    key = "k" * 10_000
    with pytest.raises(MalformedPayload) as info:
        parse_event(
            encode({"event": "x"}).replace(
                b"{", b'{"%s": 1, "%s": 2, ' % (key.encode(), key.encode()), 1
            )
        )
    assert len(str(info.value)) < 120


def test_event_from_payload_builds_models_from_mappings() -> None:
    event = event_from_payload(DOCUMENTED_EXAMPLES[5])
    assert isinstance(event, SyncFailed) and event.sync_run_id == 324402082


def test_parse_event_accepts_text() -> None:
    assert parse_event(json.dumps(DOCUMENTED_EXAMPLES[0])).event == "sync.triggered"
