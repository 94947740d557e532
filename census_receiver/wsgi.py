"""WSGI middleware answering Census webhooks, for Werkzeug, Flask, Django or any WSGI app.

Needs no framework::

    app.wsgi_app = CensusWebhookMiddleware(app.wsgi_app, receiver=receiver)

Requests to ``path`` (matched against ``PATH_INFO``, so below any
``SCRIPT_NAME`` the app is mounted at) are answered here; every other request
goes to the wrapped app untouched, its input unread.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from .answers import Outcome
from .bodies import read_wsgi_body
from .errors import IncompleteBody
from .receiver import DEFAULT_PATH, check_path, check_receiver

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .events import Event
    from .receiver import WebhookReceiver

__all__ = [
    "CensusWebhookMiddleware",
    "EnvironHeaders",
    "read_environ",
    "run_environ",
    "status_line",
]

_UNPREFIXED = frozenset({"CONTENT_TYPE", "CONTENT_LENGTH"})


class CensusWebhookMiddleware:
    """Answer Census deliveries POSTed to ``path``; pass everything else to ``app``.

    Args:
        app: the WSGI app to wrap.
        receiver: the receiver that verifies and dispatches deliveries.
        path: the webhook's path, compared with ``PATH_INFO``.

    Raises:
        ConfigurationError: if ``receiver`` is not a ``WebhookReceiver`` or
            ``path`` does not start with ``/``.
    """

    def __init__(
        self, app: WSGIApplication, *, receiver: WebhookReceiver, path: str = DEFAULT_PATH
    ) -> None:
        self.app = app
        self.receiver = check_receiver(receiver)
        self.path = check_path(path)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != self.path:
            return self.app(environ, start_response)
        read = read_environ(self.receiver, environ)
        outcome = read if isinstance(read, Outcome) else run_environ(self.receiver, read, environ)
        answer = outcome.answer
        start_response(status_line(answer.status), list(answer.headers))
        return [answer.body]


@functools.lru_cache(maxsize=32)
def status_line(status: int) -> str:
    """The WSGI status line of ``status``: ``"200 OK"``."""
    return f"{status} {HTTPStatus(status).phrase}"


def read_environ(receiver: WebhookReceiver, environ: WSGIEnvironment) -> bytes | Outcome:
    """Pre-check the request in ``environ`` and read its body within the receiver's limit.

    Args:
        receiver: the receiver.
        environ: the request's environ; its input is read.

    Returns:
        The body, or the answer when the request is refused before triage: 405,
        413, or 400 when the client left before sending its whole body (answered
        like any other refusal, for whoever still listens).
    """
    remote = environ.get("REMOTE_ADDR")  # for the journal's log of refused requests
    outcome = receiver.check_request(
        environ["REQUEST_METHOD"], environ.get("CONTENT_LENGTH"), remote=remote
    )
    if outcome is not None:
        return outcome
    body = read_wsgi_body(environ, receiver.max_body_size)
    if body is None:
        return receiver.reject(
            IncompleteBody("the client sent less than its Content-Length"), remote=remote
        )
    return body


def run_environ(
    receiver: WebhookReceiver,
    body: bytes,
    environ: WSGIEnvironment,
    endpoint: Callable[[Event], object] | None = None,
) -> Outcome:
    """Triage and run a delivery read from ``environ``, on this thread.

    Args:
        receiver: the receiver.
        body: the body ``read_environ`` returned.
        environ: the request's environ, for its headers.
        endpoint: an extra callable run after the handlers (a Flask view).

    Returns:
        The answer to give.
    """
    signature = environ.get("HTTP_X_SIGNATURE")
    # Servers fold a repeated header into one comma-joined value, which the
    # general path splits and refuses; a single value goes straight in.
    remote = environ.get("REMOTE_ADDR")
    if type(signature) is str and "," not in signature:
        triaged = receiver.triage(body, signature=signature, endpoint=endpoint, remote=remote)
    else:
        headers = EnvironHeaders(environ)
        triaged = receiver.triage(body, headers, endpoint=endpoint, remote=remote)
    return triaged if isinstance(triaged, Outcome) else triaged.run()


class EnvironHeaders(Mapping[str, str]):
    """The request headers of a WSGI environ, by name in any case, without copying.

    ``getlist`` splits on commas: servers fold a repeated header into one
    comma-joined value, and the core must see a repeated ``X-Signature`` as such.
    """

    __slots__ = ("_environ",)

    def __init__(self, environ: WSGIEnvironment) -> None:
        self._environ = environ

    def __getitem__(self, name: str) -> str:
        value: Any = self._environ.get(_environ_key(name))
        if not isinstance(value, str):
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        for key in self._environ:
            if key.startswith("HTTP_") or key in _UNPREFIXED:
                yield key.removeprefix("HTTP_").replace("_", "-").lower()

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def getlist(self, name: str) -> list[str]:
        value = self._environ.get(_environ_key(name))
        if not isinstance(value, str):
            return []
        if "," not in value:  # the usual case: the header came once
            return [value.strip(" \t")]
        return [part.strip(" \t") for part in value.split(",")]


_KEYS = {"x-signature": "HTTP_X_SIGNATURE"}  # the one the core asks for, on every delivery


def _environ_key(name: str) -> str:
    """The environ key of a header name: ``x-signature`` is ``HTTP_X_SIGNATURE``."""
    key = _KEYS.get(name)
    if key is None:
        key = name.upper().replace("-", "_")
        if key not in _UNPREFIXED:
            key = f"HTTP_{key}"
    return key
