"""What every journal backend shares: the claim protocol and recording, in SQL.

Its other parts are mixed in from beside it: reading and pruning
(``reading.DeliveryLog``), sync runs (``runlog.RunLog``), and the claims of
workers and replays (``working.WorkQueue``), all written against
``host.JournalHost``.

The backends (``SQLiteJournal``, ``PostgresJournal``) only open connections and
run a transaction; the statements here are written once in the SQL both
understand (``INSERT ... ON CONFLICT``, ``RETURNING``), with ``?`` placeholders
that a backend may rewrite. A journal is the receiver's dedup store: the same
claim / lease / complete-or-release protocol as ``census_receiver.dedup``, keyed
by the same delivery identity, and it records each verified delivery's body,
attempts, status and, for failures, the handler's exception. It is the
``Claims`` of ``census_receiver.delivery``.

Claims, as stored: a delivery being run holds ``lease_token`` until
``lease_until``. A Census retry finds it done (a duplicate), running under a
live lease (409), or claimable (failed, refused, or a lease that expired with
its holder) and runs it again. Workers take ``pending`` deliveries (captured in
acknowledge-on-capture mode, or failed and due for another try) the same way.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
import traceback
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from ..answers import JOURNAL_UNAVAILABLE, Answer, Outcome
from ..dedup import Claim, ClaimState
from ..errors import ConfigurationError, DedupUnavailable, check_positive, shown_value
from . import sql
from .host import Cursor, Notes
from .reading import REJECTIONS_KEPT, DeliveryLog
from .records import (
    DONE_STATUSES,
    JournalClaim,
)
from .runlog import RunLog
from .working import WorkQueue

if TYPE_CHECKING:
    from ..delivery import VerifiedDelivery
    from ..runs import RunRecord

logger = logging.getLogger("census_receiver")

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_LEASE",
    "DEFAULT_MAX_TRIES",
    "DEFAULT_RETENTION",
    "Journal",
    "JournalClaim",
    "JournalUnavailable",
]

#: Seconds a run holds its delivery before another worker or retry may take it over.
DEFAULT_LEASE = 60.0
#: Records older than this (seconds) are pruned: 30 days.
DEFAULT_RETENTION = 30 * 86400.0
#: Tries a worker makes before a captured delivery ends ``failed``.
DEFAULT_MAX_TRIES = 8
#: Seconds before a worker's first retry; doubled after each further failure.
DEFAULT_BACKOFF = 10.0
#: Claims whose answer never came, remembered to be freed (older ones expire with their lease).
UNANSWERED_KEPT = 10_000


class JournalUnavailable(DedupUnavailable):
    """The journal's database cannot be reached, is locked or is full (answered 503)."""


_STATUS_OF_REASON = {
    "malformed_payload": "refused",
    "handled": "handled",
    "ignored": "ignored",
    "dropped": "dropped",
    "handler_error": "failed",
    "deadline": "failed",
}


