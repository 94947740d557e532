"""Reading the journal's deliveries and refusals, and pruning old ones: mixed into ``Journal``.

Reads take no write lock (a read-only transaction); ``prune`` is the one write
here. The records are frozen (``census_receiver.journal.records``), times are
timezone-aware.
"""

from __future__ import annotations

from dataclasses import replace

from . import sql
from .host import JournalHost
from .records import Attempt, DeliveryRecord, Rejection, from_timestamp, record_from_row

__all__ = ["DeliveryLog"]

#: Refusals kept in the rejection log, newest first.
REJECTIONS_KEPT = 1000


class DeliveryLog(JournalHost):
    """Reading and pruning, for ``Journal`` (which provides what is declared here)."""

    retention: float

    def rejections(self, limit: int = 100) -> list[Rejection]:
        """Recent refusals of unverified requests, newest first.

        Raises:
            JournalUnavailable: when the database fails.
        """
        with self.transaction(write=bool(self._rejections)) as cur:
            rows = cur.execute(sql.SELECT_REJECTIONS, (limit,)).fetchall()
        return [
            Rejection(from_timestamp(at), int(status), reason, remote, int(size))  # type: ignore[arg-type]
            for at, status, reason, remote, size in rows
        ]

    # -- reading -----------------------------------------------------------------------

    def get(self, delivery_id: int) -> DeliveryRecord | None:
        """The delivery with this id, with its attempts, or ``None``.

        Raises:
            JournalUnavailable: when the database fails.
        """
        with self.transaction(write=False) as cur:
            row = cur.execute(sql.SELECT_ONE, (delivery_id,)).fetchone()
            if row is None:
                return None
            history = cur.execute(sql.SELECT_ATTEMPTS, (delivery_id,)).fetchall()
        record = record_from_row(row)
        attempts = tuple(
            Attempt(from_timestamp(at), kind, int(status), reason)  # type: ignore[arg-type]
            for at, kind, status, reason in history
        )
        return replace(record, history=attempts)

    def deliveries(
        self,
        *,
        status: str | None = None,
        event: str | None = None,
        sync_id: int | None = None,
        sync_run_id: int | None = None,
        before: int | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> list[DeliveryRecord]:
        """Recorded deliveries, newest first, optionally filtered.

        Args:
            status: only this status.
            event: only this event name.
            sync_id: only this sync.
            sync_run_id: only this sync run.
            before: only ids below this one (the page after a page's last id).
            after: only ids above this one (what arrived since a page's first id).
            limit: at most this many.

        Returns:
            The records (without their attempt history).

        Raises:
            JournalUnavailable: when the database fails.
        """
        clause, params = sql.where(
            (
                ("status = ?", status),
                ("event = ?", event),
                ("sync_id = ?", sync_id),
                ("sync_run_id = ?", sync_run_id),
                ("id < ?", before),
                ("id > ?", after),
            )
        )
        # Conditions from the fixed list above; every value is a parameter.
        statement = f"SELECT {sql.DELIVERY_COLUMNS} FROM census_deliveries {clause}"
        with self.transaction(write=False) as cur:
            rows = cur.execute(statement + "ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()
        return [record_from_row(row) for row in rows]

    def counts(self) -> dict[str, int]:
        """How many deliveries have each status.

        Raises:
            JournalUnavailable: when the database fails.
        """
        with self.transaction(write=False) as cur:
            rows = cur.execute(sql.COUNT_STATUSES, ()).fetchall()
        return {str(status): int(n) for status, n in rows}

    # -- retention ---------------------------------------------------------------------

    def prune(self, *, older_than: float | None = None) -> int:
        """Remove settled records (and rejections) not updated for ``retention`` seconds.

        Deliveries still ``pending`` or ``running`` are kept whatever their age.

        Args:
            older_than: seconds, instead of the journal's ``retention``.

        Returns:
            How many deliveries were removed.

        Raises:
            JournalUnavailable: when the database fails.
        """
        cutoff = self.clock() - (self.retention if older_than is None else older_than)
        with self.transaction() as cur:
            removed = cur.execute(sql.PRUNE_DELIVERIES, (cutoff,)).rowcount
            cur.execute(sql.PRUNE_ATTEMPTS, ())
            cur.execute(sql.PRUNE_RUNS, (cutoff,))
            cur.execute(sql.PRUNE_RUN_ALERTS, (cutoff,))
            cur.execute(sql.PRUNE_REJECTIONS, (cutoff, REJECTIONS_KEPT))
        return int(removed)
