"""Typed Census events and the parser that builds them from a verified body.

No I/O, no web framework. ``parse_event`` turns the bytes of an already verified
delivery into a frozen ``Event`` (or one of its subclasses for the seven
documented event names), or raises ``MalformedPayload`` naming what is wrong.

JSON is read strictly, because a signature vouches for bytes, not for what a
lenient parser makes of them: the body must be UTF-8 and one JSON object;
duplicate keys (which parsers resolve differently), ``NaN``/``Infinity`` and
numbers that overflow a float are refused rather than guessed at.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from ._frozen import fast_init
from .errors import MalformedPayload

if TYPE_CHECKING:
    from ._types import Body

__all__ = [
    "EVENT_TYPES",
    "Event",
    "SyncAlertRaised",
    "SyncAlertResolved",
    "SyncCompleted",
    "SyncFailed",
    "SyncStarted",
    "SyncSuccess",
    "SyncTriggered",
    "event_from_payload",
    "parse_event",
]

_IDS = ("workspace_id", "sync_id", "sync_run_id")


@dataclass(frozen=True, slots=True)
class Event:
    """A verified Census delivery.

    Documented event names get a subclass; any other name (Census may add some)
    is a plain ``Event``, whose ids are ``None`` when the payload lacks them.

    Attributes:
        event: the event name, e.g. ``"sync.failed"``.
        workspace_id: the Census workspace.
        sync_id: the sync.
        sync_run_id: the sync run.
        raw: the whole decoded payload, read-only, unknown fields included.
    """

    name: ClassVar[str | None] = None

    event: str
    workspace_id: int | None
    sync_id: int | None
    sync_run_id: int | None
    raw: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), repr=False, hash=False
    )


@dataclass(frozen=True, slots=True)
class _SyncEvent(Event):
    """A documented event: the three ids are always present integers."""

    workspace_id: int
    sync_id: int
    sync_run_id: int


@dataclass(frozen=True, slots=True)
class SyncTriggered(_SyncEvent):
    """``sync.triggered``: a sync run was queued."""

    name: ClassVar[str | None] = "sync.triggered"


@dataclass(frozen=True, slots=True)
class SyncStarted(_SyncEvent):
    """``sync.started``: active work on the run started."""

    name: ClassVar[str | None] = "sync.started"


@dataclass(frozen=True, slots=True)
class SyncCompleted(_SyncEvent):
    """``sync.completed``: the run finished, successfully or not.

    Attributes:
        status: ``"ok"`` when the run succeeded, ``"emergency"`` when it failed
            (``None`` if Census left it out).
    """

    name: ClassVar[str | None] = "sync.completed"

    status: str | None = None

    @property
    def succeeded(self) -> bool:
        """Whether the run succeeded (``status == "ok"``)."""
        return self.status == "ok"


@dataclass(frozen=True, slots=True)
class SyncSuccess(_SyncEvent):
    """``sync.success``: the run finished successfully."""

    name: ClassVar[str | None] = "sync.success"


@dataclass(frozen=True, slots=True)
class SyncFailed(_SyncEvent):
    """``sync.failed``: the run failed."""

    name: ClassVar[str | None] = "sync.failed"


@dataclass(frozen=True, slots=True)
class _SyncAlert(_SyncEvent):
    """Fields shared by the two alert events (each ``None`` if Census left it out)."""

    alert_instance_id: int | None = None
    alert_type: str | None = None
    message: str | None = None
    details: str | None = None
    followup_url: str | None = None


@dataclass(frozen=True, slots=True)
class SyncAlertRaised(_SyncAlert):
    """``sync.alert.raised``: a subscribed sync alert was triggered."""

    name: ClassVar[str | None] = "sync.alert.raised"


@dataclass(frozen=True, slots=True)
class SyncAlertResolved(_SyncAlert):
    """``sync.alert.resolved``: a subscribed sync alert was resolved."""

    name: ClassVar[str | None] = "sync.alert.resolved"


#: The model for each documented event name.
EVENT_TYPES: Mapping[str, type[Event]] = MappingProxyType(
    {
        cls.name: cls
        for cls in (
            SyncTriggered,
            SyncStarted,
            SyncCompleted,
            SyncSuccess,
            SyncFailed,
            SyncAlertRaised,
            SyncAlertResolved,
        )
        if cls.name is not None
    }
)

# Optional fields of each model and the JSON type each must have when present.
_EXTRA_FIELDS: dict[type[Event], tuple[tuple[str, type], ...]] = {
    SyncCompleted: (("status", str),),
    SyncAlertRaised: (
        ("alert_instance_id", int),
        ("alert_type", str),
        ("message", str),
        ("details", str),
        ("followup_url", str),
    ),
}
_EXTRA_FIELDS[SyncAlertResolved] = _EXTRA_FIELDS[SyncAlertRaised]

# Per event name: a constructor of its model, and the model's optional fields.
# Events are built on every delivery: fast_init skips the frozen dataclass's
# per-field guard (see its docstring); the bench's must-reach figures
# for the middlewares are missed without it.
_MODELS: dict[str, tuple[Callable[..., Event], tuple[tuple[str, type], ...]]] = {
    name: (fast_init(cls), _EXTRA_FIELDS.get(cls, ())) for name, cls in EVENT_TYPES.items()
}
_build_event = fast_init(Event)

_JSON_TYPE_NAMES = {int: "an integer", str: "a string"}


def _clip(text: str, limit: int = 40) -> str:
    """``repr`` of payload text for a message, cut short: answers must stay small."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _is_int(value: object) -> bool:
    # bool is an int subclass, but `true` is not an id.
    return type(value) is int


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise MalformedPayload(f"the payload repeats the key {_clip(key)}")
            seen.add(key)
    return obj


