"""The inspector's request handling, written once: a request in, a response out.

No sockets and no web framework. ``InspectorCore.handle`` takes an
``InspectorRequest`` (method, path below the mount point, query, headers, body)
and returns an ``InspectorResponse`` (status, headers, and a body or a
``LiveStream``). It reads the journal and, for replay, runs the receiver; those
calls block, so the ASGI app makes them in a worker thread. ``Inspector`` (ASGI)
and ``WSGIInspector`` only move bytes; what they share, the core they hand each
request to and ``close``, is ``InspectorApp``.

Security, in the order a request meets it:

- ``/static/...`` (the package's own CSS and JS, no data) is public.
- Everything else needs credentials: the token, as ``Authorization: Bearer``
  or as the cookie that ``?token=`` sets once (HttpOnly, SameSite=Strict)
  before redirecting to the same URL without it; or the user's ``auth``
  callable saying yes. Without them: 401 and no data.
- Replay is a POST that must come from the same origin (``Sec-Fetch-Site``,
  or ``Origin`` against ``Host`` from a browser too old to send it) and carry
  the page's CSRF token: an HMAC of
  the token, or with ``auth`` alone a random value also kept in a cookie
  (double submit). Otherwise: 403, nothing run.
- Every answer carries a Content-Security-Policy that allows scripts and
  styles from the inspector's own files only (no inline script, no inline
  style), ``nosniff``, ``no-referrer`` and ``no-store``; every value taken
  from a payload is HTML-escaped by the templates.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.resources
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import ConfigurationError
from ..journal import STATUSES, Journal, JournalUnavailable
from ..receiver import check_receiver
from .pages import Pages

if TYPE_CHECKING:
    from ..journal import DeliveryRecord
    from ..receiver import WebhookReceiver

__all__ = [
    "CSRF_FIELD",
    "SECURITY_HEADERS",
    "SESSION_COOKIE",
    "Auth",
    "InspectorApp",
    "InspectorCore",
    "InspectorRequest",
    "InspectorResponse",
    "LiveStream",
]

#: The cookie that ``?token=`` sets: an HMAC of the token, never the token itself.
SESSION_COOKIE = "census_inspector"
#: The double-submit CSRF cookie, used when only ``auth`` is configured.
CSRF_COOKIE = "census_inspector_csrf"
#: The name of the CSRF field in the replay form.
CSRF_FIELD = "csrf"
#: Deliveries per page of the list.
PAGE = 50
#: The runs page shows this many syncs (the most recently active), and this many runs of each.
SYNCS_SHOWN = 10
RUNS_PER_SYNC = 20
#: A replay form is a few dozen bytes; anything much larger is not one.
FORM_LIMIT = 4096
#: Seconds the status counts in the page header are reused: counting reads every
#: row's index entry, the one cost of a page that grows with the journal.
COUNTS_TTL = 5.0

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
_NO_STORE = ("cache-control", "no-store")
_HTML = ("content-type", "text/html; charset=utf-8")
_STATIC_TYPES = {"css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8"}
_UNSETTLED = frozenset({"pending", "running"})

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


class InspectorCore:
    """The inspector's routes, credentials and pages, with no I/O of its own.

    Args:
        journal: the journal to show.
        receiver: the receiver recording to ``journal``; needed for replay.
        token: a secret that lets its holder in (``Authorization: Bearer``, or
            ``?token=`` once).
        auth: the user's own check, called with each ``InspectorRequest``.
        live_interval: seconds between the live list's looks at the journal.

    Raises:
        ConfigurationError: with neither ``token`` nor ``auth``, an empty token,
            a ``journal`` that is not a ``Journal``, a receiver that records to
            another journal, or a ``live_interval`` not within (0, 60] seconds.
        ImportError: without Jinja2 (the ``inspector`` extra).
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
        key = token.encode() if isinstance(token, str) else token
        self._session = _mac(key, b"session") if key is not None else None
        self._csrf = _mac(key, b"csrf") if key is not None else None
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
            return self._plain(405, "method not allowed", [("allow", "GET, HEAD, POST")])
        if request.method == "POST" and not _is_page(path):
            # A POST to no page of ours (say, a webhook delivery sent to a wrong
            # path) is not here, whoever asks: nothing is revealed by saying so.
            return self._plain(404, "not found")
        token = request.param("token")
        if token is not None and self._session is not None and request.method in ("GET", "HEAD"):
            return self._exchange(request, token, self._session)
        if not self._authorized(request):
            return self._unauthorized(request)
        if path == "":
            return _redirect(f"{request.root}/")
        try:
            response = self._route(request)
        except JournalUnavailable:
            response = self._error(request, 503, "The journal's database cannot be read now.")
        if request.method == "HEAD":
            response.body = b""
            response.stream = None
        return response

    def _route(self, request: InspectorRequest) -> InspectorResponse:
        path, method = request.path, request.method
        parts = path.strip("/").split("/")
        delivery_id = _whole(parts[1]) if len(parts) in (2, 3) else None
        if parts[0] == "deliveries" and delivery_id is not None:
            if len(parts) == 3 and parts[2] == "replay":
                if method != "POST":
                    return self._plain(405, "method not allowed", [("allow", "POST")])
                return self._replay(request, delivery_id)
            if len(parts) == 2:
                return self._get_only(request) or self._delivery(request, delivery_id)
        views = {
            "/": self._deliveries,
            "/live": self._live,
            "/rejections": self._rejections,
            "/runs": self._runs,
        }
        view = views.get(path)
        if view is None:
            return self._error(request, 404, "Nothing is shown at this address.")
        return self._get_only(request) or view(request)

    def _get_only(self, request: InspectorRequest) -> InspectorResponse | None:
        if request.method == "POST":
            return self._plain(405, "method not allowed", [("allow", "GET, HEAD")])
        return None

    # -- credentials --------------------------------------------------------------------

    def _authorized(self, request: InspectorRequest) -> bool:
        if self._session is not None:
            kind, _, value = request.headers.get("authorization", "").partition(" ")
            if kind.lower() == "bearer" and self._matches_token(value.strip()):
                return True
            cookie = request.cookie(SESSION_COOKIE)
            if cookie and hmac.compare_digest(cookie.encode(), self._session.encode()):
                return True
        return self.auth is not None and self.auth(request) is True

    def _matches_token(self, value: str) -> bool:
        assert self._session is not None
        if not value:
            return False
        session = _mac(value.encode(), b"session")
        return hmac.compare_digest(session.encode(), self._session.encode())

    def _exchange(self, request: InspectorRequest, token: str, session: str) -> InspectorResponse:
        """``?token=``: set the session cookie and redirect to the URL without it."""
        if not self._matches_token(token):
            return self._unauthorized(request)
        kept = [
            (name, value)
            for name, value in urllib.parse.parse_qsl(request.query, max_num_fields=50)
            if name != "token"
        ]
        location = f"{request.root}{request.path or '/'}"
        if kept:
            location += "?" + urllib.parse.urlencode(kept)
        response = _redirect(location)
        response.headers.append(("set-cookie", _cookie(SESSION_COOKIE, session, request)))
        return response

    def _unauthorized(self, request: InspectorRequest) -> InspectorResponse:
        body = self.pages.render("unauthorized.html", root=request.root).encode()
        headers = [_HTML, _NO_STORE, *SECURITY_HEADERS]
        if self._session is not None:
            headers.append(("www-authenticate", 'Bearer realm="census-inspector"'))
        return InspectorResponse(401, headers, body)

    def _csrf_token(self, request: InspectorRequest) -> tuple[str, str | None]:
        """The CSRF token for the page's forms, and a cookie to set for it (if new)."""
        if self._csrf is not None:
            return self._csrf, None
        current = request.cookie(CSRF_COOKIE)
        if current and len(current) >= 32:
            return current, None
        fresh = secrets.token_hex(32)
        return fresh, _cookie(CSRF_COOKIE, fresh, request)

    def _same_origin(self, request: InspectorRequest) -> bool:
        """Whether a POST comes from the inspector's own pages, as far as the browser says.

        A browser that sends ``Sec-Fetch-Site`` (all current ones) is believed: no
        page can make it say ``same-origin`` for another site. Its ``Origin`` is
        then ``null`` anyway, since the pages' referrer policy is ``no-referrer``.
        An older browser is judged by ``Origin`` against ``Host``. A client that
        sends neither is no browser, and cannot be made to post by another site.
        """
        site = request.headers.get("sec-fetch-site")
        if site is not None:
            return site == "same-origin"
        origin = request.headers.get("origin")
        if origin is None:
            return True
        host = request.headers.get("host", "")
        return origin != "null" and urllib.parse.urlsplit(origin).netloc == host

    def _valid_form(self, request: InspectorRequest) -> bool:
        if len(request.body) > FORM_LIMIT:
            return False
        try:
            form = urllib.parse.parse_qs(request.body.decode("ascii"), max_num_fields=10)
        except (UnicodeDecodeError, ValueError):
            return False
        given = form.get(CSRF_FIELD, [""])[0]
        if self._csrf is not None:
            expected = self._csrf
        else:
            expected = request.cookie(CSRF_COOKIE) or ""
            if len(expected) < 32:
                return False
        return bool(given) and hmac.compare_digest(given.encode(), expected.encode())

    # -- views --------------------------------------------------------------------------

    def _deliveries(self, request: InspectorRequest) -> InspectorResponse:
        try:
            filters = _filters(request)
            before = _number(request, "before")
        except ValueError as exc:
            return self._error(request, 400, str(exc))
        rows = self.journal.deliveries(**filters, before=before, limit=PAGE + 1)
        older = None
        if len(rows) > PAGE:
            rows = rows[:PAGE]
            older = _url(request.root, "/", {**_shown(filters), "before": rows[-1].id})
        live = None
        if before is None:
            after = rows[0].id if rows else 0
            live = _url(request.root, "/live", {**_shown(filters), "after": after})
        return self._page(
            request,
            "deliveries.html",
            section="deliveries",
            rows=rows,
            filters=_shown(filters),
            filtered=any(v is not None for v in filters.values()),
            statuses=STATUSES,
            older_url=older,
            newest_url=_url(request.root, "/", _shown(filters)) if before is not None else None,
            live_url=live,
        )

    def _delivery(self, request: InspectorRequest, delivery_id: int) -> InspectorResponse:
        record = self.journal.get(delivery_id)
        if record is None:
            return self._error(request, 404, f"There is no delivery #{delivery_id}.")
        replayed = None
        if request.param("replayed") is not None:
            replayed = next((a for a in reversed(record.history) if a.kind == "replay"), None)
        return self._page(
            request,
            "delivery.html",
            section="deliveries",
            d=record,
            can_replay=self.receiver is not None and record.status == "failed",
            replayed=replayed,
        )

    def _replay(self, request: InspectorRequest, delivery_id: int) -> InspectorResponse:
        if self.receiver is None:
            return self._error(
                request, 404, "Replay is off: the inspector was made without a receiver."
            )
        if not self._same_origin(request):
            return self._error(request, 403, "A replay must come from the inspector's own page.")
        if not self._valid_form(request):
            return self._error(
                request, 403, "The form is stale or forged: reload the page and try again."
            )
        self._counts = (-COUNTS_TTL, {})  # the page it leads to shows the new status
        try:
            self.receiver.replay(delivery_id)
        except KeyError:
            return self._error(request, 404, f"There is no delivery #{delivery_id}.")
        return _redirect(f"{request.root}/deliveries/{delivery_id}?replayed=1")

    def _rejections(self, request: InspectorRequest) -> InspectorResponse:
        return self._page(
            request,
            "rejections.html",
            section="rejections",
            rows=self.journal.rejections(200),
        )

    def _runs(self, request: InspectorRequest) -> InspectorResponse:
        try:
            only = _number(request, "sync")
        except ValueError as exc:
            return self._error(request, 400, str(exc))
        journal = self.journal
        syncs = [only] if only is not None else journal.syncs(limit=SYNCS_SHOWN)
        shown = [
            (journal.sync_health(sync), journal.runs(sync_id=sync, limit=RUNS_PER_SYNC))
            for sync in syncs
        ]
        return self._page(
            request, "runs.html", section="runs", syncs=shown, only=only, now=time.time()
        )

    def _live(self, request: InspectorRequest) -> InspectorResponse:
        try:
            filters = _filters(request)
            after = _number(request, "after") or 0
            last_event = request.headers.get("last-event-id", "")
        except ValueError as exc:
            return self._error(request, 400, str(exc))
        resumed = _whole(last_event)
        if resumed is not None:
            after = max(after, resumed)
        stream = LiveStream(self, request.root, filters, after)
        headers = [
            ("content-type", "text/event-stream; charset=utf-8"),
            _NO_STORE,
            ("x-accel-buffering", "no"),
            *SECURITY_HEADERS,
        ]
        return InspectorResponse(200, headers, stream=stream)

    def _static_file(self, request: InspectorRequest, name: str) -> InspectorResponse:
        found = self._static.get(name)
        if found is None or request.method not in ("GET", "HEAD"):
            return self._plain(404, "not found")
        body, kind = found
        headers = [
            ("content-type", kind),
            ("content-length", str(len(body))),
            ("cache-control", "max-age=86400"),
            *SECURITY_HEADERS,
        ]
        return InspectorResponse(200, headers, b"" if request.method == "HEAD" else body)

    # -- answers ------------------------------------------------------------------------

    def _page(self, request: InspectorRequest, template: str, **context: Any) -> InspectorResponse:
        csrf, set_cookie = self._csrf_token(request)
        counts = self.counts()
        html = self.pages.render(
            template, root=request.root, counts=counts, csrf=csrf, csrf_field=CSRF_FIELD, **context
        )
        body = html.encode()
        headers = [_HTML, ("content-length", str(len(body))), _NO_STORE, *SECURITY_HEADERS]
        if set_cookie is not None:
            headers.append(("set-cookie", set_cookie))
        return InspectorResponse(200, headers, body)

    def _error(self, request: InspectorRequest, status: int, message: str) -> InspectorResponse:
        body = self.pages.render(
            "error.html", root=request.root, status=status, message=message
        ).encode()
        headers = [_HTML, ("content-length", str(len(body))), _NO_STORE, *SECURITY_HEADERS]
        return InspectorResponse(status, headers, body)

    def _plain(
        self, status: int, text: str, extra: list[tuple[str, str]] | None = None
    ) -> InspectorResponse:
        body = f"{status} {text}\n".encode()
        headers = [
            ("content-type", "text/plain; charset=utf-8"),
            ("content-length", str(len(body))),
            _NO_STORE,
            *SECURITY_HEADERS,
            *(extra or []),
        ]
        return InspectorResponse(status, headers, body)


