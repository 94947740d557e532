"""A WSGI app whose receiver's dedup store is a Redis that the test may freeze.

Configured by the environment: ``CENSUS_WEBHOOK_SECRET``, ``CENSUS_TEST_REDIS_URL``
and ``CENSUS_TEST_REDIS_TIMEOUT`` (the client's socket timeout, in seconds).
Every other path answers the worker's process id.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from census_receiver import Event, WebhookReceiver
from census_receiver.dedup import RedisDedupStore
from census_receiver.wsgi import CensusWebhookMiddleware

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

_timeout = float(os.environ.get("CENSUS_TEST_REDIS_TIMEOUT", "1"))
_client = redis.Redis.from_url(
    os.environ["CENSUS_TEST_REDIS_URL"],
    socket_timeout=_timeout,
    socket_connect_timeout=_timeout,
    retry=Retry(NoBackoff(), 0),
)
receiver = WebhookReceiver(dedup=RedisDedupStore(_client))


@receiver.on("*")
def handled(event: Event) -> None:
    """Nothing to do: the test watches the answers."""


def _pid(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    body = str(os.getpid()).encode()
    start_response("200 OK", [("content-type", "text/plain"), ("content-length", str(len(body)))])
    return [body]


app = CensusWebhookMiddleware(_pid, receiver=receiver)
