"""The 10-second budget over real HTTP: answer 503 at the deadline, let the retry find the result.

Census gives up on an attempt after 10 s and retries it. With dedup on, an ASGI
receiver answers 503 at its deadline while the handlers keep running; Census's
next attempt gets 409 while they still run, then 200 ``duplicate`` once they
succeeded, and the handler never runs twice. (A WSGI receiver runs handlers on
the request's thread, which cannot answer before they return.) When it is Redis
that stops answering (a paused server, not a refused connection), both stacks
answer 503 at the deadline, and once Redis is back the next retry is handled:
the claim Redis applied late does not hold the delivery for its lease. Shown
under uvicorn (ASGI middleware, async path) and Werkzeug (WSGI middleware, sync
path), with the Redis store, and with a deadline of 0.3 s instead of 8 s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from census_receiver import Event, WebhookReceiver
from census_receiver.dedup import RedisDedupStore
from census_receiver.starlette import CensusWebhookMiddleware as ASGIMiddleware
from census_receiver.testing import make_delivery
from census_receiver.wsgi import CensusWebhookMiddleware as WSGIMiddleware
from tests.adapter_contract import PATH, WAIT
from tests.conftest import SECRET
from tests.redis_server import RedisServer

from .conftest import Served


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    redis_server.flush()
    with redis_server.client() as c:
        yield c


async def not_found(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def not_found_wsgi(environ: Any, start_response: Any) -> list[bytes]:
    start_response("404 Not Found", [])
    return []


def serve(
    stack: str,
    receiver: WebhookReceiver,
    uvicorn_server: Callable[[Any], Served],
    werkzeug_server: Callable[[Any], Served],
) -> Served:
    if stack == "asgi-uvicorn":
        return uvicorn_server(ASGIMiddleware(not_found, receiver=receiver, path=PATH))
    return werkzeug_server(WSGIMiddleware(not_found_wsgi, receiver=receiver, path=PATH))


STACKS = pytest.mark.parametrize("stack", ["asgi-uvicorn", "wsgi-werkzeug"])


@pytest.mark.parametrize("stack", ["asgi-uvicorn"])
def test_slow_handler_gets_503_at_the_deadline_and_the_retry_a_duplicate(
    stack: str,
    client: redis.Redis,
    uvicorn_server: Callable[[Any], Served],
    werkzeug_server: Callable[[Any], Served],
) -> None:
    receiver = WebhookReceiver(SECRET, dedup=RedisDedupStore(client), deadline=0.3)
    started, release, finished = threading.Event(), threading.Event(), threading.Event()
    calls: list[Event] = []

    @receiver.on("sync.failed")
    def slow(event: Event) -> None:
        calls.append(event)
        started.set()
        assert release.wait(WAIT)
        finished.set()

    served = serve(stack, receiver, uvicorn_server, werkzeug_server)
    d = make_delivery("sync.failed", secret=SECRET)
    with httpx.Client(base_url=served.url, timeout=WAIT) as http:

        def attempt() -> httpx.Response:
            return http.post(PATH, content=d.body, headers=d.headers)

        first = attempt()
        # Answered at the deadline, long before Census's 10 s, with a non-2xx: retry later.
        assert (first.status_code, first.json()) == (
            503,
            {"error": "still handling this delivery; retry later"},
        )
        assert started.wait(WAIT) and not finished.is_set()
        second = attempt()  # a retry while the handler still runs
        assert second.status_code == 409
        release.set()
        assert finished.wait(WAIT)
        # The claim is settled just after the handler returns; Census's next retry
        # (4 s later in real life) then finds the delivery done.
        answers = []
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            answer = attempt()
            answers.append(answer.status_code)
            if answer.status_code != 409:
                break
            time.sleep(0.02)
        assert (answer.status_code, answer.json()) == (200, {"status": "duplicate"}), answers
    assert len(calls) == 1
    reasons = receiver.stats.counts()
    assert reasons[("sync.failed", "deadline")] == 1
    assert reasons[("sync.failed", "duplicate")] == 1
    receiver.close()


@STACKS
def test_a_paused_redis_gets_503_at_the_deadline_and_the_retry_is_handled_once(
    stack: str,
    redis_server: RedisServer,
    client: redis.Redis,
    uvicorn_server: Callable[[Any], Served],
    werkzeug_server: Callable[[Any], Served],
) -> None:
    # The client waits up to 5 s for an answer: far past the deadline.
    receiver = WebhookReceiver(SECRET, dedup=RedisDedupStore(client), deadline=0.3)
    calls: list[Event] = []
    receiver.on("sync.failed")(calls.append)
    served = serve(stack, receiver, uvicorn_server, werkzeug_server)
    d = make_delivery("sync.failed", secret=SECRET)
    with httpx.Client(base_url=served.url, timeout=WAIT) as http:
        with redis_server.paused():
            began = time.monotonic()
            first = http.post(PATH, content=d.body, headers=d.headers)
            elapsed = time.monotonic() - began
        # Answered at the deadline while Redis said nothing, not when it came back.
        assert (first.status_code, first.json()) == (
            503,
            {"error": "the deduplication store is unavailable"},
        )
        assert elapsed < 3, elapsed
        assert calls == []
        # Redis answers the held-up claim now, and it is released as it lands:
        # Census's retry is handled at once, not after the claim's 60 s lease.
        answers = []
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            answer = http.post(PATH, content=d.body, headers=d.headers)
            answers.append(answer.json())
            if answer.is_success:
                break
            assert answer.status_code == 409, answers
            time.sleep(0.02)
    assert answers[-1] == {"status": "ok"}, answers
    assert time.monotonic() - began < 5, answers
    assert len(calls) == 1
    receiver.close()
