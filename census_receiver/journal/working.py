"""Workers and replay: claiming recorded deliveries to run again, and holding them.

Mixed into ``Journal``. A worker takes what is due (``take_due``), renews the
lease of a delivery whose handlers run long (``renew``); a replay claims one
recorded delivery (``claim_for_replay``). Each claim holds the delivery's lease
token, as a Census delivery's claim does, so that nobody else runs it meanwhile.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, ClassVar

from ..dedup import ClaimState
from . import sql
from .host import JournalHost
from .records import DeliveryRecord, JournalClaim, record_from_row

if TYPE_CHECKING:
    from ..runs import RunRecord

__all__ = ["WorkQueue"]


class WorkQueue(JournalHost):
    """Claims for workers and replays, for ``Journal`` (which provides what is declared here)."""

    lease: float
    take_due_lock: ClassVar[str]

    if TYPE_CHECKING:

        def take_finish(
            self, cur: Any, sync_run_id: int | None, token: str
        ) -> RunRecord | None: ...

    def renew(self, claim: JournalClaim) -> bool:
        """Extend a held claim's lease by ``lease`` seconds from now.

        A worker renews the lease of a delivery whose handlers run long, so that
        no other worker takes it over while it is still being handled.

        Returns:
            Whether the claim was still held.

        Raises:
            JournalUnavailable: when the database fails.
        """
        with self.transaction() as cur:
            renewed = cur.execute(
                sql.RENEW_LEASE, (self.clock() + self.lease, claim.id, claim.token)
            ).rowcount
        return bool(renewed)

    def take_due(
        self, limit: int = 10, *, finishing: bool = False
    ) -> list[tuple[DeliveryRecord, JournalClaim]]:
        """Claim up to ``limit`` deliveries a worker should run now.

        Due are ``pending`` deliveries whose ``next_attempt_at`` has come, and
        ``running`` ones whose lease expired (their holder died mid-handler).
        With ``finishing``, a delivery of a finished run whose ``on_run_finished``
        hooks have not run also takes the run's finish lease.

        Raises:
            JournalUnavailable: when the database fails.
        """
        now = self.clock()
        token = secrets.token_hex(16)
        with self.transaction() as cur:
            rows = cur.execute(
                sql.TAKE_DUE.replace("{lock}", self.take_due_lock),
                (token, now + self.lease, now, now, now, limit, now, now),
            ).fetchall()
            taken = sorted((record_from_row(row) for row in rows), key=lambda r: r.id)
            return [
                (
                    r,
                    JournalClaim(
                        r.key,
                        ClaimState.CLAIMED,
                        token,
                        r.id,
                        "worker",
                        self.take_finish(cur, r.sync_run_id, token)
                        if finishing and r.event in sql.RUN_EVENT_COLUMNS
                        else None,
                    ),
                )
                for r in taken
            ]

    def claim_for_replay(
        self, delivery_id: int, *, force: bool = False, finishing: bool = False
    ) -> tuple[DeliveryRecord, JournalClaim | None]:
        """Claim a recorded delivery to run its handlers again.

        Args:
            delivery_id: the record's id.
            force: run it even if it was handled (or ignored, or dropped) before.
            finishing: also take its run's finish lease (see ``take_due``).

        Returns:
            The record, and the claim; ``None`` when it is done (without ``force``)
            or running under a live lease.

        Raises:
            KeyError: if there is no such delivery.
            JournalUnavailable: when the database fails.
        """
        now = self.clock()
        token = secrets.token_hex(16)
        with self.transaction() as cur:
            row = cur.execute(
                sql.CLAIM_FOR_REPLAY,
                (token, now + self.lease, now, delivery_id, now, 1 if force else 0),
            ).fetchone()
            if row is None:
                row = cur.execute(sql.SELECT_ONE, (delivery_id,)).fetchone()
                if row is None:
                    raise KeyError(delivery_id)
                return record_from_row(row), None
            record = record_from_row(row)
            run = (
                self.take_finish(cur, record.sync_run_id, token)
                if finishing and record.event in sql.RUN_EVENT_COLUMNS
                else None
            )
        return record, JournalClaim(record.key, ClaimState.CLAIMED, token, record.id, "replay", run)
