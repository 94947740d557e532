"""ReceiverStats: counts by event and reason, handling time."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from census_receiver import ReceiverStats
from census_receiver.stats import BUCKETS


def test_record_counts_by_event_and_reason() -> None:
    stats = ReceiverStats()
    stats.record("sync.failed", "handled", 0.002)
    stats.record("sync.failed", "handled", 0.004)
    stats.record("sync.failed", "duplicate", 0.001)
    stats.record(None, "invalid_signature", 0.0)
    assert stats.counts() == {
        ("sync.failed", "handled"): 2,
        ("sync.failed", "duplicate"): 1,
        ("-", "invalid_signature"): 1,
    }
    assert stats.count("sync.failed") == 3
    assert stats.count(reason="handled") == 2
    assert stats.count() == 4


def test_timings_sum_max_and_buckets() -> None:
    stats = ReceiverStats()
    for seconds in (0.001, 0.02, 3.0, 60.0):
        stats.record("sync.started", "handled", seconds)
    timing = stats.timings()["sync.started"]
    assert timing.count == 4 and timing.max == 60.0
    assert abs(timing.total - 63.021) < 1e-9
    cumulative = timing.cumulative()
    assert cumulative[BUCKETS.index(0.005)] == 1
    assert cumulative[BUCKETS.index(0.025)] == 2
    assert cumulative[BUCKETS.index(5.0)] == 3
    assert cumulative[-1] == 4


def test_bucket_bounds_are_inclusive() -> None:
    stats = ReceiverStats()
    stats.record("e", "handled", 0.005)
    assert stats.timings()["e"].cumulative()[0] == 1


def test_snapshot_is_json_ready() -> None:
    stats = ReceiverStats()
    stats.record("sync.failed", "handled", 0.5)
    snapshot = json.loads(json.dumps(stats.snapshot()))
    assert snapshot["deliveries"] == [{"event": "sync.failed", "outcome": "handled", "count": 1}]
    assert snapshot["handling_seconds"]["sync.failed"] == {"count": 1, "sum": 0.5, "max": 0.5}


def test_copies_are_independent_of_later_records() -> None:
    stats = ReceiverStats()
    stats.record("e", "handled", 0.1)
    counts, timings = stats.counts(), stats.timings()
    stats.record("e", "handled", 0.1)
    assert counts[("e", "handled")] == 1 and timings["e"].count == 1


def test_reset_forgets_everything() -> None:
    stats = ReceiverStats()
    stats.record("e", "handled", 0.1)
    stats.reset()
    assert stats.count() == 0 and stats.timings() == {}


def test_concurrent_records_are_all_counted() -> None:
    stats = ReceiverStats()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: stats.record("e", "handled", 0.001), range(4000)))
    assert stats.count() == 4000 and stats.timings()["e"].count == 4000
