"""census_receiver.rq: acknowledge Census only once the event is a job in RQ.

The jobs run in a real ``rq worker --burst`` process, against the suite's
redis-server; they write what they saw into Redis for the test to read.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from rq import Queue
from rq.job import Job, JobStatus

from census_receiver import WebhookReceiver, parse_event
from census_receiver.dedup import RedisDedupStore
from census_receiver.rq import enqueue_to, job_id_for
from census_receiver.testing import Delivery, make_body, make_delivery
from tests.conftest import SECRET
from tests.integration.rq_jobs import COUNTER, PAYLOADS
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
JOB = "tests.integration.rq_jobs.record"


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    redis_server.flush()
    with redis_server.client() as c:
        yield c


@pytest.fixture
def queue(client: redis.Redis) -> Queue:
    return Queue("census-test", connection=client)


def run_worker(url: str, queue: str = "census-test") -> None:
    """Run a real RQ worker process until the queue is empty."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rq.cli",
            "worker",
            "--burst",
            "--url",
            url,
            "--path",
            str(ROOT),
            queue,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def runs(client: redis.Redis, sync_run_id: int) -> int:
    value = client.get(COUNTER.format(sync_run_id))
    return int(value) if value is not None else 0


def delivery(run: int, name: str = "sync.failed") -> Delivery:
    return make_delivery(name, secret=SECRET, sync_run_id=run)


def test_jobs_are_enqueued_once_per_event_and_run_by_a_worker(
    redis_server: RedisServer, client: redis.Redis, queue: Queue
) -> None:
    receiver = WebhookReceiver(SECRET)
    receiver.on("*")(enqueue_to(queue, JOB))
    deliveries = [delivery(run) for run in (1, 2, 3)]
    # Each delivery three times, as Census retries after a 2xx it did not see,
    # with no dedup store: the job id alone keeps the jobs single.
    answers = [receiver.handle(d.body, d.headers) for d in deliveries for _ in range(3)]
    assert {(o.status, o.reason) for o in answers} == {(200, "handled")}
    assert queue.count == 3
    run_worker(redis_server.url)
    assert queue.count == 0
    assert [runs(client, run) for run in (1, 2, 3)] == [1, 1, 1]
    received = sorted(client.lrange(PAYLOADS, 0, -1))
    assert received == sorted(json.dumps(d.payload, sort_keys=True).encode() for d in deliveries)
    job = Job.fetch(job_id_for(parse_event(deliveries[0].body)), connection=client)
    assert job.get_status() is JobStatus.FINISHED and job.return_value() == "sync.failed"
    # A retry arriving after the job ran finds its record and adds nothing.
    assert receiver.handle(deliveries[0].body, deliveries[0].headers).status == 200
    assert queue.count == 0
    receiver.close()


def test_concurrent_retries_make_one_job(
    redis_server: RedisServer, client: redis.Redis, queue: Queue
) -> None:
    receiver = WebhookReceiver(SECRET)
    receiver.on("*")(enqueue_to(queue, JOB))
    d = delivery(7)
    barrier = threading.Barrier(8)

    def deliver(_: int) -> int:
        barrier.wait(10)
        return receiver.handle(d.body, d.headers).status

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(deliver, range(8))) == [200] * 8
    assert queue.job_ids == [job_id_for(parse_event(d.body))]
    run_worker(redis_server.url)
    assert runs(client, 7) == 1
    receiver.close()


def test_with_dedup_duplicates_do_not_reach_the_queue(
    redis_server: RedisServer, client: redis.Redis, queue: Queue
) -> None:
    receiver = WebhookReceiver(SECRET, dedup=RedisDedupStore(client))
    receiver.on("*")(enqueue_to(queue, JOB))
    d = delivery(8)
    assert [receiver.handle(d.body, d.headers).reason for _ in range(6)] == ["handled"] + [
        "duplicate"
    ] * 5
    assert queue.count == 1
    run_worker(redis_server.url)
    assert runs(client, 8) == 1
    receiver.close()


def test_enqueue_failure_answers_500_and_the_retry_enqueues() -> None:
    with RedisServer() as server:
        c = server.client(retry=Retry(ExponentialBackoff(cap=0.1, base=0.05), 1))
        queue = Queue("census-test", connection=c)
        receiver = WebhookReceiver(SECRET)
        receiver.on("*")(enqueue_to(queue, JOB))
        d = delivery(9)
        server.stop()
        failed = receiver.handle(d.body, d.headers)
        # Not acknowledged: Census keeps the event and retries it.
        assert (failed.status, failed.reason) == (500, "handler_error")
        server.start()
        assert receiver.handle(d.body, d.headers).status == 200
        assert queue.job_ids == [job_id_for(parse_event(d.body))]
        run_worker(server.url)
        assert runs(c, 9) == 1
        receiver.close()
        c.close()


def test_async_receiver_enqueues_too(
    redis_server: RedisServer, client: redis.Redis, queue: Queue
) -> None:
    import asyncio

    receiver = WebhookReceiver(SECRET)
    receiver.on("sync.alert.*")(enqueue_to(queue, JOB))
    d = make_delivery("sync.alert.raised", secret=SECRET, sync_run_id=10)
    outcomes = [asyncio.run(receiver.handle_async(d.body, d.headers)) for _ in range(2)]
    assert [o.status for o in outcomes] == [200, 200]
    assert queue.count == 1
    run_worker(redis_server.url)
    assert runs(client, 10) == 1
    receiver.close()


def test_enqueue_options_reach_the_job(client: redis.Redis, queue: Queue) -> None:
    handler = enqueue_to(
        queue, JOB, description="census event", meta={"source": "census"}, result_ttl=-1
    )
    jid = handler(parse_event(make_body("sync.success")))
    job = Job.fetch(jid, connection=client)
    assert (job.description, job.meta, job.result_ttl) == ("census event", {"source": "census"}, -1)
    assert job.args == (json.loads(make_body("sync.success")),)
    assert handler.__name__ == "enqueue_to('census-test')"
