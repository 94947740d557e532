"""``Inspector``: the inspector as a pure ASGI app, for Starlette, FastAPI or ``serve``.

Moves bytes only: the request (its path below ``root_path``, headers, and for
a POST a bounded body) goes to ``InspectorCore.handle`` in a worker thread,
since it reads the journal; the response goes back as it came, or, for the
live list, as a stream polled in a worker thread until the client leaves, the
stream's lifetime ends or ``close()`` is called.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from ..bodies import read_asgi_body
from ..starlette import route_path
from .core import InspectorCore
from .messages import FORM_LIMIT, InspectorRequest

if TYPE_CHECKING:
    from .._types import Receive, Scope, Send
    from .live import LiveStream

__all__ = ["Inspector"]


class Inspector(InspectorCore):
    """A web page over a journal: deliveries (live), one delivery, sync runs, rejections.

    Mount it in an ASGI app (``app.mount("/inspector", Inspector(...))``), or
    serve it alone. Its arguments, and what it refuses, are ``InspectorCore``'s:
    ``Inspector(journal, receiver=receiver, token=token)``; an ``auth`` callable
    runs in a worker thread and sees the ASGI scope as ``raw``.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        body = b""
        if scope["method"] == "POST":
            read = await read_asgi_body(receive, FORM_LIMIT, await receive())
            if read is None:  # the client left
                return
            body = read
        request = _request(scope, body)
        response = await asyncio.to_thread(self.handle, request)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [(k.encode(), v.encode("latin-1")) for k, v in response.headers],
            }
        )
        if response.stream is None:
            await send({"type": "http.response.body", "body": response.body})
            return
        await _stream(response.stream, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _stream(stream: LiveStream, receive: Receive, send: Send) -> None:
    """Send the stream's events until the client leaves or the stream ends."""
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.ensure_future(watch())
    try:
        await send({"type": "http.response.body", "body": stream.start(), "more_body": True})
        while not stream.finished and not gone.is_set():
            chunk = await asyncio.to_thread(stream.poll)
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gone.wait(), stream.interval)
        if not gone.is_set():
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    except OSError:  # the client left mid-send (servers differ in what they raise)
        pass
    finally:
        watcher.cancel()


def _request(scope: Scope, body: bytes) -> InspectorRequest:
    root: str = scope.get("root_path", "")
    path = route_path(scope)
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        if name in headers:
            value = headers[name] + ("; " if name == "cookie" else ", ") + value
        headers[name] = value
    return InspectorRequest(
        method=scope["method"],
        path=path,
        root=root.rstrip("/"),
        query=scope.get("query_string", b"").decode("latin-1"),
        headers=headers,
        body=body,
        secure=scope.get("scheme") == "https",
        raw=scope,
    )
