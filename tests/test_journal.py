"""The delivery journal, on a real SQLite file and a real PostgreSQL server.

Every test runs against both backends (``journal`` fixture): what is recorded,
the claim protocol it shares with the dedup stores, replay, acknowledge on
capture with retries and leases, the rejection log, retention, and a database
that cannot be written (answered 503, nothing lost). Time is a clock the test
moves, never a sleep.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from census_receiver import ConfigurationError, Event, NonRetryableError, WebhookReceiver
from census_receiver.dedup import InMemoryDedupStore
from census_receiver.journal import Journal, SQLiteJournal
from census_receiver.journal.host import Notes
from census_receiver.journal.sqlite import IDLE_READERS
from census_receiver.testing import make_delivery, sign

from .conftest import SECRET
from .support import Clock


def receiver_on(journal: Journal, **options: Any) -> tuple[WebhookReceiver, list[Event]]:
    receiver = WebhookReceiver(SECRET, journal=journal, **options)
    calls: list[Event] = []
    receiver.on("sync.failed", "sync.completed")(calls.append)
    return receiver, calls


class Flaky:
    """A handler that fails until ``fixed`` is set."""

    def __init__(self) -> None:
        self.fixed = False
        self.calls: list[Event] = []

    def __call__(self, event: Event) -> None:
        if not self.fixed:
            raise ConnectionError("the ticketing system is down")
        self.calls.append(event)


# -- what is recorded ------------------------------------------------------------------


def test_a_handled_delivery_is_recorded_with_its_body_ids_and_times(journal: Journal) -> None:
    receiver, calls = receiver_on(journal)
    d = make_delivery("sync.failed", secret=SECRET)
    assert receiver.handle(d.body, d.headers).reason == "handled" and len(calls) == 1
    (record,) = journal.deliveries()
    assert (record.event, record.workspace_id, record.sync_id, record.sync_run_id) == (
        "sync.failed",
        3167,
        3167956,
        324402082,
    )
    assert record.body == d.body  # the exact bytes
    assert (record.status, record.attempts, record.tries) == ("handled", 1, 1)
    assert record.received_at.tzinfo is UTC and record.received_at == record.updated_at
    assert record.error is None and (record.answer_status, record.answer_reason) == (
        200,
        "handled",
    )


def test_a_duplicate_is_answered_from_the_journal_and_counted(
    journal: Journal, clock: Clock
) -> None:
    receiver, calls = receiver_on(journal)
    d = make_delivery("sync.failed", secret=SECRET)
    receiver.handle(d.body, d.headers)
    clock.now += 4
    assert receiver.handle(d.body, d.headers).reason == "duplicate"
    assert len(calls) == 1
    record = journal.get(journal.deliveries()[0].id)
    assert record is not None and record.attempts == 2
    assert [(a.kind, a.status, a.reason) for a in record.history] == [
        ("census", 200, "handled"),
        ("census", 200, "duplicate"),
    ]
    assert (record.history[1].at - record.history[0].at).total_seconds() == 4


def test_an_unmatched_delivery_is_recorded_as_ignored(journal: Journal) -> None:
    receiver, calls = receiver_on(journal)
    d = make_delivery("sync.started", secret=SECRET)
    assert receiver.handle(d.body, d.headers).reason == "ignored" and calls == []
    assert [r.status for r in journal.deliveries()] == ["ignored"]


def test_a_failure_keeps_the_exception_and_a_census_retry_runs_it_again(
    journal: Journal,
) -> None:
    receiver = WebhookReceiver(SECRET, journal=journal)
    handler = Flaky()
    receiver.on("sync.failed")(handler)
    d = make_delivery("sync.failed", secret=SECRET)
    assert receiver.handle(d.body, d.headers).status == 500
    (record,) = journal.deliveries()
    assert record.status == "failed" and record.error is not None
    assert record.error.type == "ConnectionError"
    assert record.error.message == "the ticketing system is down"
    assert "Traceback (most recent call last)" in record.error.traceback
    assert "test_journal.py" in record.error.traceback
    handler.fixed = True
    assert receiver.handle(d.body, d.headers).reason == "handled"
    (record,) = journal.deliveries()
    assert (record.status, record.attempts, record.tries, record.error) == ("handled", 2, 2, None)


def test_a_non_retryable_failure_is_recorded_as_dropped(journal: Journal) -> None:
    receiver = WebhookReceiver(SECRET, journal=journal)

    @receiver.on("sync.failed")
    def give_up(event: Event) -> None:
        raise NonRetryableError("no route for this sync")

    d = make_delivery("sync.failed", secret=SECRET)
    assert receiver.handle(d.body, d.headers).reason == "dropped"
    (record,) = journal.deliveries()
    assert record.status == "dropped" and record.error is not None
    assert receiver.handle(d.body, d.headers).reason == "duplicate"


def test_handle_async_records_the_same_way(journal: Journal) -> None:
    receiver, calls = receiver_on(journal)
    d = make_delivery("sync.completed", secret=SECRET)

    async def main() -> list[str]:
        return [(await receiver.handle_async(d.body, d.headers)).reason for _ in range(2)]

    assert asyncio.run(main()) == ["handled", "duplicate"] and len(calls) == 1
    assert [r.status for r in journal.deliveries()] == ["handled"]
    receiver.close()


# -- bad input stays out ----------------------------------------------------------------


def test_forged_and_oversized_requests_add_no_body_only_a_rejection_note(
    journal: Journal,
) -> None:
    receiver = WebhookReceiver(SECRET, journal=journal, max_body_size=200)
    forged = make_delivery("sync.failed", secret=SECRET, bad_signature=True)
    big = b"x" * 500
    assert receiver.handle(forged.body, forged.headers).status == 401
    assert receiver.handle(big, {"X-Signature": sign(big, SECRET)}).status == 413
    assert receiver.check_request("GET", None, remote="10.1.2.3") is not None
    assert journal.deliveries() == []
    rejections = journal.rejections()
    assert [(r.status, r.reason, r.size) for r in rejections] == [
        (405, "method_not_allowed", 0),
        (413, "payload_too_large", 500),
        (401, "invalid_signature", len(forged.body)),
    ]
    assert rejections[0].remote == "10.1.2.3"


def test_a_verified_but_refused_payload_is_kept_as_refused(journal: Journal) -> None:
    receiver, calls = receiver_on(journal)
    body = b'{"event": "sync.failed", "workspace_id": "3167", "sync_id": 1, "sync_run_id": 2}'
    outcome = receiver.handle(body, {"X-Signature": sign(body, SECRET)})
    assert (outcome.status, outcome.reason) == (400, "malformed_payload") and calls == []
    (record,) = journal.deliveries()
    assert (record.status, record.body, record.event) == ("refused", body, "sync.failed")
    # Census retries a 400: the same record counts it.
    receiver.handle(body, {"X-Signature": sign(body, SECRET)})
    (record,) = journal.deliveries()
    assert record.attempts == 2
    # Replaying it with a parser that still refuses it leaves it refused.
    assert receiver.replay(record.id).status == 400
    assert journal.deliveries()[0].status == "refused"


def test_a_locked_database_answers_503_and_loses_nothing_committed(tmp_path: Path) -> None:
    journal = SQLiteJournal(tmp_path / "journal.db", timeout=0.1)
    receiver, calls = receiver_on(journal)
    first = make_delivery("sync.failed", secret=SECRET)
    receiver.handle(first.body, first.headers)
    second = make_delivery("sync.completed", secret=SECRET)
    other = sqlite3.connect(tmp_path / "journal.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the database
    try:
        outcome = receiver.handle(second.body, second.headers)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert (outcome.status, outcome.json()) == (
        503,
        {"error": "the delivery journal is unavailable"},
    )
    assert len(calls) == 1  # the second one's handlers did not run without a record
    # Census retries: handled now, and the first one is still there, as it was.
    assert receiver.handle(second.body, second.headers).reason == "handled"
    assert [r.status for r in journal.deliveries()] == ["handled", "handled"]
    journal.close()


def test_refusals_noted_before_a_failed_transaction_are_written_by_the_next(
    tmp_path: Path,
) -> None:
    journal = SQLiteJournal(tmp_path / "journal.db", timeout=0.1)
    receiver, _ = receiver_on(journal)
    forged = make_delivery("sync.failed", secret=SECRET, bad_signature=True)
    assert receiver.handle(forged.body, forged.headers).status == 401  # noted in memory
    d = make_delivery("sync.completed", secret=SECRET)
    other = sqlite3.connect(tmp_path / "journal.db", isolation_level=None)
    # The database refuses the delivery's row: the transaction fails after it began
    # (and after the notes were written in it), and rolls back.
    other.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON census_deliveries "
        "BEGIN SELECT RAISE(ABORT, 'disk full, say'); END"
    )
    try:
        assert receiver.handle(d.body, d.headers).status == 503
    finally:
        other.execute("DROP TRIGGER refuse")
        other.close()
    assert [(r.status, r.reason) for r in journal.rejections()] == [(401, "invalid_signature")]
    journal.close()


def _open_files(path: Path) -> int:
    """How many of this process's file descriptors are open on ``path``."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(path.resolve()))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to count open files")