class Journal(RunLog, DeliveryLog, WorkQueue):
    """The SQL and logic every journal backend shares; see the module docstring.

    Args:
        lease: seconds a run holds its delivery (a crashed holder's claim expires then).
        retention: seconds records are kept before ``prune`` removes them.
        max_tries: tries a worker makes of a captured delivery before it ends ``failed``.
        backoff: seconds before a worker's first retry, doubled after each failure.
        clock: the wall clock, as epoch seconds (tests may pass their own).

    Raises:
        ConfigurationError: for a non-positive duration or ``max_tries``.
    """

    #: Its claim steps are plain calls.
    is_async = False
    #: Its calls wait on a database: ``run_async`` makes them in a worker thread.
    blocking = True
    #: Its calls give up after the backend's timeout, so ``run`` makes them in place.
    bounded = True
    #: The answer when the database cannot be reached.
    unavailable: Answer = JOURNAL_UNAVAILABLE
    #: The backend's errors that mean "unavailable" (set by each backend).
    errors: ClassVar[tuple[type[Exception], ...]] = ()
    #: The backend's column types for the names used in ``SCHEMA``.
    column_types: ClassVar[dict[str, str]] = {}
    #: What a worker's pick of due rows adds to lock them (PostgreSQL: skip locked rows).
    take_due_lock: ClassVar[str] = ""
    #: A statement run before creating the tables, so processes starting together
    #: do not create them at once (PostgreSQL: an advisory lock).
    schema_lock: ClassVar[str] = ""

    def __init__(
        self,
        *,
        lease: float = DEFAULT_LEASE,
        retention: float = DEFAULT_RETENTION,
        max_tries: int = DEFAULT_MAX_TRIES,
        backoff: float = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_positive("lease", lease, unit=" of seconds")
        check_positive("retention", retention, unit=" of seconds")
        check_positive("backoff", backoff, unit=" of seconds")
        if isinstance(max_tries, bool) or not isinstance(max_tries, int) or max_tries < 1:
            raise ConfigurationError(f"max_tries must be 1 or more, not {shown_value(max_tries)}")
        self.lease = lease
        self.retention = retention
        self.max_tries = max_tries
        self.backoff = backoff
        self.clock = clock
        self._rejections = Notes[tuple[float, int, str, str | None, int]](REJECTIONS_KEPT)
        #: (key, token) of claims whose answer never came: freed by the next claim.
        self._unanswered = Notes[tuple[str, str]](UNANSWERED_KEPT)

    # -- the backend's part -------------------------------------------------------------

    def _connect(self, *, write: bool = True) -> contextlib.AbstractContextManager[Any]:
        """A context giving a cursor inside one transaction, committed on exit."""
        raise NotImplementedError

    def _sql(self, statement: str) -> str:
        """``statement`` in the backend's placeholder style."""
        return statement

    def close(self) -> None:
        """Close the journal's connections."""

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Any]:
        """One transaction: a cursor whose ``execute(sql, params)`` takes ``?`` placeholders.

        Args:
            write: whether it writes (a read-only one takes no write lock). A
                write transaction first writes the rejection notes kept in
                memory; if it fails, they are kept for the next one.

        Raises:
            JournalUnavailable: when the database is unreachable, locked or full.
        """
        notes = self._rejections.take() if write else []
        try:
            with self._connect(write=write) as cursor:
                cur = Cursor(cursor, self._sql)
                for note in notes:
                    cur.execute(sql.INSERT_REJECTION, note)
                yield cur
        except BaseException as exc:
            self._rejections.put_back(notes)  # not written: rolled back
            if isinstance(exc, self.errors):
                raise JournalUnavailable(
                    f"the journal's database failed ({type(exc).__name__}: {_first_line(exc)})"
                ) from None
            raise

    def create_tables(self) -> None:
        """Create the journal's tables and indexes if they do not exist yet."""
        with self.transaction() as cur:
            if self.schema_lock:
                cur.execute(self.schema_lock, ())
            for statement in sql.SCHEMA:
                cur.execute(statement.format(**self.column_types), ())

    # -- the claim protocol (census_receiver.delivery.Claims) ---------------------------

    def claim(self, delivery: VerifiedDelivery) -> JournalClaim:
        """Record a Census attempt of ``delivery`` and claim it unless done or running.

        Returns:
            ``CLAIMED`` (run it now), ``DONE`` (a duplicate) or ``IN_PROGRESS``.

        Raises:
            JournalUnavailable: when the database fails.
        """
        now = self.clock()
        token = secrets.token_hex(16)
        key = delivery.key()
        try:
            return self._claim(delivery, key, token, now)
        except JournalUnavailable:
            # A database that went on to commit after the client gave up would hold
            # the delivery under this token: forget it at the next claim.
            self._unanswered.add((key, token))
            raise

    def _claim(self, delivery: VerifiedDelivery, key: str, token: str, now: float) -> JournalClaim:
        unanswered = self._unanswered.take()
        try:
            with self.transaction() as cur:
                for held, held_token in unanswered:  # freed if applied after all
                    cur.execute(sql.RELEASE_UNANSWERED, (now, held, held_token))
                return self._claim_in(cur, delivery, key, token, now)
        except BaseException:
            self._unanswered.put_back(unanswered)  # not freed: rolled back
            raise

    def _claim_in(
        self, cur: Cursor, delivery: VerifiedDelivery, key: str, token: str, now: float
    ) -> JournalClaim:
        """Claim ``delivery`` in the open transaction: a new row, or a retry's claim."""
        row = cur.execute(
            sql.INSERT_RUNNING,
            (*_identity(delivery, key), "running", 1, 1, now, now, token, now + self.lease),
        ).fetchone()
        if row is not None:
            self.note_run(cur, delivery.event, now)
            run = self._finishing(cur, delivery, token)
            return JournalClaim(key, ClaimState.CLAIMED, token, int(row[0]), run=run)
        row = cur.execute(
            sql.RECLAIM, (now, now, now, now, token, now, now + self.lease, key)
        ).fetchone()
        delivery_id, status, holder = int(row[0]), str(row[1]), row[2]
        if holder == token:
            run = self._finishing(cur, delivery, token)
            return JournalClaim(key, ClaimState.CLAIMED, token, delivery_id, run=run)
        done = status in DONE_STATUSES or status == "pending"
        state = ClaimState.DONE if done else ClaimState.IN_PROGRESS
        cur.execute(
            sql.INSERT_ATTEMPT,
            (
                delivery_id,
                now,
                "census",
                200 if done else 409,
                "duplicate" if done else "in_progress",
            ),
        )
        return JournalClaim(key, state, "", delivery_id)

    def _finishing(self, cur: Cursor, delivery: VerifiedDelivery, token: str) -> RunRecord | None:
        """The finished run a lifecycle delivery is to close (taking its finish lease).

        Only when its receiver has ``on_run_finished`` hooks: without them there is
        nothing to run, and the run's lease is left for a receiver that has some.
        """
        if not delivery.pipeline.run_hooks or delivery.event.event not in sql.RUN_EVENT_COLUMNS:
            return None
        return self.take_finish(cur, delivery.event.sync_run_id, token)

    def capture(self, delivery: VerifiedDelivery) -> JournalClaim:
        """Record ``delivery`` as ``pending`` for a worker (acknowledge on capture).

        Returns:
            ``CLAIMED`` when newly captured; ``DONE`` when it was known already.

        Raises:
            JournalUnavailable: when the database fails.
        """
        with self._recording(delivery) as (cur, now, key):
            row = cur.execute(
                sql.INSERT_PENDING,
                (*_identity(delivery, key), "pending", 1, 0, now, now, now),
            ).fetchone()
            if row is not None:
                self.note_run(cur, delivery.event, now)
                cur.execute(sql.INSERT_ATTEMPT, (int(row[0]), now, "census", 200, "accepted"))
                return JournalClaim(key, ClaimState.CLAIMED, "", int(row[0]))
            row = cur.execute(sql.COUNT_ATTEMPT, (now, key)).fetchone()
            cur.execute(sql.INSERT_ATTEMPT, (int(row[0]), now, "census", 200, "duplicate"))
            return JournalClaim(key, ClaimState.DONE, "", int(row[0]))

    def settle(
        self,
        claim: Claim,
        delivery: VerifiedDelivery | None,
        outcome: Outcome | None,
        error: BaseException | None,
    ) -> None:
        """Record how a claimed run ended, if the claim is still held.

        A worker's failed try goes back to ``pending`` with a later
        ``next_attempt_at`` until ``max_tries``; any other failure ends ``failed``
        (Census's retry, or a replay, runs it again).

        Raises:
            JournalUnavailable: when the database fails.
        """
        if not isinstance(claim, JournalClaim):
            raise TypeError("settle takes a claim made by this journal")
        now = self.clock()
        reason = outcome.reason if outcome is not None else "interrupted"
        status = _STATUS_OF_REASON.get(reason, "failed")
        answer = outcome.status if outcome is not None else 503
        next_at = None
        with self.transaction() as cur:
            if status == "failed" and claim.kind == "worker":
                (tries,) = cur.execute(sql.TRIES, (claim.id,)).fetchone()
                if int(tries) < self.max_tries:
                    status = "pending"
                    next_at = now + self.backoff * 2 ** (int(tries) - 1)
                else:
                    logger.error(
                        "census delivery #%d failed for good after %d tries; it stays in "
                        "the journal as failed: census-receiver replay runs it again",
                        claim.id,
                        int(tries),
                        extra={"census_reason": "dead"},
                    )
            failure = _failure(error) if status in ("failed", "pending", "dropped") else None
            changed = cur.execute(
                sql.SETTLE,
                (
                    status,
                    now,
                    answer,
                    reason,
                    *(failure or (None, None, None)),
                    next_at,
                    claim.id,
                    claim.token,
                ),
            ).rowcount
            if changed:
                cur.execute(sql.INSERT_ATTEMPT, (claim.id, now, claim.kind, answer, reason))
            if claim.run is not None:
                done = outcome is not None and outcome.ok
                self.settle_finish(cur, claim.run.sync_run_id, claim.token, done=done)

    def refuse(self, delivery: VerifiedDelivery, outcome: Outcome) -> None:
        """Keep a verified body whose payload was refused (400), as ``refused``.

        If Census changes a payload's shape, the deliveries refused meanwhile can
        be replayed after an upgrade.

        Raises:
            JournalUnavailable: when the database fails.
        """
        with self._recording(delivery) as (cur, now, key):
            row = cur.execute(
                sql.INSERT_REFUSED,
                (
                    *_identity(delivery, key),
                    "refused",
                    1,
                    0,
                    now,
                    now,
                    outcome.status,
                    outcome.reason,
                ),
            ).fetchone()
            if row is None:
                row = cur.execute(sql.COUNT_ATTEMPT, (now, key)).fetchone()
            cur.execute(
                sql.INSERT_ATTEMPT, (int(row[0]), now, "census", outcome.status, outcome.reason)
            )

    def flush(self) -> None:
        """Write the rejection notes kept in memory (``close`` does it too).

        Raises:
            JournalUnavailable: when the database fails.
        """
        if self._rejections:
            with self.transaction():  # a write transaction writes the notes first
                pass

    # -- the rejection log -------------------------------------------------------------

    def note_rejection(self, status: int, reason: str, remote: str | None, size: int) -> None:
        """Note a request refused before verification: time, reason, address, size.

        No I/O: the note is kept in memory and written with the journal's next
        transaction (or by ``rejections()``), so refusing a forged request costs
        no database write of its own. Its body is never kept.
        """
        self._rejections.add((self.clock(), status, reason, remote, size))

    @contextlib.contextmanager
    def _recording(self, delivery: VerifiedDelivery) -> Iterator[tuple[Cursor, float, str]]:
        """A write transaction for ``delivery``: its cursor, the time and the key."""
        now = self.clock()
        key = delivery.key()
        with self.transaction() as cur:
            yield cur, now, key


def _identity(delivery: VerifiedDelivery, key: str) -> tuple[object, ...]:
    event = delivery.event
    alert = event.raw.get("alert_instance_id")
    return (
        key,
        event.event,
        event.workspace_id,
        event.sync_id,
        event.sync_run_id,
        alert if type(alert) is int else None,
        bytes(delivery.body),
    )


def _failure(error: BaseException | None) -> tuple[str, str, str] | None:
    if error is None:
        return None
    kind = type(error)
    name = (
        f"{kind.__module__}.{kind.__qualname__}"
        if kind.__module__ != "builtins"
        else kind.__qualname__
    )
    text = "".join(traceback.format_exception(error))
    return name, str(error)[:2000], text[-20_000:]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""