class InspectorApp:
    """What the ASGI and WSGI inspectors share: the core they hand each request to.

    ``Inspector`` and ``WSGIInspector`` add only ``__call__``, which moves the
    request's bytes to ``core.handle`` and its answer back. It refuses to be
    built without credentials.

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
        ConfigurationError: with neither ``token`` nor ``auth``, or for a bad
            journal, receiver or token.
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
        self.core = InspectorCore(
            journal, receiver=receiver, token=token, auth=auth, live_interval=live_interval
        )

    def close(self) -> None:
        """End the open live streams within one poll, so a server can stop promptly."""
        self.core.close()


class LiveStream:
    """The live list's Server-Sent Events: new deliveries as table rows, as they come.

    Each ``poll`` asks the journal for what arrived since the last one
    (``deliveries(after=...)``, one indexed range) and for a change of status
    of the rows it saw still ``pending`` or ``running``, and returns them as
    ``delivery`` events whose data is the row's HTML, escaped like the page;
    a small static script puts each row in place. ``poll`` blocks on the
    journal: the ASGI app calls it in a worker thread.

    Args:
        core: the inspector (its journal, pages and ``closed`` flag).
        root: the mount point, for the rows' links.
        filters: the list's filters (``journal.deliveries`` keywords).
        after: the newest id the page already shows.
    """

    #: Seconds a stream lasts; the browser then reconnects (with Last-Event-ID).
    lifetime = 300.0
    #: Seconds of silence after which a comment is sent, so a gone client is noticed.
    heartbeat = 15.0
    #: Rows read per poll at most; a larger burst shows its newest rows.
    batch = 200

    def __init__(self, core: InspectorCore, root: str, filters: dict[str, Any], after: int) -> None:
        self.core = core
        self.root = root
        self.filters = filters
        self.last = after
        self.interval = core.live_interval
        self._unsettled: dict[int, str] | None = None
        self._ends = time.monotonic() + self.lifetime
        self._quiet_since = time.monotonic()

    @property
    def finished(self) -> bool:
        """Whether the stream should end now (lifetime over, or the inspector closed)."""
        return self.core.closed or time.monotonic() >= self._ends

    def start(self) -> bytes:
        """The first bytes of the stream: how soon the browser should reconnect."""
        return b"retry: 1000\n\n"

    def wait(self) -> None:
        """Sleep until the next poll is due (or the inspector closes)."""
        self.core.sleep(self.interval)

    def poll(self) -> bytes:
        """The events for what changed since the last poll (blocking; may be empty).

        Returns:
            Encoded events, a heartbeat comment, or ``b""``.
        """
        journal = self.core.journal
        try:
            if self._unsettled is None:  # first poll: which rows on the page may still change
                page = journal.deliveries(**self.filters, limit=PAGE)
                self._unsettled = {
                    r.id: r.status for r in page if r.id <= self.last and r.status in _UNSETTLED
                }
            low = min([self.last, *(i - 1 for i in self._unsettled)])
            rows = journal.deliveries(**self.filters, after=low, limit=self.batch)
        except JournalUnavailable:
            rows = []
        unsettled = self._unsettled or {}
        out = []
        for record in reversed(rows):  # oldest first: each is put on top of the last
            changed = unsettled.get(record.id)
            if record.id > self.last or (changed is not None and changed != record.status):
                out.append(record)
            if record.status in _UNSETTLED:
                unsettled[record.id] = record.status
            else:
                unsettled.pop(record.id, None)
        if len(rows) == self.batch:  # a burst: forget rows too old to be read again
            oldest = rows[-1].id
            unsettled = {i: s for i, s in unsettled.items() if i >= oldest}
        self._unsettled = unsettled
        if rows:
            self.last = max(self.last, rows[0].id)
        now = time.monotonic()
        if not out:
            if now - self._quiet_since < self.heartbeat:
                return b""
            self._quiet_since = now
            return b": keep-alive\n\n"
        self._quiet_since = now
        return self._events(out)

    def _events(self, records: list[DeliveryRecord]) -> bytes:
        pages = self.core.pages
        chunks = [
            _event("delivery", pages.render("_row.html", root=self.root, d=r), self.last)
            for r in records
        ]
        try:
            counts = self.core.counts(fresh=True)
        except JournalUnavailable:
            pass
        else:
            shown = pages.render("_counts.html", root=self.root, counts=counts)
            chunks.append(_event("counts", shown))
        return b"".join(chunks)


def _event(name: str, data: str, event_id: int | None = None) -> bytes:
    lines = [f"event: {name}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines += [f"data: {line}" for line in data.strip().splitlines() or [""]]
    return ("\n".join(lines) + "\n\n").encode()


def _mac(key: bytes, purpose: bytes) -> str:
    return hmac.new(key, b"census-inspector " + purpose, hashlib.sha256).hexdigest()


def _cookie(name: str, value: str, request: InspectorRequest) -> str:
    cookie = f"{name}={value}; Path={request.root or '/'}; HttpOnly; SameSite=Strict"
    return cookie + "; Secure" if request.secure else cookie


def _redirect(location: str) -> InspectorResponse:
    headers = [("location", location), ("content-length", "0"), _NO_STORE, *SECURITY_HEADERS]
    return InspectorResponse(303, headers)


def _read_static(name: str) -> bytes:
    return (importlib.resources.files(__package__) / "static" / name).read_bytes()


def _number(request: InspectorRequest, name: str) -> int | None:
    value = request.param(name)
    if value is None or value == "":
        return None
    number = _whole(value)
    if number is None:
        raise ValueError(f"{name} must be a whole number, not {value[:40]!r}")
    return number


def _whole(text: str) -> int | None:
    """``text`` as an id: ASCII digits only (``int`` takes others), within a 64-bit column."""
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        return None
    return int(text)


def _filters(request: InspectorRequest) -> dict[str, Any]:
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
        "sync_id": _number(request, "sync"),
        "sync_run_id": _number(request, "run"),
    }


_PARAMS = {"status": "status", "event": "event", "sync_id": "sync", "sync_run_id": "run"}


def _shown(filters: Mapping[str, Any]) -> dict[str, Any]:
    """The filters as query parameters (the ones set only)."""
    return {_PARAMS[k]: v for k, v in filters.items() if v is not None}


def _url(root: str, path: str, params: Mapping[str, Any]) -> str:
    query = urllib.parse.urlencode(params)
    return f"{root}{path}?{query}" if query else f"{root}{path}"


def _is_page(path: str) -> bool:
    """Whether ``path`` is one of the inspector's pages (views, a delivery, its replay)."""
    if path in ("", "/", "/live", "/rejections", "/runs"):
        return True
    parts = path.strip("/").split("/")
    return parts[0] == "deliveries" and (
        len(parts) == 2 or (len(parts) == 3 and parts[2] == "replay")
    )