def test_reads_from_many_short_lived_threads_leave_few_connections_open(tmp_path: Path) -> None:
    # A thread per request (threaded WSGI servers, Prometheus scrapes) must not
    # leave a connection open per thread.
    journal = SQLiteJournal(tmp_path / "journal.db")
    receiver, _ = receiver_on(journal)
    d = make_delivery("sync.failed", secret=SECRET)
    receiver.handle(d.body, d.headers)  # the writer's connection, open from now on
    baseline = _open_files(tmp_path / "journal.db")
    for _ in range(50):
        reader = threading.Thread(target=journal.deliveries)
        reader.start()
        reader.join(5)
    assert [r.status for r in journal.deliveries()] == ["handled"]
    assert _open_files(tmp_path / "journal.db") <= baseline + IDLE_READERS
    journal.close()
    assert _open_files(tmp_path / "journal.db") == 0


def test_notes_are_handed_over_once_and_put_back_ahead_of_newer_ones() -> None:
    notes = Notes[int](limit=3)
    assert not notes and notes.take() == []
    for n in (1, 2):
        notes.add(n)
    taken = notes.take()
    assert taken == [1, 2] and not notes
    notes.add(3)
    notes.add(4)
    notes.put_back(taken)  # the transaction failed: 1 and 2 are older than 3 and 4
    assert notes.take() == [2, 3, 4]  # past the limit, the oldest went


