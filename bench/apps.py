"""The apps the benchmarks drive: hand-written baselines and census_receiver's adapters.

Every app answers a Census delivery POSTed to ``PATH``: 200 after calling the
"handler" exactly once when the signature is right, 401 without calling it
otherwise. The handler's work is the same everywhere, counting the call, so the
figures compare the receiving, not the handling: the baselines do it inline, as
a hand-written endpoint would; census_receiver's apps do it in a handler
registered on the receiver (``async def`` unless the name says ``sync``).

Baselines use Census's documented recipe (``hmac.new(...).digest()``, base64,
``hmac.compare_digest``) and ``json.loads``. census_receiver does more per
request than they do (a size limit, a strict JSON parse into a typed event,
stats), and is measured doing it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from census_receiver import Event, WebhookReceiver

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from starlette.requests import Request
    from starlette.responses import Response

    from census_receiver.journal import Journal

__all__ = [
    "ASGI",
    "PATH",
    "SECRET",
    "Calls",
    "asgi_apps",
    "bare_asgi",
    "bare_wsgi",
    "census_receiver_for",
    "close_receivers",
    "flask_apps",
    "starlette_by_hand",
    "wsgi_apps",
]

PATH = "/webhooks/census"
SECRET = b"whsec-bench-0123456789abcdef0123456789"

# ASGI, as in starlette/types.py, so the baselines need no framework.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: An ASGI app.
ASGI = Callable[[Scope, Receive, Send], Awaitable[None]]

_OK = json.dumps({"status": "ok"}).encode()
_UNAUTHORIZED = json.dumps({"error": "invalid signature"}).encode()
_NOT_FOUND = b'{"error": "not found"}'


class Calls:
    """How many times a handler ran: the check that each request ran it exactly once."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


def _json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]


def census_receiver_for(
    calls: Calls, *, sync: bool = False, journal: Journal | None = None
) -> WebhookReceiver:
    """A receiver whose one handler, for every event, counts its calls.

    Args:
        calls: the counter.
        sync: register a plain ``def`` handler (run in a worker thread under
            ASGI) instead of an ``async def`` one.
        journal: a journal to record every delivery in.

    Returns:
        The receiver, with the default options.
    """
    receiver = WebhookReceiver(secret=SECRET, journal=journal)
    if sync:

        @receiver.on("*")
        def count(event: Event) -> None:
            calls.n += 1

    else:

        @receiver.on("*")
        async def count_async(event: Event) -> None:
            calls.n += 1

    return receiver


def bare_asgi(calls: Calls, secret: bytes = SECRET) -> ASGI:
    """A pure ASGI app written by hand: read the body, the recipe, ``json.loads``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": _NOT_FOUND})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        received = b""
        for name, value in scope["headers"]:
            if name == b"x-signature":
                received = value
        digest = hmac.new(secret, body, hashlib.sha256).digest()
        if not hmac.compare_digest(received, base64.b64encode(digest)):
            answer, status = _UNAUTHORIZED, 401
        else:
            json.loads(body)
            calls.n += 1
            answer, status = _OK, 200
        await send(
            {"type": "http.response.start", "status": status, "headers": _json_headers(answer)}
        )
        await send({"type": "http.response.body", "body": answer})

    return app


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": _NOT_FOUND})


def starlette_by_hand(calls: Calls, secret: bytes = SECRET) -> ASGI:
    """A Starlette app with the webhook route written by hand, plus ``GET /count``."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def webhook(request: Request) -> Response:
        body = await request.body()
        received = request.headers.get("x-signature", "")
        digest = hmac.new(secret, body, hashlib.sha256).digest()
        if not hmac.compare_digest(received, base64.b64encode(digest).decode()):
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        json.loads(body)
        calls.n += 1
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[Route(PATH, webhook, methods=["POST"]), _count_route(calls)])
    return app


def _count_route(calls: Calls) -> Any:
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def count(request: Request) -> Response:
        return JSONResponse({"calls": calls.n})

    return Route("/count", count)


