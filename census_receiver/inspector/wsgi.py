"""``WSGIInspector``: the inspector as a WSGI app, for Flask, Django or any WSGI server.

Moves bytes only: the request (``PATH_INFO`` below ``SCRIPT_NAME``, headers,
and for a POST a bounded body) goes to ``InspectorCore.handle``; the answer
goes back through ``start_response``. The live list is an iterable that polls
the journal until the client leaves (the server's next write fails and closes
it), the stream's lifetime ends or ``close()`` is called; each open one holds
a server thread meanwhile, so run a threaded server.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from ..answers import status_line
from ..bodies import read_wsgi_body
from ..wsgi import EnvironHeaders
from .core import InspectorCore
from .messages import FORM_LIMIT, InspectorRequest

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from .live import LiveStream

__all__ = ["WSGIInspector"]


class WSGIInspector(InspectorCore):
    """The inspector (see ``Inspector``) as a WSGI app.

    Mount it below a path, e.g. with Werkzeug's ``DispatcherMiddleware``::

        app.wsgi_app = DispatcherMiddleware(
            app.wsgi_app, {"/inspector": WSGIInspector(journal, receiver=receiver, token=t)}
        )

    Its arguments, and what it refuses, are ``InspectorCore``'s; an ``auth``
    callable sees the WSGI environ as ``raw``.
    """

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        body = b""
        if environ["REQUEST_METHOD"] == "POST":
            body = read_wsgi_body(environ, FORM_LIMIT) or b""
        response = self.handle(_request(environ, body))
        start_response(status_line(response.status), response.headers)
        if response.stream is None:
            return [response.body]
        return _chunks(response.stream)


def _chunks(stream: LiveStream) -> Iterator[bytes]:
    yield stream.start()
    while not stream.finished:
        chunk = stream.poll()
        if chunk:
            yield chunk
        stream.wait()


def _request(environ: WSGIEnvironment, body: bytes) -> InspectorRequest:
    return InspectorRequest(
        method=environ["REQUEST_METHOD"],
        path=environ.get("PATH_INFO", ""),
        root=environ.get("SCRIPT_NAME", "").rstrip("/"),
        query=environ.get("QUERY_STRING", ""),
        headers=EnvironHeaders(environ),
        body=body,
        secure=environ.get("wsgi.url_scheme") == "https",
        raw=environ,
    )