# -- replay -------------------------------------------------------------------------------


def test_replay_runs_a_failed_delivery_once_fixed_then_census_gets_duplicate(
    journal: Journal,
) -> None:
    receiver = WebhookReceiver(SECRET, journal=journal)
    handler = Flaky()
    receiver.on("sync.failed")(handler)
    d = make_delivery("sync.failed", secret=SECRET)
    for _ in range(6):  # Census's attempt and its five retries, all failed
        assert receiver.handle(d.body, d.headers).status == 500
    (record,) = journal.deliveries(status="failed")
    handler.fixed = True
    outcome = receiver.replay(record.id)
    assert (outcome.status, outcome.reason) == (200, "handled") and len(handler.calls) == 1
    assert receiver.replay(record.id).reason == "duplicate"  # done: not run twice
    assert receiver.handle(d.body, d.headers).reason == "duplicate"  # a late Census retry
    assert len(handler.calls) == 1
    assert receiver.replay(record.id, force=True).reason == "handled"
    assert len(handler.calls) == 2
    history = journal.get(record.id)
    assert history is not None
    assert [a.kind for a in history.history].count("replay") == 2


def test_replay_of_an_unknown_id_raises_key_error(journal: Journal) -> None:
    receiver, _ = receiver_on(journal)
    with pytest.raises(KeyError):
        receiver.replay(12345)


