"""The journal's record of sync runs: noted as lifecycle events arrive, read back as RunRecords.

Every backend gets this through ``Journal``. A lifecycle or alert event is
noted once, when its delivery is first recorded, in the same transaction: the
run's row keeps the earliest receive time of each event, so out-of-order and
repeated arrival give the same row, across processes and hosts. What the times
mean (status, durations, missing events) is ``census_receiver.runs``.

``on_run_finished`` hooks run exactly once per run: the delivery that finds the
run finished takes the run's *finish lease* when it is claimed, runs the hooks
after its own handlers, and marks the run done when it succeeds (or frees the
lease for Census's retry when it fails).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..runs import RunAlert, RunRecord, SyncHealth, missing_events, run_status, summarize
from . import sql
from .host import JournalHost
from .records import from_timestamp

if TYPE_CHECKING:
    from ..events import Event

__all__ = ["RunLog"]

#: Runs read to sum up a sync's health: the latest ones.
HEALTH_WINDOW = 1000


class RunLog(JournalHost):
    """Sync-run bookkeeping, mixed into ``Journal`` (which provides what is declared here)."""

    lease: float

    # -- noting events, inside the transaction that records their delivery ---------------

    def note_run(self, cur: Any, event: Event, now: float) -> None:
        """Note the first receipt of a lifecycle or alert event in its run's row."""
        column = sql.RUN_EVENT_COLUMNS.get(event.event)
        ids = (event.sync_run_id, event.sync_id, event.workspace_id)
        if type(ids[0]) is not int or type(ids[1]) is not int or type(ids[2]) is not int:
            return
        if column is None:
            if event.event.startswith("sync.alert."):
                raw = event.raw
                alert = raw.get("alert_instance_id")
                cur.execute(
                    sql.INSERT_RUN_ALERT,
                    (
                        event.sync_run_id,
                        alert if type(alert) is int else None,
                        raw.get("alert_type"),
                        event.event.removeprefix("sync.alert."),
                        now,
                        raw.get("message"),
                    ),
                )
            return
        row = cur.execute(sql.NOTE_RUN.format(column=column), (*ids, now, now, now)).fetchone()
        completed_status = row[8]
        if event.event == "sync.completed" and completed_status is None:
            status = event.raw.get("status")
            if isinstance(status, str):
                cur.execute(sql.SET_COMPLETED_STATUS, (status, event.sync_run_id))
                completed_status = status
        status, finished_at = _status_of(row, completed_status)
        if (status, finished_at) != (row[9], row[10]):  # most events change neither
            cur.execute(sql.SET_RUN_STATUS, (status, finished_at, event.sync_run_id))

    def take_finish(self, cur: Any, sync_run_id: int | None, token: str) -> RunRecord | None:
        """Take the finish lease of a run that finished and whose hooks have not run."""
        if sync_run_id is None:
            return None
        now = self.clock()
        row = cur.execute(sql.TAKE_FINISH, (token, now + self.lease, sync_run_id, now)).fetchone()
        return None if row is None else self._runs(cur, [row])[0]

    def settle_finish(self, cur: Any, sync_run_id: int, token: str, *, done: bool) -> None:
        """Mark a run's hooks done (or free the lease for a retry)."""
        cur.execute(sql.SETTLE_FINISH, (1 if done else 0, sync_run_id, token))

    # -- reading ----------------------------------------------------------------------

    def runs(
        self,
        *,
        sync_id: int | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Sync runs, newest first (by when their first event arrived).

        Args:
            sync_id: only this sync's.
            status: only runs in this status (``"triggered"``, ``"started"``,
                ``"succeeded"``, ``"failed"``).
            limit: at most this many.

        Raises:
            JournalUnavailable: when the database fails.
        """
        clause, params = sql.where((("sync_id = ?", sync_id), ("status = ?", status)))
        statement = f"SELECT {sql.RUN_COLUMNS} FROM census_runs {clause}"
        with self.transaction(write=False) as cur:
            rows = cur.execute(
                statement + "ORDER BY first_seen_at DESC LIMIT ?", (*params, limit)
            ).fetchall()
            return self._runs(cur, rows)

    def run(self, sync_run_id: int) -> RunRecord | None:
        """One run, or ``None`` if none of its events arrived.

        Raises:
            JournalUnavailable: when the database fails.
        """
        with self.transaction(write=False) as cur:
            row = cur.execute(sql.SELECT_RUN, (sync_run_id,)).fetchone()
            return None if row is None else self._runs(cur, [row])[0]

    def syncs(self, limit: int = 50) -> list[int]:
        """The syncs that have runs, the most recently active first.

        Raises:
            JournalUnavailable: when the database fails.
        """
        with self.transaction(write=False) as cur:
            return [int(row[0]) for row in cur.execute(sql.SELECT_SYNCS, (limit,)).fetchall()]

    def sync_health(self, sync_id: int) -> SyncHealth:
        """How one sync's latest runs went: counts, success rate, durations, last outcomes.

        Raises:
            JournalUnavailable: when the database fails.
        """
        with self.transaction(write=False) as cur:
            rows = cur.execute(sql.SELECT_HEALTH, (sync_id, HEALTH_WINDOW)).fetchall()
        return summarize(
            sync_id,
            (
                (str(status), _between(started, finished), finished)
                for status, started, finished in rows
            ),
        )

    def overdue_runs(self, after: timedelta) -> list[RunRecord]:
        """Runs triggered or started and not finished within ``after``, oldest first.

        Raises:
            JournalUnavailable: when the database fails.
        """
        cutoff = self.clock() - after.total_seconds()
        statement = (
            f"SELECT {sql.RUN_COLUMNS} FROM census_runs WHERE status IN ('triggered', 'started') "
            "AND COALESCE(started_at, triggered_at, first_seen_at) <= ? ORDER BY first_seen_at"
        )
        with self.transaction(write=False) as cur:
            return self._runs(cur, cur.execute(statement, (cutoff,)).fetchall())

    def claim_overdue(self, after: timedelta) -> list[RunRecord]:
        """Overdue runs not yet notified for ``after`` (or a shorter time), marked notified.

        Raises:
            JournalUnavailable: when the database fails.
        """
        seconds = after.total_seconds()
        with self.transaction() as cur:
            rows = cur.execute(
                sql.CLAIM_OVERDUE, (seconds, self.clock() - seconds, seconds)
            ).fetchall()
            return sorted(self._runs(cur, rows), key=lambda r: r.sync_run_id)

    def unclaim_overdue(self, sync_run_id: int) -> None:
        """Forget that a run was notified as overdue, so the next check notifies it again.

        Raises:
            JournalUnavailable: when the database fails.
        """
        with self.transaction() as cur:
            cur.execute(sql.UNCLAIM_OVERDUE, (sync_run_id,))

    def _runs(self, cur: Any, rows: Sequence[Sequence[Any]]) -> list[RunRecord]:
        if not rows:
            return []
        ids = [int(row[0]) for row in rows]
        marks = ", ".join("?" for _ in ids)
        alerts: dict[int, list[RunAlert]] = {}
        for run_id, alert_id, alert_type, kind, at, message in cur.execute(
            sql.SELECT_RUN_ALERTS.format(ids=marks), ids
        ).fetchall():
            alerts.setdefault(int(run_id), []).append(
                RunAlert(alert_id, alert_type, kind, from_timestamp(at), message)  # type: ignore[arg-type]
            )
        return [_record(row, tuple(alerts.get(int(row[0]), ()))) for row in rows]


def _status_of(row: Sequence[Any], completed_status: str | None) -> tuple[str, float | None]:
    triggered, started, completed, success, failed = row[3:8]
    status = run_status(
        triggered=triggered is not None,
        started=started is not None,
        completed_status=completed_status,
        completed=completed is not None,
        succeeded=success is not None,
        failed=failed is not None,
    )
    ends = [t for t in (completed, success, failed) if t is not None]
    return status, (min(ends) if ends else None)


def _record(row: Sequence[Any], alerts: tuple[RunAlert, ...]) -> RunRecord:
    (
        run_id, sync_id, workspace_id, triggered, started, completed, success, failed,
        completed_status, status, finished,
    ) = row  # fmt: skip
    received = tuple(
        name
        for name, at in zip(
            sql.RUN_EVENT_COLUMNS, (triggered, started, completed, success, failed), strict=True
        )
        if at is not None
    )
    return RunRecord(
        sync_run_id=int(run_id),
        sync_id=int(sync_id),
        workspace_id=int(workspace_id),
        status=status,
        triggered_at=from_timestamp(triggered),
        started_at=from_timestamp(started),
        finished_at=from_timestamp(finished),
        completed_status=completed_status,
        queued_seconds=_between(triggered, started),
        duration_seconds=_between(started, finished),
        alerts=alerts,
        missing=missing_events(received, status),
        received=received,
    )


def _between(first: float | None, then: float | None) -> float | None:
    if first is None or then is None:
        return None
    return max(0.0, then - first)
