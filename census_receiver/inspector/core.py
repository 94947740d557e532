"""The inspector's request handling, written once: a request in, a response out.

No sockets and no web framework. ``InspectorCore.handle`` takes an
``InspectorRequest`` (method, path below the mount point, query, headers, body)
and returns an ``InspectorResponse`` (status, headers, and a body or a
``LiveStream``). It reads the journal and, for replay, runs the receiver; those
calls block, so the ASGI app makes them in a worker thread. ``Inspector`` (ASGI)
and ``WSGIInspector`` are cores that also move bytes: each adds only ``__call__``.

This module routes each request: static files first (public), then the
credentials and the ``?token=`` exchange, then the views, and renders the pages
they answer with. The rest lives beside it, and its public names are
re-exported here: the request and response types in ``messages``, the
credentials and the CSRF checks (the security model, point by point) in
``security``, the pages in ``views`` and the live list in ``live``.
"""

from __future__ import annotations

import importlib.resources
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import ConfigurationError
from ..journal import Journal, JournalUnavailable
from ..receiver import check_receiver
from . import views
from .live import LiveStream, live
from .messages import (
    CONTENT_SECURITY_POLICY,
    FORM_LIMIT,
    HTML_CONTENT_TYPE,
    NO_STORE,
    SECURITY_HEADERS,
    Auth,
    InspectorRequest,
    InspectorResponse,
    parse_id,
    plain,
    redirect,
)
from .pages import Pages
from .security import CSRF_COOKIE, CSRF_FIELD, SESSION_COOKIE, Credentials
from .views import PAGE, RUNS_PER_SYNC, SYNCS_SHOWN

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..receiver import WebhookReceiver

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "COUNTS_TTL",
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "FORM_LIMIT",
    "PAGE",
    "RUNS_PER_SYNC",
    "SECURITY_HEADERS",
    "SESSION_COOKIE",
    "SYNCS_SHOWN",
    "Auth",
    "InspectorCore",
    "InspectorRequest",
    "InspectorResponse",
    "LiveStream",
]

#: Seconds the status counts in the page header are reused: counting reads every
#: row's index entry, the one cost of a page that grows with the journal.
COUNTS_TTL = 5.0

_STATIC_TYPES = {"css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8"}
#: The views of a path with no id in it.
_VIEWS: dict[str, Callable[[InspectorCore, InspectorRequest], InspectorResponse]] = {
    "/": views.deliveries,
    "/live": live,
    "/rejections": views.rejections,
    "/runs": views.runs,
}