def test_replay_without_a_journal_says_what_is_missing() -> None:
    with pytest.raises(ConfigurationError, match="needs a journal"):
        WebhookReceiver(SECRET).replay(1)


# -- acknowledge on capture ------------------------------------------------------------------


def test_on_capture_answers_accepted_and_a_worker_runs_the_handlers(journal: Journal) -> None:
    receiver, calls = receiver_on(journal, acknowledge="on_capture")
    d = make_delivery("sync.failed", secret=SECRET)
    outcome = receiver.handle(d.body, d.headers)
    assert (outcome.status, outcome.json()) == (200, {"status": "accepted"}) and calls == []
    assert receiver.handle(d.body, d.headers).reason == "duplicate"
    assert [r.status for r in journal.deliveries()] == ["pending"]
    assert receiver.run_pending() == 1 and len(calls) == 1
    assert receiver.run_pending() == 0
    assert [r.status for r in journal.deliveries()] == ["handled"]


def test_on_capture_failures_retry_with_backoff_then_end_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    journal = SQLiteJournal(tmp_path / "j.db", clock=clock, max_tries=3, backoff=10)
    receiver = WebhookReceiver(SECRET, journal=journal, acknowledge="on_capture")
    handler = Flaky()
    receiver.on("sync.failed")(handler)
    d = make_delivery("sync.failed", secret=SECRET)
    receiver.handle(d.body, d.headers)
    ran = [receiver.run_pending()]  # try 1 fails: due again in 10 s
    clock.now += 9
    ran.append(receiver.run_pending())  # not yet
    clock.now += 1
    ran.append(receiver.run_pending())  # try 2 fails: due again in 20 s
    clock.now += 20
    ran.append(receiver.run_pending())  # try 3 fails: out of tries
    clock.now += 1000
    ran.append(receiver.run_pending())
    assert ran == [1, 0, 1, 1, 0]
    (record,) = journal.deliveries()
    assert (record.status, record.tries) == ("failed", 3) and record.error is not None
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"][-1] == (
        f"census delivery #{record.id} failed for good after 3 tries; it stays in the "
        "journal as failed: census-receiver replay runs it again"
    )
    handler.fixed = True
    assert receiver.replay(record.id).reason == "handled"
    journal.close()


def test_a_run_whose_worker_died_is_taken_over_after_its_lease(
    journal: Journal, clock: Clock
) -> None:
    receiver, calls = receiver_on(journal, acknowledge="on_capture")
    d = make_delivery("sync.failed", secret=SECRET)
    receiver.handle(d.body, d.headers)
    taken = journal.take_due()  # a worker takes it, then dies before settling
    assert len(taken) == 1 and journal.take_due() == []
    clock.now += journal.lease - 1
    assert receiver.run_pending() == 0  # its lease still holds
    clock.now += 2
    assert receiver.run_pending() == 1 and len(calls) == 1
    # The dead worker's late settle finds its claim gone and changes nothing.
    _, claim = taken[0]
    journal.settle(claim, None, None, RuntimeError("late"))
    assert journal.deliveries()[0].status == "handled"


def test_on_capture_needs_a_journal() -> None:
    with pytest.raises(ConfigurationError, match="needs a journal"):
        WebhookReceiver(SECRET, acknowledge="on_capture")


def test_a_journal_and_a_dedup_store_are_one_concept_not_two(tmp_path: Path) -> None:
    journal = SQLiteJournal(tmp_path / "j.db")
    with pytest.raises(ConfigurationError, match="not both"):
        WebhookReceiver(SECRET, journal=journal, dedup=InMemoryDedupStore())
    journal.close()


# -- reading and retention ------------------------------------------------------------------


