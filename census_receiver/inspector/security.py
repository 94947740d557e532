"""Who may use the inspector, and which replay forms are its own.

No I/O. Security, in the order a request meets it:

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

``Credentials`` holds the token (as HMACs of it, never the token itself) and
the ``auth`` callable, and answers the questions of the first two points and
the CSRF token; ``same_origin`` is the replay's origin check.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import urllib.parse
from typing import TYPE_CHECKING

from .messages import FORM_LIMIT

if TYPE_CHECKING:
    from .messages import Auth, InspectorRequest

__all__ = [
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "SESSION_COOKIE",
    "Credentials",
    "cookie_header",
    "same_origin",
]

#: The cookie that ``?token=`` sets: an HMAC of the token, never the token itself.
SESSION_COOKIE = "census_inspector"
#: The double-submit CSRF cookie, used when only ``auth`` is configured.
CSRF_COOKIE = "census_inspector_csrf"
#: The name of the CSRF field in the replay form.
CSRF_FIELD = "csrf"


class Credentials:
    """The inspector's token and ``auth`` check, and the CSRF token of its forms.

    Args:
        token: a secret that lets its holder in, or ``None``.
        auth: the user's own check, called with each ``InspectorRequest``, or ``None``.
    """

    def __init__(self, token: str | bytes | None, auth: Auth | None) -> None:
        self.auth = auth
        key = token.encode() if isinstance(token, str) else token
        self._session = _mac(key, b"session") if key is not None else None
        self._csrf = _mac(key, b"csrf") if key is not None else None

    @property
    def has_token(self) -> bool:
        """Whether a token was given (else only ``auth`` lets anyone in)."""
        return self._session is not None

    def authorized(self, request: InspectorRequest) -> bool:
        """Whether ``request`` carries the token (header or cookie), or ``auth`` lets it in."""
        if self._session is not None:
            kind, _, value = request.headers.get("authorization", "").partition(" ")
            if kind.lower() == "bearer" and self.matches_token(value.strip()):
                return True
            cookie = request.cookie(SESSION_COOKIE)
            if cookie and hmac.compare_digest(cookie.encode(), self._session.encode()):
                return True
        return self.auth is not None and self.auth(request) is True

    def matches_token(self, value: str) -> bool:
        """Whether ``value`` is the token (call only when ``has_token``)."""
        assert self._session is not None
        if not value:
            return False
        session = _mac(value.encode(), b"session")
        return hmac.compare_digest(session.encode(), self._session.encode())

    def session_cookie(self, request: InspectorRequest) -> str:
        """The ``set-cookie`` value that lets the browser in from now on (needs ``has_token``)."""
        assert self._session is not None
        return cookie_header(SESSION_COOKIE, self._session, request)

    def csrf_token(self, request: InspectorRequest) -> tuple[str, str | None]:
        """The CSRF token for the page's forms, and a cookie to set for it (if new)."""
        if self._csrf is not None:
            return self._csrf, None
        current = request.cookie(CSRF_COOKIE)
        if current and len(current) >= 32:
            return current, None
        fresh = secrets.token_hex(32)
        return fresh, cookie_header(CSRF_COOKIE, fresh, request)

    def valid_form(self, request: InspectorRequest) -> bool:
        """Whether the POSTed form carries this page's CSRF token."""
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


def same_origin(request: InspectorRequest) -> bool:
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


def cookie_header(name: str, value: str, request: InspectorRequest) -> str:
    """A ``set-cookie`` value for the mount point: HttpOnly, SameSite=Strict, Secure if HTTPS."""
    cookie = f"{name}={value}; Path={request.root or '/'}; HttpOnly; SameSite=Strict"
    return cookie + "; Secure" if request.secure else cookie


def _mac(key: bytes, purpose: bytes) -> str:
    return hmac.new(key, b"census-inspector " + purpose, hashlib.sha256).hexdigest()
