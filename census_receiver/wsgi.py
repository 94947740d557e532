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

from .receiver import DEFAULT_PATH, check_path

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .events import Event
    from .receiver import Outcome, WebhookReceiver

__all__ = ["CensusWebhookMiddleware"]

_DRAIN_LIMIT = 16 * 1_048_576  # see census_receiver.starlette
_UNPREFIXED = frozenset({"CONTENT_TYPE", "CONTENT_LENGTH"})


class CensusWebhookMiddleware:
    """Answer Census deliveries POSTed to ``path``; pass everything else to ``app``.

    Args:
        app: the WSGI app to wrap.
        receiver: the receiver that verifies and dispatches deliveries.
        path: the webhook's path, compared with ``PATH_INFO``.

    Raises:
        ConfigurationError: if ``path`` does not start with ``/``.
    """

    def __init__(
        self, app: WSGIApplication, *, receiver: WebhookReceiver, path: str = DEFAULT_PATH
    ) -> None:
        self.app = app
        self.receiver = receiver
        self.path = check_path(path)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != self.path:
            return self.app(environ, start_response)
        receiver = self.receiver
        outcome = receiver.check_request(environ["REQUEST_METHOD"], environ.get("CONTENT_LENGTH"))
        if outcome is None:
            body = _read_body(environ, receiver.max_body_size)
            if body is None:  # the client left: nobody to answer, nothing to handle
                start_response("400 Bad Request", [("content-length", "0")])
                return []
            outcome = _handle_environ(receiver, body, environ)
        start_response(_status_line(outcome.status), list(outcome.headers))
        return [outcome.body]


@functools.lru_cache(maxsize=32)
def _status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


def _handle_environ(
    receiver: WebhookReceiver,
    body: bytes,
    environ: WSGIEnvironment,
    endpoint: Callable[[Event], object] | None = None,
) -> Outcome:
    """Hand a read body to ``receiver``, with the request headers of ``environ``."""
    signature = environ.get("HTTP_X_SIGNATURE")
    # Servers fold a repeated header into one comma-joined value, which the
    # general path splits and refuses; a single value goes straight in.
    if type(signature) is str and "," not in signature:
        return receiver._begin(False, body, signature, endpoint)
    return receiver._begin(False, body, None, endpoint, _EnvironHeaders(environ))


def _read_body(environ: WSGIEnvironment, limit: int) -> bytes | None:
    """Read at most ``limit + 1`` bytes; None if the client left before sending them all.

    The body is the declared Content-Length, or a stream the server terminates.
    """
    stream = environ["wsgi.input"]
    try:
        length: int | None = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        length = None
    if length is not None and length <= limit:  # the usual case: one read does it
        try:
            body: bytes = stream.read(length)
        except OSError:
            return None
        if len(body) == length:
            return body
        chunks = [body]  # a short read: the loop below reads the rest, or gives up
        wanted = length - len(body)
    elif length is None and not environ.get("wsgi.input_terminated"):
        # Without a length, only a server that ends the stream itself (chunked
        # input) makes reading safe; reading anyway could block forever.
        return b""
    else:
        chunks = []
        wanted = limit + 1 if length is None else min(length, limit + 1)
    try:
        while wanted > 0 and (chunk := stream.read(wanted)):
            chunks.append(chunk)
            wanted -= len(chunk)
        if wanted <= 0 and length is None:  # over the limit: drop the rest, bounded (starlette.py)
            dropped = 0
            while dropped <= _DRAIN_LIMIT and (chunk := stream.read(65_536)):
                dropped += len(chunk)
    except OSError:  # servers raise their own OSError subclasses on a broken connection
        return None
    if length is not None and wanted > 0:
        return None  # shorter than declared: the connection ended early
    return b"".join(chunks)


class _EnvironHeaders(Mapping[str, str]):
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
