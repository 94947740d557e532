"""Pure ASGI middleware answering Census webhooks; works with Starlette, FastAPI, any ASGI app.

It needs nothing from Starlette itself, so Starlette 0.x and 1.x (and FastAPI
on top of either) work alike::

    app.add_middleware(CensusWebhookMiddleware, receiver=receiver, path="/webhooks/census")

Requests to ``path`` are answered here; every other scope (other paths,
lifespan, websockets) goes to the wrapped app untouched, its body unread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .answers import Outcome
from .bodies import read_asgi_body
from .receiver import DEFAULT_PATH, check_path, check_receiver

if TYPE_CHECKING:
    from ._types import ASGIApp, Receive, Scope, Send
    from .receiver import WebhookReceiver

__all__ = ["CensusWebhookMiddleware", "client_address", "route_path"]


class CensusWebhookMiddleware:
    """Answer Census deliveries POSTed to ``path``; pass everything else to ``app``.

    Args:
        app: the ASGI app to wrap.
        receiver: the receiver that verifies and dispatches deliveries.
        path: the webhook's path, relative to where the app is mounted
            (``root_path`` and Starlette mounts are taken into account).

    Raises:
        ConfigurationError: if ``receiver`` is not a ``WebhookReceiver`` or
            ``path`` does not start with ``/``.
    """

    def __init__(
        self, app: ASGIApp, *, receiver: WebhookReceiver, path: str = DEFAULT_PATH
    ) -> None:
        self.app = app
        self.receiver = check_receiver(receiver)
        self.path = check_path(path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or (route_path(scope) if scope.get("root_path") else scope["path"]) != self.path
        ):
            await self.app(scope, receive, send)
            return
        receiver = self.receiver
        headers = scope["headers"]
        # One pass for the two headers needed. ASGI servers lower-case names, and
        # like Starlette's Headers this reads only lower-case ones; anything but
        # exactly one x-signature goes to triage with all the headers, whose
        # case-blind scan finds a hand-built scope's "X-Signature" or names the
        # problem (missing, repeated).
        length = signature = None
        signatures = 0
        for name, value in headers:
            if name == b"x-signature":
                signature = value
                signatures += 1
            elif name == b"content-length":
                length = value
        # The client's address, for the journal's log of refused requests.
        remote = client_address(scope) if receiver.journal is not None else None
        outcome = receiver.check_request(scope["method"], length, remote=remote)
        if outcome is None:
            body = await read_asgi_body(receive, receiver.max_body_size, await receive())
            if body is None:  # the client left: nobody to answer, nothing to handle
                return
            if signatures == 1:
                triaged = receiver.triage(body, signature=signature, remote=remote)
            else:
                triaged = receiver.triage(body, headers, remote=remote)
            outcome = triaged if isinstance(triaged, Outcome) else await triaged.run_async()
        answer = outcome.answer
        # A fresh list every time: servers and outer middleware may change it.
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": list(answer.raw_headers),
            }
        )
        await send({"type": "http.response.body", "body": answer.body})


def client_address(scope: Scope) -> str | None:
    """The client's address in an ASGI ``scope`` (for a journal's rejection log), if any."""
    client = scope.get("client")
    return str(client[0]) if client else None


def route_path(scope: Scope) -> str:
    """The path below the app's mount point (``root_path``), whichever way the server gives it."""
    # Newer servers and Starlette >= 0.33 mounts keep the full path in "path" and
    # the prefix in "root_path"; older ones strip the prefix from "path". Like
    # Starlette's get_route_path, drop the prefix only where "path" carries it.
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
        return path[len(root) :]
    return path