def test_deliveries_filter_and_page_newest_first(journal: Journal) -> None:
    receiver, _ = receiver_on(journal)
    for run in range(5):
        d = make_delivery("sync.failed", secret=SECRET, sync_run_id=run, sync_id=run % 2)
        receiver.handle(d.body, d.headers)
    started = make_delivery("sync.started", secret=SECRET)
    receiver.handle(started.body, started.headers)
    assert [r.sync_run_id for r in journal.deliveries(event="sync.failed")] == [4, 3, 2, 1, 0]
    assert [r.sync_run_id for r in journal.deliveries(sync_id=1)] == [3, 1]
    assert [r.event for r in journal.deliveries(status="ignored")] == ["sync.started"]
    first_page = journal.deliveries(event="sync.failed", limit=2)
    next_page = journal.deliveries(event="sync.failed", limit=2, before=first_page[-1].id)
    assert [r.sync_run_id for r in first_page + next_page] == [4, 3, 2, 1]
    assert [r.sync_run_id for r in journal.deliveries(sync_run_id=2)] == [2]
    assert journal.counts() == {"handled": 5, "ignored": 1}


def test_prune_removes_old_settled_records_and_keeps_pending_ones(
    journal: Journal, clock: Clock
) -> None:
    receiver, _ = receiver_on(journal)
    old = make_delivery("sync.failed", secret=SECRET)
    receiver.handle(old.body, old.headers)
    capture = WebhookReceiver(SECRET, journal=journal, acknowledge="on_capture")
    pending = make_delivery("sync.completed", secret=SECRET)
    capture.handle(pending.body, pending.headers)
    clock.now += journal.retention + 1
    recent = make_delivery("sync.failed", secret=SECRET, sync_run_id=1)
    receiver.handle(recent.body, recent.headers)
    assert journal.prune() == 1
    assert sorted(r.status for r in journal.deliveries()) == ["handled", "pending"]


@pytest.mark.parametrize(
    ("option", "value"), [("lease", 0), ("retention", -1), ("max_tries", 0), ("backoff", "x")]
)
def test_bad_settings_are_refused(tmp_path: Path, option: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=option):
        SQLiteJournal(tmp_path / "j.db", **{option: value})  # type: ignore[arg-type]


def test_an_in_memory_sqlite_database_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="file path"):
        SQLiteJournal(":memory:")


def test_a_worker_renews_the_lease_of_a_long_handler_so_nobody_takes_it_over(
    tmp_path: Path,
) -> None:
    # Real time here: the renewal runs on its own thread, every third of the lease.
    journal = SQLiteJournal(tmp_path / "j.db", lease=0.3)
    receiver = WebhookReceiver(SECRET, journal=journal, acknowledge="on_capture")
    taken_meanwhile: list[int] = []

    @receiver.on("sync.failed")
    def slow(event: Event) -> None:
        for _ in range(5):  # four leases long
            time.sleep(0.25)
            taken_meanwhile.extend(record.id for record, _ in journal.take_due())

    d = make_delivery("sync.failed", secret=SECRET)
    receiver.handle(d.body, d.headers)
    assert receiver.run_pending() == 1
    assert taken_meanwhile == []
    assert [r.status for r in journal.deliveries()] == ["handled"]
    journal.close()


def test_rejection_notes_are_written_when_the_journal_closes(tmp_path: Path) -> None:
    journal = SQLiteJournal(tmp_path / "j.db")
    receiver = WebhookReceiver(SECRET, journal=journal)
    forged = make_delivery("sync.failed", secret=SECRET, bad_signature=True)
    receiver.handle(forged.body, forged.headers)
    journal.close()  # a short script: no journal write after the refusal
    again = SQLiteJournal(tmp_path / "j.db")
    assert [r.reason for r in again.rejections()] == ["invalid_signature"]
    again.close()


def test_a_postgresql_connection_string_is_refused_by_the_sqlite_journal() -> None:
    for conninfo in ("postgresql://census@db/census", "host=db dbname=census user=census"):
        with pytest.raises(ConfigurationError, match="use PostgresJournal"):
            SQLiteJournal(conninfo)
