"""The apps tests/integration/test_multiprocess.py serves with several worker processes.

Each worker process imports this module and builds its own receiver; the only
thing the workers share is Redis: the dedup store, and the counters the handler
writes (one ``INCR`` per handled delivery, keyed by sync run).

Configured by the environment: ``CENSUS_WEBHOOK_SECRET`` and ``CENSUS_TEST_REDIS_URL``.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING

import redis
import redis.asyncio

from census_receiver import Event, WebhookReceiver
from census_receiver.dedup import AsyncRedisDedupStore, RedisDedupStore
from census_receiver.starlette import CensusWebhookMiddleware as ASGIMiddleware
from census_receiver.wsgi import CensusWebhookMiddleware as WSGIMiddleware

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from census_receiver._types import Receive, Scope, Send

URL = os.environ.get("CENSUS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
HANDLED = "mp:handled:{}"
PIDS = "mp:pids"
#: Stands for the handler's real work, so that the two copies of a delivery overlap.
WORK_SECONDS = 0.01

# -- WSGI (gunicorn sync workers) ----------------------------------------------------------------

_sync = redis.Redis.from_url(URL, socket_timeout=5, socket_connect_timeout=5)
_wsgi_receiver = WebhookReceiver(dedup=RedisDedupStore(_sync))


@_wsgi_receiver.on("*")
def record(event: Event) -> None:
    time.sleep(WORK_SECONDS)
    _sync.incr(HANDLED.format(event.sync_run_id))
    _sync.sadd(PIDS, os.getpid())


def _pid(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Every other path answers the worker's process id (the test waits for all workers)."""
    body = str(os.getpid()).encode()
    start_response("200 OK", [("content-type", "text/plain"), ("content-length", str(len(body)))])
    return [body]


wsgi_app = WSGIMiddleware(_pid, receiver=_wsgi_receiver)

# -- ASGI (uvicorn --workers), with the asyncio Redis client -------------------------------------

_async = redis.asyncio.Redis.from_url(URL, socket_timeout=5, socket_connect_timeout=5)
_asgi_receiver = WebhookReceiver(dedup=AsyncRedisDedupStore(_async))


@_asgi_receiver.on("*")
async def record_async(event: Event) -> None:
    await asyncio.sleep(WORK_SECONDS)
    await _async.incr(HANDLED.format(event.sync_run_id))
    await _async.sadd(PIDS, os.getpid())


async def _pid_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    body = str(os.getpid()).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


asgi_app = ASGIMiddleware(_pid_asgi, receiver=_asgi_receiver)
