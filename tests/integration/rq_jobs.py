"""Job functions the RQ worker started by tests/integration/test_rq.py runs, in its own process."""

from __future__ import annotations

import json
from typing import Any

from rq import get_current_job

from census_receiver.events import event_from_payload

#: Redis keys the jobs write, for the test to read back.
COUNTER = "census-test:runs:{}"
PAYLOADS = "census-test:payloads"


def record(payload: dict[str, Any]) -> str:
    """Count one run per event (by sync run) and keep the payload it received."""
    job = get_current_job()
    assert job is not None
    event = event_from_payload(payload)
    job.connection.incr(COUNTER.format(event.sync_run_id))
    job.connection.rpush(PAYLOADS, json.dumps(payload, sort_keys=True))
    return event.event
