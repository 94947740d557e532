"""WSGI middleware answering Census webhooks, for Werkzeug, Flask, Django or any WSGI app.

Needs no framework::

    app.wsgi_app = CensusWebhookMiddleware(app.wsgi_app, receiver=receiver)

Requests to ``path`` (matched against ``PATH_INFO``, so below any
``SCRIPT_NAME`` the app is mounted at) are answered here; every other request
goes to the wrapped app untouched, its input unread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
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
    "handle_environ",
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
        answer = handle_environ(self.receiver, environ).answer
        start_response(answer.status_line, list(answer.headers))
        return [answer.body]


def handle_environ(
    receiver: WebhookReceiver,
    environ: WSGIEnvironment,
    endpoint: Callable[[Event], object] | None = None,
    *,
    on_body: Callable[[bytes], object] | None = None,
) -> Outcome:
    """Answer the delivery in ``environ`` on this thread: pre-checks, bounded read, triage, run.

    Args:
        receiver: the receiver.
        environ: the request's environ; its input is read.
        endpoint: an extra callable run after the handlers (a Flask view).
        on_body: called with the body once read, before triage (Flask refills
            its request stream with it, for the view).

    Returns:
        The answer to give: 405 or 413 before reading, 400 when the client left
        before sending its whole body (answered like any other refusal, for
        whoever still listens), else what triage and the run decide.
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
    if on_body is not None:
        on_body(body)
    signature = environ.get("HTTP_X_SIGNATURE")
    # Servers fold a repeated header into one comma-joined value, which the
    # general path splits and refuses; a single value goes straight in.
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