def census_in_starlette(receiver: WebhookReceiver, calls: Calls) -> ASGI:
    """A Starlette app (``GET /count`` only) with the middleware answering ``PATH``."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware

    from census_receiver.starlette import CensusWebhookMiddleware

    app = Starlette(
        routes=[_count_route(calls)],
        middleware=[Middleware(CensusWebhookMiddleware, receiver=receiver, path=PATH)],
    )
    return app


def census_bare(receiver: WebhookReceiver) -> ASGI:
    """The middleware alone, around an app that answers 404 to everything else."""
    from census_receiver.starlette import CensusWebhookMiddleware

    return CensusWebhookMiddleware(_not_found, receiver=receiver, path=PATH)


def asgi_apps() -> dict[str, tuple[ASGI, Calls, WebhookReceiver | None]]:
    """Every ASGI contender: name -> (app, its handler counter, its receiver if any)."""
    apps: dict[str, tuple[ASGI, Calls, WebhookReceiver | None]] = {}
    calls = Calls()
    apps["bare ASGI"] = (bare_asgi(calls), calls, None)
    calls = Calls()
    apps["Starlette by hand"] = (starlette_by_hand(calls), calls, None)
    for sync in (False, True):
        suffix = " (sync handler)" if sync else ""
        calls = Calls()
        receiver = census_receiver_for(calls, sync=sync)
        apps["middleware" + suffix] = (census_bare(receiver), calls, receiver)
        calls = Calls()
        receiver = census_receiver_for(calls, sync=sync)
        apps["middleware in Starlette" + suffix] = (
            census_in_starlette(receiver, calls),
            calls,
            receiver,
        )
    return apps


# -- WSGI ------------------------------------------------------------------------------


def _wsgi_not_found(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("404 Not Found", [("Content-Type", "application/json")])
    return [_NOT_FOUND]


def bare_wsgi(calls: Calls, secret: bytes = SECRET) -> WSGIApplication:
    """A WSGI app written by hand: read ``CONTENT_LENGTH`` bytes, the recipe, ``json.loads``."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] != PATH or environ["REQUEST_METHOD"] != "POST":
            return _wsgi_not_found(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        received = environ.get("HTTP_X_SIGNATURE", "")
        digest = hmac.new(secret, body, hashlib.sha256).digest()
        if not hmac.compare_digest(received, base64.b64encode(digest).decode()):
            answer, status = _UNAUTHORIZED, "401 Unauthorized"
        else:
            json.loads(body)
            calls.n += 1
            answer, status = _OK, "200 OK"
        start_response(
            status, [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))]
        )
        return [answer]

    return app


def wsgi_apps() -> dict[str, tuple[WSGIApplication, Calls, WebhookReceiver | None]]:
    """The WSGI contenders: name -> (app, its handler counter, its receiver if any)."""
    from census_receiver.wsgi import CensusWebhookMiddleware

    apps: dict[str, tuple[WSGIApplication, Calls, WebhookReceiver | None]] = {}
    calls = Calls()
    apps["bare WSGI"] = (bare_wsgi(calls), calls, None)
    calls = Calls()
    receiver = census_receiver_for(calls, sync=True)
    middleware = CensusWebhookMiddleware(_wsgi_not_found, receiver=receiver, path=PATH)
    apps["WSGI middleware"] = (middleware, calls, receiver)
    return apps


def flask_apps() -> dict[str, tuple[WSGIApplication, Calls, WebhookReceiver | None]]:
    """The Flask contenders: a view by hand, the decorator, and the WSGI middleware."""
    from flask import Flask, request

    from census_receiver.flask import census_webhook
    from census_receiver.wsgi import CensusWebhookMiddleware

    apps: dict[str, tuple[WSGIApplication, Calls, WebhookReceiver | None]] = {}

    by_hand_calls = Calls()
    by_hand = Flask("bench_by_hand")

    @by_hand.post(PATH)
    def webhook() -> Any:
        body = request.get_data()
        received = request.headers.get("X-Signature", "")
        digest = hmac.new(SECRET, body, hashlib.sha256).digest()
        if not hmac.compare_digest(received, base64.b64encode(digest).decode()):
            return {"error": "invalid signature"}, 401
        json.loads(body)
        by_hand_calls.n += 1
        return {"status": "ok"}

    apps["Flask by hand"] = (by_hand, by_hand_calls, None)

    decorated_calls = Calls()
    receiver = WebhookReceiver(secret=SECRET)
    decorated = Flask("bench_decorator")

    @decorated.post(PATH)
    @census_webhook(receiver)
    def census(event: Event) -> None:
        decorated_calls.n += 1

    apps["Flask decorator"] = (decorated, decorated_calls, receiver)

    wrapped_calls = Calls()
    wrapped_receiver = census_receiver_for(wrapped_calls, sync=True)
    wrapped = Flask("bench_middleware")
    wrapped.wsgi_app = CensusWebhookMiddleware(  # type: ignore[method-assign]
        wrapped.wsgi_app, receiver=wrapped_receiver, path=PATH
    )
    apps["Flask + WSGI middleware"] = (wrapped, wrapped_calls, wrapped_receiver)
    return apps


def close_receivers(apps: Mapping[str, tuple[Any, Calls, WebhookReceiver | None]]) -> None:
    """Stop the worker threads of every contender's receiver."""
    for _, _, receiver in apps.values():
        if receiver is not None:
            receiver.close()
