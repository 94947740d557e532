"""Pure ASGI middleware answering Census webhooks; works with Starlette, FastAPI, any ASGI app.

It needs nothing from Starlette itself, so Starlette 0.x and 1.x (and FastAPI
on top of either) work alike::

    app.add_middleware(CensusWebhookMiddleware, receiver=receiver, path="/webhooks/census")

Requests to ``path`` are answered here; every other scope (other paths,
lifespan, websockets) goes to the wrapped app untouched, its body unread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .receiver import DEFAULT_PATH, Outcome, check_path

if TYPE_CHECKING:
    from ._types import ASGIApp, Message, Receive, Scope, Send
    from .receiver import WebhookReceiver

__all__ = ["CensusWebhookMiddleware"]

# Past the limit the rest of the body is read and dropped (up to this much), so
# the 413 goes out on a connection still in step with the client: a server that
# closes a connection with unread input makes a client still sending see a
# reset instead of the answer. uvicorn drops unread input itself once the
# answer is sent; this covers servers that do not.
_DRAIN_LIMIT = 16 * 1_048_576


class CensusWebhookMiddleware:
    """Answer Census deliveries POSTed to ``path``; pass everything else to ``app``.

    Args:
        app: the ASGI app to wrap.
        receiver: the receiver that verifies and dispatches deliveries.
        path: the webhook's path, relative to where the app is mounted
            (``root_path`` and Starlette mounts are taken into account).

    Raises:
        ConfigurationError: if ``path`` does not start with ``/``.
    """

    def __init__(
        self, app: ASGIApp, *, receiver: WebhookReceiver, path: str = DEFAULT_PATH
    ) -> None:
        self.app = app
        self.receiver = receiver
        self.path = check_path(path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or (_route_path(scope) if scope.get("root_path") else scope["path"]) != self.path
        ):
            await self.app(scope, receive, send)
            return
        receiver = self.receiver
        headers = scope["headers"]
        # One pass for the two headers needed. ASGI servers lower-case names, and
        # like Starlette's Headers this reads only lower-case ones; anything but
        # exactly one x-signature goes to handle_async, whose case-blind scan finds
        # a hand-built scope's "X-Signature" or names the problem (missing, repeated).
        length = signature = None
        signatures = 0
        for name, value in headers:
            if name == b"x-signature":
                signature = value
                signatures += 1
            elif name == b"content-length":
                length = value
        outcome = receiver.check_request(scope["method"], length)
        if outcome is None:
            first = await receive()
            if first["type"] == "http.request" and not first.get("more_body", False):
                body: bytes | None = first.get("body", b"")  # the usual case: one message
            else:
                body = await _read_body(receive, receiver.max_body_size, first)
            if body is None:  # the client left: nobody to answer, nothing to handle
                return
            if signatures == 1:
                pending = receiver._begin(True, body, signature)
                outcome = pending if isinstance(pending, Outcome) else await pending
            else:
                outcome = await receiver.handle_async(body, headers)
        # The answer, inline (a helper coroutine would cost a good part of a delivery).
        # Its headers come from a small set of tuples: each is encoded once.
        encoded = _encoded.get(outcome.headers)
        if encoded is None:
            encoded = _encode(outcome.headers)
        # A fresh list every time: servers and outer middleware may change it.
        await send(
            {"type": "http.response.start", "status": outcome.status, "headers": list(encoded)}
        )
        await send({"type": "http.response.body", "body": outcome.body})


def _route_path(scope: Scope) -> str:
    # Newer servers and Starlette >= 0.33 mounts keep the full path in "path" and
    # the prefix in "root_path"; older ones strip the prefix from "path". Like
    # Starlette's get_route_path, drop the prefix only where "path" carries it.
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
        return path[len(root) :]
    return path


async def _read_body(receive: Receive, limit: int, message: Message) -> bytes | None:
    """Keep at most ``limit + 1`` bytes (enough to tell it is too big), or None on disconnect.

    ``message`` is the first one received; the rest are read here.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        if size + len(chunk) > limit:
            chunks.append(chunk[: limit + 1 - size])
            if more and not await _drain(receive):
                return None
            break
        chunks.append(chunk)
        size += len(chunk)
        if not more:
            break
        message = await receive()
    return b"".join(chunks)


async def _drain(receive: Receive) -> bool:
    """Read and drop the rest of the body, up to ``_DRAIN_LIMIT``; False on disconnect."""
    dropped = 0
    while dropped <= _DRAIN_LIMIT:
        message = await receive()
        if message["type"] == "http.disconnect":
            return False
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return True


_encoded: dict[tuple[tuple[str, str], ...], tuple[tuple[bytes, bytes], ...]] = {}


def _encode(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[bytes, bytes], ...]:
    if len(_encoded) >= 512:
        _encoded.clear()
    encoded = _encoded[headers] = tuple(
        (k.encode("latin-1"), v.encode("latin-1")) for k, v in headers
    )
    return encoded