def _refuse_constant(name: str) -> Any:
    raise MalformedPayload(f"the payload contains {name}, which is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise MalformedPayload("the payload contains a number too large for a float")
    return value


_decoder = json.JSONDecoder(
    object_pairs_hook=_unique_keys,
    parse_constant=_refuse_constant,
    parse_float=_finite_float,
)
# The same checks, but objects built in C: it cannot see a repeated key, so
# parse_event trusts it only where no key can repeat (see there).
_fast_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder(  # type: ignore[attr-defined]
    parse_constant=_refuse_constant, parse_float=_finite_float
).scan_once


def event_from_payload(payload: Mapping[str, Any]) -> Event:
    """Build the typed event for an already decoded payload.

    Args:
        payload: the JSON object Census sent (copied: later changes to it do not
            reach the event).

    Returns:
        The model for its ``event`` name, or a plain ``Event`` for unknown names.

    Raises:
        MalformedPayload: if ``event`` is missing or not a string, or a documented
            event lacks an integer id, or a known field has the wrong type.
    """
    return _event_from(dict(payload))


def _event_from(payload: dict[str, Any]) -> Event:
    """``event_from_payload`` for a dict that nobody else holds (no copy)."""
    name = payload.get("event")
    if type(name) is not str:
        if name is None:
            raise MalformedPayload("the payload has no 'event' field")
        raise MalformedPayload("the payload's 'event' field must be a string")
    raw = MappingProxyType(payload)
    get = payload.get
    workspace_id, sync_id, sync_run_id = get("workspace_id"), get("sync_id"), get("sync_run_id")
    model = _MODELS.get(name)
    if model is None:
        return _build_event(
            name,
            workspace_id if type(workspace_id) is int else None,
            sync_id if type(sync_id) is int else None,
            sync_run_id if type(sync_run_id) is int else None,
            raw,
        )
    # `type(...) is int`: bool is an int subclass, but `true` is not an id.
    if not (type(workspace_id) is int and type(sync_id) is int and type(sync_run_id) is int):
        for key in _IDS:
            if not _is_int(payload.get(key)):
                if key not in payload:
                    raise MalformedPayload(f"the {_clip(name)} payload has no {key!r} field")
                raise MalformedPayload(
                    f"the {_clip(name)} payload's {key!r} field must be an integer"
                )
    build, extra_fields = model
    if not extra_fields:
        return build(name, workspace_id, sync_id, sync_run_id, raw)
    extras = []
    for key, kind in extra_fields:
        value = get(key)
        if value is not None and (type(value) is not kind):
            raise MalformedPayload(
                f"the {_clip(name)} payload's {key!r} field must be {_JSON_TYPE_NAMES[kind]}"
            )
        extras.append(value)
    return build(name, workspace_id, sync_id, sync_run_id, raw, *extras)


def parse_event(body: Body | str) -> Event:
    """Decode a verified delivery body into its typed event.

    Args:
        body: the exact bytes that were verified (or their text).

    Returns:
        The model for the payload's ``event`` name, or a plain ``Event``.

    Raises:
        MalformedPayload: if the body is not UTF-8, not a single JSON object, uses
            duplicate keys or non-finite numbers, or fails ``event_from_payload``.
    """
    try:
        if type(body) is bytes:
            text = body.decode()  # the usual case; str(body, "utf-8") costs twice as much
        else:
            text = body if isinstance(body, str) else str(body, "utf-8")
    except UnicodeDecodeError:
        raise MalformedPayload("the payload is not valid UTF-8") from None
    try:
        # The C scanner alone is about twice as fast as JSONDecoder.decode, whose
        # extra work is skipping surrounding whitespace and refusing trailing data;
        # and building objects in C, without the hook that refuses repeated keys,
        # is faster again. That is sound when the text has exactly as many colons
        # as the top object has keys: every key is followed by one colon outside
        # strings, so no object can repeat a key, nor can another object have one.
        # Anything else (trailing data, a colon in a string, nested objects, a
        # repeated key) takes the strict full path, which gives the precise error.
        try:
            payload, end = _fast_scan(text, 0)
        except StopIteration:
            end = -1
        if end != len(text) or text.count(":") != (len(payload) if type(payload) is dict else 0):
            payload = _decoder.decode(text)
    except MalformedPayload:
        raise
    except RecursionError:
        raise MalformedPayload("the payload is nested too deeply") from None
    except ValueError as exc:
        # JSONDecodeError, and int() refusing a number with thousands of digits.
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "a number is too long"
        raise MalformedPayload(f"the payload is not valid JSON: {reason}") from None
    if type(payload) is not dict:
        raise MalformedPayload(f"the payload must be a JSON object, not {_json_kind(payload)}")
    return _event_from(payload)


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"