class InspectorCore:
    """The inspector's routes, credentials and pages, with no I/O of its own.

    ``Inspector`` and ``WSGIInspector`` are cores that add only ``__call__``,
    which moves a request's bytes to ``handle`` and its answer back. A core
    refuses to be built without credentials.

    Args:
        journal: the journal to show.
        receiver: the receiver recording to ``journal``; without it there is no
            replay button.
        token: a secret whose holder may look: ``Authorization: Bearer TOKEN``,
            or the page's URL with ``?token=TOKEN`` once (it sets a cookie).
        auth: your own check: called with an ``InspectorRequest`` (headers,
            cookies, and ``raw``, the ASGI scope or the WSGI environ) in a worker
            thread under ASGI; ``True`` lets the request in. Either ``token`` or
            ``auth`` suffices.
        live_interval: seconds between the live list's looks at the journal.

    Raises:
        ConfigurationError: with neither ``token`` nor ``auth``, an empty token,
            a ``journal`` that is not a ``Journal``, a receiver that records to
            another journal, or a ``live_interval`` not within (0, 60] seconds.
        ImportError: without Jinja2: ``pip install 'census-receiver[inspector]'``.
    """

    def __init__(
        self,
        journal: Journal,
        *,
        receiver: WebhookReceiver | None = None,
        token: str | bytes | None = None,
        auth: Auth | None = None,
        live_interval: float = 0.5,
    ) -> None:
        if not isinstance(journal, Journal):
            raise ConfigurationError(
                f"journal must be a Journal (SQLiteJournal, PostgresJournal), "
                f"not {type(journal).__name__}"
            )
        if receiver is not None:
            check_receiver(receiver)
            if receiver.journal is not journal:
                raise ConfigurationError(
                    "the receiver records to another journal than the one shown: "
                    "pass the journal given to WebhookReceiver(..., journal=journal)"
                )
        if token is None and auth is None:
            raise ConfigurationError(
                "the inspector shows payloads and can replay deliveries, so it needs "
                "credentials: pass token=secrets.token_urlsafe(32), or auth=your_check"
            )
        if token is not None and (not isinstance(token, str | bytes) or not token):
            raise ConfigurationError("token must be a non-empty str or bytes")
        if auth is not None and not callable(auth):
            raise ConfigurationError(f"auth must be callable, not {type(auth).__name__}")
        if isinstance(live_interval, bool) or not isinstance(live_interval, int | float):
            raise ConfigurationError("live_interval must be a number of seconds")
        if not 0 < live_interval <= 60:
            raise ConfigurationError(f"live_interval must be within (0, 60] s, not {live_interval}")
        self.journal = journal
        self.receiver = receiver
        self.auth = auth
        self.live_interval = live_interval
        self.credentials = Credentials(token, auth)
        self._closed = threading.Event()
        self._counts: tuple[float, dict[str, int]] = (-COUNTS_TTL, {})
        self.pages = Pages(version=__version__)
        self._static = {
            name: (_read_static(name), _STATIC_TYPES[name.rpartition(".")[2]])
            for name in ("inspector.css", "inspector.js")
        }

    def close(self) -> None:
        """End every live stream within one poll (call when the server stops)."""
        self._closed.set()

    def counts(self, *, fresh: bool = False) -> dict[str, int]:
        """How many deliveries have each status, at most ``COUNTS_TTL`` seconds old.

        Args:
            fresh: count now (the live stream does when rows arrive).

        Raises:
            JournalUnavailable: when the database fails.
        """
        at, counts = self._counts
        now = time.monotonic()
        if fresh or now - at >= COUNTS_TTL:
            counts = self.journal.counts()
            self._counts = (now, counts)
        return counts

    def forget_counts(self) -> None:
        """Count afresh for the next page (a replay changed a status)."""
        self._counts = (-COUNTS_TTL, {})

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed.is_set()

    def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds``, or until ``close`` is called."""
        self._closed.wait(seconds)

    # -- entry point --------------------------------------------------------------------

    def handle(self, request: InspectorRequest) -> InspectorResponse:
        """Answer one request (blocking: it may read the journal or run a replay).

        Args:
            request: the request.

        Returns:
            The response; its ``stream`` is set for the live list.
        """
        path = request.path
        if path.startswith("/static/"):
            return self._static_file(request, path.removeprefix("/static/"))
        if request.method not in ("GET", "HEAD", "POST"):
            return plain(405, "method not allowed", [("allow", "GET, HEAD, POST")])
        if request.method == "POST" and not _is_page(path):
            # A POST to no page of ours (say, a webhook delivery sent to a wrong
            # path) is not here, whoever asks: nothing is revealed by saying so.
            return plain(404, "not found")
        token = request.param("token")
        credentials = self.credentials
        if token is not None and credentials.has_token and request.method in ("GET", "HEAD"):
            return self._exchange(request, token)
        if not credentials.authorized(request):
            return self._unauthorized(request)
        if path == "":
            return redirect(f"{request.root}/")
        try:
            response = self._route(request)
        except JournalUnavailable:
            response = self.error(request, 503, "The journal's database cannot be read now.")
        if request.method == "HEAD":
            response.body = b""
            response.stream = None
        return response

    def _route(self, request: InspectorRequest) -> InspectorResponse:
        path, method = request.path, request.method
        parts = path.strip("/").split("/")
        delivery_id = parse_id(parts[1]) if len(parts) in (2, 3) else None
        if parts[0] == "deliveries" and delivery_id is not None:
            if len(parts) == 3 and parts[2] == "replay":
                if method != "POST":
                    return plain(405, "method not allowed", [("allow", "POST")])
                return views.replay(self, request, delivery_id)
            if len(parts) == 2:
                return self._get_only(request) or views.delivery(self, request, delivery_id)
        view = _VIEWS.get(path)
        if view is None:
            return self.error(request, 404, "Nothing is shown at this address.")
        return self._get_only(request) or view(self, request)

    def _get_only(self, request: InspectorRequest) -> InspectorResponse | None:
        if request.method == "POST":
            return plain(405, "method not allowed", [("allow", "GET, HEAD")])
        return None

    # -- credentials --------------------------------------------------------------------

    def _exchange(self, request: InspectorRequest, token: str) -> InspectorResponse:
        """``?token=``: set the session cookie and redirect to the URL without it."""
        if not self.credentials.matches_token(token):
            return self._unauthorized(request)
        kept = [
            (name, value)
            for name, value in urllib.parse.parse_qsl(request.query, max_num_fields=50)
            if name != "token"
        ]
        location = f"{request.root}{request.path or '/'}"
        if kept:
            location += "?" + urllib.parse.urlencode(kept)
        response = redirect(location)
        response.headers.append(("set-cookie", self.credentials.session_cookie(request)))
        return response

    def _unauthorized(self, request: InspectorRequest) -> InspectorResponse:
        body = self.pages.render("unauthorized.html", root=request.root).encode()
        headers = [HTML_CONTENT_TYPE, NO_STORE, *SECURITY_HEADERS]
        if self.credentials.has_token:
            headers.append(("www-authenticate", 'Bearer realm="census-inspector"'))
        return InspectorResponse(401, headers, body)

    # -- answers ------------------------------------------------------------------------

    def _static_file(self, request: InspectorRequest, name: str) -> InspectorResponse:
        found = self._static.get(name)
        if found is None or request.method not in ("GET", "HEAD"):
            return plain(404, "not found")
        body, kind = found
        headers = [
            ("content-type", kind),
            ("content-length", str(len(body))),
            ("cache-control", "max-age=86400"),
            *SECURITY_HEADERS,
        ]
        return InspectorResponse(200, headers, b"" if request.method == "HEAD" else body)

    def page(self, request: InspectorRequest, template: str, **context: Any) -> InspectorResponse:
        """A page: ``template`` rendered with ``context``, the status counts and the CSRF token.

        Raises:
            JournalUnavailable: when the database fails (counting).
        """
        csrf, set_cookie = self.credentials.csrf_token(request)
        counts = self.counts()
        html = self.pages.render(
            template, root=request.root, counts=counts, csrf=csrf, csrf_field=CSRF_FIELD, **context
        )
        body = html.encode()
        headers = [
            HTML_CONTENT_TYPE,
            ("content-length", str(len(body))),
            NO_STORE,
            *SECURITY_HEADERS,
        ]
        if set_cookie is not None:
            headers.append(("set-cookie", set_cookie))
        return InspectorResponse(200, headers, body)

    def error(self, request: InspectorRequest, status: int, message: str) -> InspectorResponse:
        """An error page with ``status``, saying ``message``."""
        body = self.pages.render(
            "error.html", root=request.root, status=status, message=message
        ).encode()
        headers = [
            HTML_CONTENT_TYPE,
            ("content-length", str(len(body))),
            NO_STORE,
            *SECURITY_HEADERS,
        ]
        return InspectorResponse(status, headers, body)


def _read_static(name: str) -> bytes:
    return (importlib.resources.files(__package__) / "static" / name).read_bytes()


def _is_page(path: str) -> bool:
    """Whether ``path`` is one of the inspector's pages (views, a delivery, its replay)."""
    if path == "" or path in _VIEWS:
        return True
    parts = path.strip("/").split("/")
    return parts[0] == "deliveries" and (
        len(parts) == 2 or (len(parts) == 3 and parts[2] == "replay")
    )
