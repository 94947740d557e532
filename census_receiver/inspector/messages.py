"""The inspector's requests and responses, and what a request's query says.

No I/O. ``InspectorRequest`` is what an adapter hands the core (method, path
below the mount point, query, headers, body); ``InspectorResponse`` is what it
answers (status, headers, and a body or a ``LiveStream``). Every answer carries
``SECURITY_HEADERS``: a Content-Security-Policy that allows scripts and styles
from the inspector's own files only, ``nosniff``, ``no-referrer``, and no
framing. ``redirect`` and ``plain`` build the two answers that need no page.
The query helpers turn parameters into ids and the list's filters, refusing
anything that is not one with ``ValueError``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..journal import STATUSES

if TYPE_CHECKING:
    from .live import LiveStream

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "FORM_LIMIT",
    "HTML_CONTENT_TYPE",
    "NO_STORE",
    "SECURITY_HEADERS",
    "Auth",
    "InspectorRequest",
    "InspectorResponse",
    "filter_params",
    "int_param",
    "list_filters",
    "page_url",
    "parse_id",
    "plain",
    "redirect",
]

#: A replay form is a few dozen bytes; anything much larger is not one.
FORM_LIMIT = 4096

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: Sent with every answer, static files included.
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-resource-policy", "same-origin"),
)
#: Sent with every answer but the static files.
NO_STORE = ("cache-control", "no-store")
HTML_CONTENT_TYPE = ("content-type", "text/html; charset=utf-8")

#: A user's own check of a request: True lets it in. It runs in a worker thread.
Auth = Callable[["InspectorRequest"], bool]


@dataclass(frozen=True, slots=True)
class InspectorRequest:
    """One request to the inspector, as an adapter hands it over.

    Attributes:
        method: the HTTP method, upper case.
        path: the path below the mount point, starting with ``/`` (empty for the
            mount point itself).
        root: where the inspector is mounted (``""`` at the root, else ``"/inspector"``).
        query: the raw query string.
        headers: the request headers, names in lower case (repeated ones joined
            by ``", "``, cookies by ``"; "``).
        body: the request body (read for POST only, at most ``FORM_LIMIT + 1`` bytes).
        secure: whether the request came over HTTPS (cookies are then ``Secure``).
        raw: the ASGI scope or the WSGI environ, for an ``auth`` callable that
            wants its framework's own request object.
    """

    method: str
    path: str
    root: str = ""
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    secure: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict)

    def param(self, name: str) -> str | None:
        """The first value of query parameter ``name``, or ``None``."""
        values = urllib.parse.parse_qs(self.query, max_num_fields=50).get(name)
        return values[0] if values else None

    def cookie(self, name: str) -> str | None:
        """The value of cookie ``name``, or ``None``."""
        for part in self.headers.get("cookie", "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == name:
                return value
        return None


@dataclass(slots=True)
class InspectorResponse:
    """What to answer: a status, headers, and either a body or a live stream.

    Attributes:
        status: the HTTP status.
        headers: ``(name, value)`` pairs, names in lower case.
        body: the whole body (empty when ``stream`` is set).
        stream: for the live list, the events to send until the client leaves.
    """

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    stream: LiveStream | None = None


def redirect(location: str) -> InspectorResponse:
    """A 303 to ``location``, with no body.

    Args:
        location: where to go, a path the browser resolves against this host.

    Returns:
        The response.
    """
    headers = [("location", location), ("content-length", "0"), NO_STORE, *SECURITY_HEADERS]
    return InspectorResponse(303, headers)


def plain(status: int, text: str, extra: list[tuple[str, str]] | None = None) -> InspectorResponse:
    """A short plain-text answer, ``"{status} {text}"``, for requests that get no page.

    Args:
        status: the HTTP status.
        text: its reason, in words.
        extra: more headers (``allow``, say).

    Returns:
        The response.
    """
    body = f"{status} {text}\n".encode()
    headers = [
        ("content-type", "text/plain; charset=utf-8"),
        ("content-length", str(len(body))),
        NO_STORE,
        *SECURITY_HEADERS,
        *(extra or []),
    ]
    return InspectorResponse(status, headers, body)


def int_param(request: InspectorRequest, name: str) -> int | None:
    """Query parameter ``name`` as an id, or ``None`` when absent or empty.

    Raises:
        ValueError: when it is set to anything but a whole number.
    """
    value = request.param(name)
    if value is None or value == "":
        return None
    number = parse_id(value)
    if number is None:
        raise ValueError(f"{name} must be a whole number, not {value[:40]!r}")
    return number


def parse_id(text: str) -> int | None:
    """``text`` as an id: ASCII digits only (``int`` takes others), within a 64-bit column."""
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        return None
    return int(text)


def list_filters(request: InspectorRequest) -> dict[str, Any]:
    """The list's filters from the query, as ``journal.deliveries`` keywords.

    Raises:
        ValueError: for an unknown status or an id that is not a number.
    """
    status = request.param("status") or None
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    event = (request.param("event") or "").strip() or None
    return {
        "status": status,
        "event": event[:200] if event else None,
        "sync_id": int_param(request, "sync"),
        "sync_run_id": int_param(request, "run"),
    }


_PARAMS = {"status": "status", "event": "event", "sync_id": "sync", "sync_run_id": "run"}


def filter_params(filters: Mapping[str, Any]) -> dict[str, Any]:
    """The filters as query parameters (the ones set only)."""
    return {_PARAMS[k]: v for k, v in filters.items() if v is not None}


def page_url(root: str, path: str, params: Mapping[str, Any]) -> str:
    """The inspector's ``path`` below ``root``, with ``params`` as its query (if any)."""
    query = urllib.parse.urlencode(params)
    return f"{root}{path}?{query}" if query else f"{root}{path}"
