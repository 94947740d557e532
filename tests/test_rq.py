"""census_receiver.rq without a Redis server: job ids, and the options enqueue_to refuses.

What enqueue_to does with a real queue and worker is in integration/test_rq.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis
from rq import Queue

from census_receiver import ConfigurationError, parse_event
from census_receiver.rq import enqueue_to, job_id_for
from census_receiver.testing import make_body

JOB = "tests.integration.rq_jobs.record"


@pytest.fixture
def queue() -> Queue:
    """A queue over a client that never connects: nothing here talks to Redis."""
    return Queue("census-test", connection=redis.Redis(host="127.0.0.1", port=9))


def test_job_id_for_documented_events_is_readable() -> None:
    failed = parse_event(make_body("sync.failed"))
    raised = parse_event(make_body("sync.alert.raised"))
    assert job_id_for(failed) == "census-sync_failed-3167-3167956-324402082"
    assert job_id_for(raised) == "census-sync_alert_raised-3167-3167956-324402082-626248"


def test_job_id_for_other_events_is_a_digest_of_identity_or_payload() -> None:
    with_ids = parse_event(make_body("custom.thing"))
    other_run = parse_event(make_body("custom.thing", sync_run_id=5))
    a = parse_event(make_body("custom.thing", workspace_id=None, x=1))
    b = parse_event(make_body("custom.thing", workspace_id=None, x=2))
    ids = {job_id_for(e) for e in (with_ids, other_run, a, b)}
    assert len(ids) == 4 and all(i.startswith("census-") and len(i) == 47 for i in ids)
    # Key order does not matter: the same payload gives the same id.
    reordered = parse_event(
        b'{"x": 1, "event": "custom.thing", "sync_id": 3167956, "sync_run_id": 324399613}'
    )
    assert job_id_for(reordered) == job_id_for(a)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda q: enqueue_to(object(), JOB), "rq.Queue"),  # type: ignore[arg-type]
        (
            lambda q: enqueue_to(Queue("x", connection=q.connection, is_async=False), JOB),
            "is_async",
        ),
        (lambda q: enqueue_to(q, JOB, result_ttl=60), "result_ttl"),
        (lambda q: enqueue_to(q, JOB, job_id="fixed"), "job_id must be"),  # type: ignore[arg-type]
        (lambda q: enqueue_to(q, JOB, args=()), "sets args"),
        (lambda q: enqueue_to(q, JOB, pipeline=None), "pipeline"),
        (lambda q: enqueue_to(q, ""), "dotted path"),
    ],
)
def test_misconfiguration_is_refused(queue: Queue, make: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make(queue)
