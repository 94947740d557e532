"""Exactly once across worker processes: real servers sharing one Redis.

gunicorn with sync workers around the WSGI middleware, and ``uvicorn --workers``
around the ASGI middleware with the asyncio Redis client, each serve
tests/integration/mp_app.py. 200 distinct events are each delivered twice at
the same moment, from 16 client threads; a delivery answered 409 or 503 is
retried, as Census would (sooner, to keep the test short). Every event must be
handled exactly once: the handler increments a counter per event in Redis.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from census_receiver.testing import Delivery, make_delivery

from ..conftest import SECRET
from ..redis_server import RedisServer
from .multiworker import running

EVENTS = 200
WORKERS = 3
#: Keys written by mp_app's handlers.
HANDLED = "mp:handled:{}"
PIDS = "mp:pids"


@pytest.fixture(params=["gunicorn", "uvicorn"])
def server(
    request: pytest.FixtureRequest, redis_server: RedisServer, tmp_path: Path
) -> Iterator[str]:
    """Start the server with its workers; yield its base URL; stop it and its workers."""
    redis_server.flush()
    target = {"gunicorn": "wsgi_app", "uvicorn": "asgi_app"}[request.param]
    with running(
        str(request.param),
        f"tests.integration.mp_app:{target}",
        env={"CENSUS_WEBHOOK_SECRET": SECRET, "CENSUS_TEST_REDIS_URL": redis_server.url},
        log=tmp_path / "server.log",
        workers=WORKERS,
    ) as base:
        yield base


def deliver_until_acknowledged(
    client: httpx.Client, d: Delivery, pair: threading.Barrier
) -> list[str]:
    """POST like Census: retry on 409 and 503 (after 50 ms, not 4 s) until a 2xx."""
    pair.wait(10)  # both copies of the event go out together
    statuses: list[str] = []
    for _ in range(200):
        response = client.post("/webhooks/census", content=d.body, headers=d.headers)
        statuses.append(response.json().get("status") or str(response.status_code))
        if response.is_success:
            return statuses
        assert response.status_code in (409, 503), response.text
        time.sleep(0.05)
    raise AssertionError(f"never acknowledged: {statuses[-5:]}")


def test_each_event_delivered_twice_concurrently_is_handled_exactly_once(
    server: str, redis_server: RedisServer
) -> None:
    deliveries = [
        make_delivery("sync.failed", secret=SECRET, sync_run_id=run) for run in range(EVENTS)
    ]
    pairs = [threading.Barrier(2) for _ in deliveries]
    jobs = [(d, pair) for d, pair in zip(deliveries, pairs, strict=True) for _ in range(2)]
    # A new connection per request, so the workers' accept() calls spread them; and
    # "Connection: close", so that the 16 threads' shared pool never holds an idle
    # connection. With keep-alive (uvicorn's default) a finished request leaves its
    # connection idle, and httpcore's pool can hand it to one thread's request while
    # another thread's pass closes it as a surplus idle connection: that request
    # then reads a closed socket (EBADF, or a hang until its read timeout). It was
    # the uvicorn case's failure now and then in full runs, where coverage's tracing
    # widens the window (encode/httpcore#1110).
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=0)
    with (
        httpx.Client(
            base_url=server, timeout=15, limits=limits, headers={"Connection": "close"}
        ) as client,
        ThreadPoolExecutor(16) as pool,
    ):
        answers = list(pool.map(lambda job: deliver_until_acknowledged(client, *job), jobs))
    with redis_server.client() as r:
        counts = [int(r.get(HANDLED.format(run)) or 0) for run in range(EVENTS)]
        pids = r.smembers(PIDS)
    # Every answer sequence, summarised, so that a failure says what the server did.
    seen = Counter(" > ".join(statuses) for statuses in answers).most_common(8)
    wrong = {run: n for run, n in enumerate(counts) if n != 1}
    assert not wrong, f"handled other than once (run: times): {wrong}; answers: {seen}"
    finals = Counter(statuses[-1] for statuses in answers)
    # One copy of each event ran the handler; the other found it done.
    assert finals == {"ok": EVENTS, "duplicate": EVENTS}, f"answers: {seen}"
    assert len(pids) >= 2, f"the deliveries were all served by one worker process: {pids}"
