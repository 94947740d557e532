"""Helpers for testing code that receives Census webhooks; no pytest needed.

No I/O, no web framework. Build realistic payloads for every documented event,
sign them exactly as Census does, and get the body and headers to post through
any test client::

    from census_receiver.testing import make_delivery

    delivery = make_delivery("sync.failed", secret="s3cret", sync_id=42)
    response = client.post("/webhooks/census", content=delivery.body,
                           headers=delivery.headers)

or let ``post`` pick the right keyword for the client (Starlette, FastAPI and
httpx clients take ``content=``, Flask and Werkzeug ones ``data=``)::

    response = post(client, "sync.failed", secret="s3cret", sync_id=42)

The pytest fixtures in ``census_receiver.pytest_plugin`` wrap these.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .events import EVENT_TYPES
from .receiver import DEFAULT_PATH
from .signature import compute_signature

if TYPE_CHECKING:
    from ._types import Secret

__all__ = [
    "DEFAULT_PATH",
    "DOCUMENTED_EXAMPLES",
    "EVENT_NAMES",
    "RETRY_DELAYS",
    "Delivery",
    "make_body",
    "make_delivery",
    "make_payload",
    "post",
    "sign",
    "signed_headers",
]

#: The seven documented event names, in Census's documentation order.
EVENT_NAMES: tuple[str, ...] = tuple(EVENT_TYPES)

#: Where the adapters and ``census-receiver serve`` listen unless told otherwise.

#: Census's retry schedule: seconds of delay before retries 1 to 5 of a delivery
#: that was not answered 2xx in time.
RETRY_DELAYS: tuple[float, ...] = (4.0, 8.0, 16.0, 32.0, 64.0)

_IDS = {"workspace_id": 3167, "sync_id": 3167956, "sync_run_id": 324399613}
_FAILED_RUN = 324402082
_ALERT_RAISED = {
    "alert_instance_id": 626248,
    "alert_type": "FailureAlertConfiguration",
    "message": "Sync Failed",
    "details": "Sync has failed with error: A mapped source column has been deleted: email",
    "followup_url": "https://app.getcensus.com/workspaces/3167/syncs/3167956/sync-history",
}
_ALERT_RESOLVED = {**_ALERT_RAISED, "message": "Sync Recovered", "details": "Sync has recovered"}

#: Census's documented example payloads, key order as documented (``event`` last).
DOCUMENTED_EXAMPLES: tuple[Mapping[str, Any], ...] = (
    {**_IDS, "event": "sync.triggered"},
    {**_IDS, "event": "sync.started"},
    {**_IDS, "event": "sync.completed", "status": "ok"},
    {**_IDS, "sync_run_id": _FAILED_RUN, "event": "sync.completed", "status": "emergency"},
    {**_IDS, "event": "sync.success"},
    {**_IDS, "sync_run_id": _FAILED_RUN, "event": "sync.failed"},
    {**_IDS, "sync_run_id": _FAILED_RUN, **_ALERT_RAISED, "event": "sync.alert.raised"},
    {**_IDS, "sync_run_id": _FAILED_RUN, **_ALERT_RESOLVED, "event": "sync.alert.resolved"},
)

_DEFAULTS: dict[str, Mapping[str, Any]] = {}
for _example in DOCUMENTED_EXAMPLES:
    _DEFAULTS.setdefault(_example["event"], _example)


def make_payload(event: str, **fields: Any) -> dict[str, Any]:
    """A realistic payload for ``event``, as Census documents it, with ``fields`` overriding.

    Args:
        event: any event name; undocumented names get only the three ids.
        **fields: fields to set or replace (``sync_id=42``, ``status="emergency"``);
            a value of ``None`` removes the field.

    Returns:
        A new dict, ``event`` last as in Census's examples.
    """
    payload = {k: v for k, v in _DEFAULTS.get(event, _IDS).items() if k != "event"}
    payload.update(fields)
    payload["event"] = event
    return {k: v for k, v in payload.items() if v is not None}


def make_body(event: str, **fields: Any) -> bytes:
    """``make_payload`` encoded as the JSON bytes Census would send."""
    return json.dumps(make_payload(event, **fields)).encode("utf-8")


def sign(body: bytes | str, secret: Secret) -> str:
    """The ``X-Signature`` Census would send for ``body`` (a ``str`` body is UTF-8 encoded)."""
    return compute_signature(body.encode("utf-8") if isinstance(body, str) else body, secret)


def signed_headers(body: bytes | str, secret: Secret) -> dict[str, str]:
    """Headers of a Census delivery of ``body``: JSON content type and ``X-Signature``."""
    return {"Content-Type": "application/json", "X-Signature": sign(body, secret)}


@dataclass(frozen=True, slots=True)
class Delivery:
    """A ready-to-post delivery: the exact body and its headers."""

    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def payload(self) -> dict[str, Any]:
        """The body, decoded."""
        decoded: dict[str, Any] = json.loads(self.body)
        return decoded


def make_delivery(
    event: str, *, secret: Secret, bad_signature: bool = False, **fields: Any
) -> Delivery:
    """A signed delivery of ``event``.

    Args:
        event: the event name.
        secret: the secret to sign with.
        bad_signature: sign with a different secret, to test the 401 path.
        **fields: payload overrides, as for ``make_payload``.

    Returns:
        The body and its headers.
    """
    body = make_body(event, **fields)
    key = secret if not bad_signature else _other_secret(secret)
    return Delivery(body, signed_headers(body, key))


def post(
    client: Any,
    event: str,
    *,
    secret: Secret,
    path: str = DEFAULT_PATH,
    bad_signature: bool = False,
    headers: Mapping[str, str] | None = None,
    **fields: Any,
) -> Any:
    """Post a signed delivery of ``event`` to an app through its own test client.

    Works with Starlette's and FastAPI's ``TestClient`` and with ``httpx.Client``
    (the body goes as ``content=``; an ``httpx.AsyncClient`` gives a coroutine to
    await), and with Flask's and Werkzeug's test clients (``data=``).

    Args:
        client: the test client.
        event: the event name.
        secret: the secret to sign with (the one the app's receiver uses).
        path: the webhook path.
        bad_signature: sign with a different secret, to test the 401 path.
        headers: extra request headers, sent along with the signed ones.
        **fields: payload overrides, as for ``make_payload``.

    Returns:
        Whatever the client's ``post`` returns: its response.

    Raises:
        TypeError: if ``client`` has no ``post`` method.
    """
    poster = getattr(client, "post", None)
    if not callable(poster):
        raise TypeError(
            f"post() needs a test client with a post method, not {type(client).__name__}"
        )
    delivery = make_delivery(event, secret=secret, bad_signature=bad_signature, **fields)
    all_headers = {**delivery.headers, **(headers or {})}
    # Werkzeug's Client.post sends raw bytes given as data=; httpx (under Starlette's
    # TestClient too) deprecates raw data= and wants content=. Tell them apart by
    # module name, so no framework is imported here.
    if any(cls.__module__.split(".")[0] == "werkzeug" for cls in type(client).__mro__):
        return poster(path, data=delivery.body, headers=all_headers)
    return poster(path, content=delivery.body, headers=all_headers)


def _other_secret(secret: Secret) -> bytes:
    raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    return b"not-" + raw
