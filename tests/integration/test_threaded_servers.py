"""Census's 10-second budget under a threaded WSGI server while the store hangs.

gunicorn (one worker, 4 threads) serves tests/integration/hung_store_app.py,
whose Redis client gives up after 1 s. Redis is frozen (SIGSTOP) and a burst of
12 deliveries, three times the thread count, arrives at once: requests queue for
a thread, and each holds its thread until the store's timeout (1 s), so the last
wave is answered after about 3 s, well inside Census's 10 s. Once Redis is back,
the retries are handled. docs/deploy.md turns this into capacity guidance:
threads >= deliveries arriving together x store timeout / (10 s - margin).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from census_receiver.testing import Delivery, make_delivery

from ..conftest import SECRET
from ..redis_server import RedisServer
from .multiworker import running

THREADS = 4
BURST = 12
STORE_TIMEOUT = 1.0
CENSUS_BUDGET = 10.0


@pytest.fixture
def served(redis_server: RedisServer, tmp_path: Path) -> Iterator[str]:
    redis_server.flush()
    env = {
        "CENSUS_WEBHOOK_SECRET": SECRET,
        "CENSUS_TEST_REDIS_URL": redis_server.url,
        "CENSUS_TEST_REDIS_TIMEOUT": str(STORE_TIMEOUT),
    }
    with running(
        "gunicorn",
        "tests.integration.hung_store_app:app",
        env=env,
        log=tmp_path / "gunicorn.log",
        workers=1,
        threads=THREADS,
    ) as base:
        yield base


def test_a_burst_larger_than_the_threads_is_answered_within_census_budget_while_the_store_hangs(
    served: str, redis_server: RedisServer
) -> None:
    deliveries = [make_delivery("sync.failed", secret=SECRET, sync_run_id=n) for n in range(BURST)]
    limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=0)
    with httpx.Client(
        base_url=served, timeout=30, limits=limits, headers={"Connection": "close"}
    ) as client:
        # Warm the worker's Redis connection, so the claims are sent and then hang.
        warm = make_delivery("sync.started", secret=SECRET)
        assert client.post("/webhooks/census", content=warm.body, headers=warm.headers).is_success

        def timed(d: Delivery) -> tuple[int, float]:
            began = time.monotonic()
            answer = client.post("/webhooks/census", content=d.body, headers=d.headers)
            return answer.status_code, time.monotonic() - began

        with redis_server.paused(), ThreadPoolExecutor(BURST) as pool:
            answers = list(pool.map(timed, deliveries))
        assert {status for status, _ in answers} == {503}
        slowest = max(seconds for _, seconds in answers)
        # Queued in waves of THREADS, each holding a thread for the store's timeout.
        waves = -(-BURST // THREADS)
        assert slowest < min(CENSUS_BUDGET, waves * STORE_TIMEOUT + 2.0), answers
        time.sleep(0.05)  # Census's first retry, on a short scale
        retried = [
            client.post("/webhooks/census", content=d.body, headers=d.headers).json()["status"]
            for d in deliveries
        ]
    assert retried == ["ok"] * BURST
