"""Sync runs: put together from their events in any order, timed, watched, summed up.

The pure part (``census_receiver.runs``) and the journal's record of runs, on a
real SQLite file and a real PostgreSQL server, driven through a receiver: every
order of a run's events (with duplicates) gives the same record, and
``on_run_finished`` is called once. Time is a clock the test moves.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from census_receiver import ConfigurationError, WebhookReceiver
from census_receiver.journal import Journal, SQLiteJournal
from census_receiver.runs import RunRecord, health_of, missing_events, run_status
from census_receiver.testing import make_delivery

from .conftest import SECRET
from .support import Clock

RUN = 324399613


#: A successful run's events, as Census sends them, with the seconds between them.
SUCCESS = [
    ("sync.triggered", {}, 0.0),
    ("sync.started", {}, 30.0),
    ("sync.completed", {"status": "ok"}, 120.0),
    ("sync.success", {}, 0.5),
]


def deliver(receiver: WebhookReceiver, name: str, **fields: Any) -> str:
    d = make_delivery(name, secret=SECRET, **{"sync_run_id": RUN, **fields})
    return receiver.handle(d.body, d.headers).reason


# -- the pure part -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seen", "completed_status", "expected"),
    [
        ({"triggered"}, None, "triggered"),
        ({"triggered", "started"}, None, "started"),
        ({"started", "completed"}, "ok", "succeeded"),
        ({"completed"}, "emergency", "failed"),
        ({"completed", "failed"}, "ok", "failed"),  # sync.failed is the final word
        ({"success"}, None, "succeeded"),
    ],
)
def test_run_status_follows_from_which_events_arrived(
    seen: set[str], completed_status: str | None, expected: str
) -> None:
    assert (
        run_status(
            triggered="triggered" in seen,
            started="started" in seen,
            completed="completed" in seen,
            completed_status=completed_status,
            succeeded="success" in seen,
            failed="failed" in seen,
        )
        == expected
    )


def test_missing_events_are_named_only_for_finished_runs() -> None:
    assert missing_events(("sync.completed",), "failed") == (
        "sync.triggered",
        "sync.started",
        "sync.failed",
    )
    assert missing_events(("sync.triggered",), "triggered") == ()


def run_record(status: str, duration: float | None, finished: float | None) -> RunRecord:
    from census_receiver.journal.records import from_timestamp

    return RunRecord(1, 7, 3, status, None, None, from_timestamp(finished), None, None, duration)


def test_health_counts_rates_and_percentiles() -> None:
    runs = [run_record("succeeded", float(d), 100.0 + d) for d in range(1, 20)]
    runs.append(run_record("failed", 500.0, 1000.0))
    runs.append(run_record("started", None, None))
    health = health_of(7, runs)
    assert (health.runs, health.succeeded, health.failed, health.open_runs) == (20, 19, 1, 1)
    assert health.success_rate == pytest.approx(0.95)
    assert health.median_duration == pytest.approx(10.5)
    assert health.p95_duration == 19.0
    assert health.last_success is not None and health.last_success.timestamp() == 119.0
    assert health.last_failure is not None and health.last_failure.timestamp() == 1000.0


def test_health_of_a_sync_without_finished_runs_has_no_rates() -> None:
    health = health_of(7, [run_record("triggered", None, None)])
    assert (health.runs, health.success_rate, health.median_duration) == (0, None, None)


# -- the journal's run records -------------------------------------------------------------------


ORDERS = list(itertools.permutations(range(4)))


@pytest.mark.parametrize("order", ORDERS, ids=str)
def test_every_arrival_order_with_duplicates_gives_the_same_run(
    journal: Journal, clock: Clock, order: tuple[int, ...]
) -> None:
    receiver = WebhookReceiver(SECRET, journal=journal)
    finished: list[RunRecord] = []
    receiver.on_run_finished(finished.append)
    # Each event "happens" at its time in the run; it arrives in the given order,
    # the first copy at its time and a duplicate a little later.
    times, now = [], 0.0
    for _, _, gap in SUCCESS:
        now += gap
        times.append(now)
    start = clock.now
    for index in order:
        name, fields, _ = SUCCESS[index]
        clock.now = start + times[index]
        assert deliver(receiver, name, **fields) in ("handled", "ignored")
        clock.now += 1
        assert deliver(receiver, name, **fields) == "duplicate"
    run = journal.run(RUN)
    assert run is not None
    assert (run.status, run.completed_status, run.missing) == ("succeeded", "ok", ())
    assert run.queued_seconds == 30.0 and run.duration_seconds == 120.0
    assert run.received == tuple(name for name, _, _ in SUCCESS)
    assert len(finished) == 1 and finished[0].sync_run_id == RUN


def test_a_failed_run_with_an_alert_and_a_missing_event(journal: Journal, clock: Clock) -> None:
    receiver = WebhookReceiver(SECRET, journal=journal)
    deliver(receiver, "sync.triggered")
    clock.now += 5
    deliver(receiver, "sync.started")
    clock.now += 40
    deliver(receiver, "sync.alert.raised", alert_instance_id=626248, message="Sync Failed")
    deliver(receiver, "sync.failed")  # sync.completed never came
    run = journal.run(RUN)
    assert run is not None and run.status == "failed"
    assert run.missing == ("sync.completed",)
    assert run.duration_seconds == 40.0
    (alert,) = run.alerts
    assert (alert.kind, alert.alert_instance_id, alert.message) == (
        "raised",
        626248,
        "Sync Failed",
    )
    assert [r.sync_run_id for r in journal.runs(status="failed")] == [RUN]
    assert journal.runs(status="succeeded") == []


def test_pruning_keeps_a_recent_alert_whose_run_has_no_lifecycle_event_yet(
    journal: Journal, clock: Clock
) -> None:
    receiver = WebhookReceiver(SECRET, journal=journal)
    deliver(receiver, "sync.alert.raised", alert_instance_id=1, message="first")
    journal.prune()  # the alert is minutes old, its run not yet seen
    clock.now += 60
    deliver(receiver, "sync.triggered")
    run = journal.run(RUN)
    assert run is not None and [a.message for a in run.alerts] == ["first"]
    # An alert whose run never came is removed once past the retention.
    deliver(receiver, "sync.alert.raised", sync_run_id=RUN + 1, alert_instance_id=2)
    clock.now += 31 * 86400
    journal.prune()
    deliver(receiver, "sync.triggered", sync_run_id=RUN + 1)
    later = journal.run(RUN + 1)
    assert later is not None and later.alerts == ()


def test_on_run_finished_failing_is_retried_with_the_delivery_then_called_once(
    journal: Journal,
) -> None:
    receiver = WebhookReceiver(SECRET, journal=journal)
    calls: list[RunRecord] = []
    broken = [True]

    @receiver.on_run_finished
    def start_dbt_build(run: RunRecord) -> None:
        if broken[0]:
            raise ConnectionError("dbt Cloud is down")
        calls.append(run)

    deliver(receiver, "sync.started")
    assert deliver(receiver, "sync.completed", status="ok") == "handler_error"  # answered 500
    broken[0] = False
    assert deliver(receiver, "sync.completed", status="ok") == "handled"  # Census retries
    assert deliver(receiver, "sync.success") == "ignored"  # the run's hooks already ran
    assert len(calls) == 1 and calls[0].status == "succeeded"


def test_runs_list_newest_first_and_by_sync(journal: Journal, clock: Clock) -> None:
    receiver = WebhookReceiver(SECRET, journal=journal)
    for run_id, sync_id in ((1, 10), (2, 20), (3, 10)):
        clock.now += 60
        d = make_delivery("sync.triggered", secret=SECRET, sync_run_id=run_id, sync_id=sync_id)
        receiver.handle(d.body, d.headers)
    assert [r.sync_run_id for r in journal.runs()] == [3, 2, 1]
    assert [r.sync_run_id for r in journal.runs(sync_id=10)] == [3, 1]
    assert journal.syncs() == [10, 20]
    health = journal.sync_health(10)
    assert (health.runs, health.open_runs) == (0, 2)


def test_overdue_runs_are_found_with_a_clock_and_notified_once(
    journal: Journal, clock: Clock
) -> None:
    receiver = WebhookReceiver(SECRET, journal=journal)
    late: list[int] = []
    later: list[int] = []
    receiver.on_run_overdue(after=timedelta(hours=1))(lambda run: late.append(run.sync_run_id))
    receiver.on_run_overdue(after=timedelta(hours=2))(lambda run: later.append(run.sync_run_id))
    deliver(receiver, "sync.triggered")
    clock.now += 3599
    assert journal.overdue_runs(timedelta(hours=1)) == []
    receiver.run_pending()
    clock.now += 2
    assert [r.sync_run_id for r in journal.overdue_runs(timedelta(hours=1))] == [RUN]
    receiver.run_pending()
    receiver.run_pending()
    assert (late, later) == ([RUN], [])
    clock.now += 3600
    receiver.run_pending()
    assert (late, later) == ([RUN], [RUN])
    deliver(receiver, "sync.success")
    assert journal.overdue_runs(timedelta(hours=1)) == []


def test_a_failing_overdue_hook_is_called_again_at_the_next_check(
    journal: Journal, clock: Clock
) -> None:
    receiver = WebhookReceiver(SECRET, journal=journal)
    attempts: list[int] = []

    @receiver.on_run_overdue(after=timedelta(minutes=30))
    def page(run: RunRecord) -> None:
        attempts.append(run.sync_run_id)
        if len(attempts) == 1:
            raise ConnectionError("pager down")

    deliver(receiver, "sync.started")
    clock.now += 3600
    receiver.run_pending()
    receiver.run_pending()
    receiver.run_pending()
    assert attempts == [RUN, RUN]


def test_run_hooks_need_a_journal() -> None:
    receiver = WebhookReceiver(SECRET)
    with pytest.raises(ConfigurationError, match="needs a journal"):
        receiver.on_run_finished(print)
    with pytest.raises(ConfigurationError, match="needs a journal"):
        receiver.on_run_overdue(after=timedelta(hours=1))


def test_overdue_needs_a_positive_timedelta(tmp_path: Path) -> None:
    receiver = WebhookReceiver(SECRET, journal=SQLiteJournal(tmp_path / "j.db"))
    with pytest.raises(ConfigurationError, match="positive timedelta"):
        receiver.on_run_overdue(after=7200)  # type: ignore[arg-type]
