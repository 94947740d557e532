"""Reading a request body within the receiver's size limit, for every adapter.

No web framework. A delivery body is kept up to ``limit + 1`` bytes: enough
for ``triage`` to tell it is too big (413) without holding more. Past that,
the rest is read and dropped, up to ``DRAIN_LIMIT``, so the 413 goes out on a
connection still in step with the client: a server that closes a connection
with unread input makes a client still sending see a reset instead of the
answer (uvicorn drops unread input itself once the answer is sent; this covers
servers that do not). ``BoundedBody`` keeps that rule; ``read_asgi_body`` and
``read_wsgi_body`` feed it from an ASGI ``receive`` and a WSGI ``wsgi.input``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

    from ._types import Message, Receive

__all__ = ["DRAIN_LIMIT", "BoundedBody", "read_asgi_body", "read_wsgi_body"]

#: Bytes past the limit read and dropped before answering 413 regardless.
DRAIN_LIMIT = 16 * 1_048_576


class BoundedBody:
    """The chunks of a body, kept up to ``limit + 1`` bytes.

    Args:
        limit: the receiver's ``max_body_size``.
    """

    __slots__ = ("_chunks", "limit", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: Bytes seen so far, kept or dropped.
        self.size = 0
        self._chunks: list[bytes] = []

    def add(self, chunk: bytes) -> bool:
        """Take the next chunk; whether reading should go on (False past the drain limit)."""
        room = self.limit + 1 - self.size
        if room > 0:
            self._chunks.append(chunk if len(chunk) <= room else chunk[:room])
        self.size += len(chunk)
        return self.size <= self.limit + DRAIN_LIMIT

    def value(self) -> bytes:
        """The kept bytes: the whole body, or its first ``limit + 1`` bytes."""
        return b"".join(self._chunks)


async def read_asgi_body(receive: Receive, limit: int, message: Message) -> bytes | None:
    """Read an ASGI request body within ``limit``; ``None`` if the client left.

    Args:
        receive: the ASGI receive callable.
        limit: the receiver's ``max_body_size``.
        message: the first message, already received.

    Returns:
        The body (at most ``limit + 1`` bytes), or ``None`` on ``http.disconnect``.
    """
    if message["type"] == "http.request" and not message.get("more_body", False):
        whole: bytes = message.get("body", b"")  # the usual case: all of it in one message
        return whole if len(whole) <= limit else whole[: limit + 1]
    body = BoundedBody(limit)
    while True:
        if message["type"] == "http.disconnect":
            return None
        if not body.add(message.get("body", b"")) or not message.get("more_body", False):
            return body.value()
        message = await receive()


def read_wsgi_body(environ: WSGIEnvironment, limit: int) -> bytes | None:
    """Read a WSGI request body within ``limit``; ``None`` if the client left early.

    The body is the declared Content-Length, or a stream the server terminates
    (``wsgi.input_terminated``, as for chunked input). Without either, reading
    could block forever, so the body is taken as empty.

    Args:
        environ: the WSGI environ.
        limit: the receiver's ``max_body_size``.

    Returns:
        The body (at most ``limit + 1`` bytes), or ``None`` when the connection
        ended before the declared length arrived.
    """
    stream = environ["wsgi.input"]
    try:
        length: int | None = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        length = None
    try:
        if length is not None and length <= limit:  # the usual case: one read does it
            first: bytes = stream.read(length)
            if len(first) == length:
                return first
            body = BoundedBody(limit)
            body.add(first)
            return _read_rest(stream, body, length)
        if length is None and not environ.get("wsgi.input_terminated"):
            return b""
        return _read_rest(stream, BoundedBody(limit), length)
    except OSError:  # servers raise their own OSError subclasses on a broken connection
        return None


def _read_rest(stream: object, body: BoundedBody, length: int | None) -> bytes | None:
    """Read on until ``length`` bytes (or the end of a terminated stream)."""
    read = stream.read  # type: ignore[attr-defined]
    while length is None or body.size < length:
        wanted = 65_536 if length is None else min(65_536, length - body.size)
        chunk: bytes = read(wanted)
        if not chunk:
            break
        if not body.add(chunk):
            return body.value()  # far over the limit: stop reading, answer 413
    if length is not None and body.size < length:
        return None  # shorter than declared: the connection ended early
    return body.value()
