"""What a journal hands back when read: frozen records of deliveries, attempts and refusals.

No I/O. Times are timezone-aware UTC ``datetime``s; bodies are the exact bytes
Census sent and the signature verified.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..dedup import Claim
from ..runs import from_timestamp

if TYPE_CHECKING:
    from ..runs import RunRecord

__all__ = [
    "DONE_STATUSES",
    "STATUSES",
    "Attempt",
    "DeliveryRecord",
    "HandlerError",
    "JournalClaim",
    "Rejection",
    "from_timestamp",
    "record_from_row",
]

#: Every status a recorded delivery can have:
#: ``pending`` (captured, waiting for a worker), ``running`` (handlers running now,
#: under a lease), ``handled``, ``ignored`` (no handler matched), ``failed`` (a
#: handler raised; Census's retry, a worker or a replay may run it again),
#: ``dropped`` (a handler raised ``NonRetryableError``), ``refused`` (verified,
#: but its payload was refused: 400).
STATUSES = ("pending", "running", "handled", "ignored", "failed", "dropped", "refused")
#: Statuses after which a Census retry is a duplicate.
DONE_STATUSES = frozenset({"handled", "ignored", "dropped"})


@dataclass(frozen=True, slots=True)
class HandlerError:
    """The exception a handler raised, as recorded.

    Attributes:
        type: the exception's qualified class name.
        message: ``str(exception)``.
        traceback: the formatted traceback.
    """

    type: str
    message: str
    traceback: str


@dataclass(frozen=True, slots=True)
class Attempt:
    """One time a delivery was answered or run: a Census attempt, a worker try, a replay.

    Attributes:
        at: when.
        kind: ``"census"``, ``"worker"`` or ``"replay"``.
        status: the HTTP status answered (a worker's or replay's outcome status).
        reason: the ``Outcome.reason``.
    """

    at: datetime
    kind: str
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """A verified delivery as the journal keeps it.

    Attributes:
        id: the journal's id for it.
        key: its identity (the dedup key: event and ids, or a digest of the body).
        event: the event name.
        workspace_id: the Census workspace, if the payload carried one.
        sync_id: the sync.
        sync_run_id: the sync run.
        alert_instance_id: the alert instance, for alert events.
        body: the exact bytes received.
        status: one of ``STATUSES``.
        attempts: how many times Census delivered it.
        tries: how many times its handlers were started.
        received_at: when it first arrived.
        updated_at: when it last changed (last received, run or settled).
        answer_status: the status of the last answer given for it.
        answer_reason: the reason of that answer.
        error: the last handler failure, if any.
        next_attempt_at: when a worker runs it next (``pending`` only).
        history: its attempts, oldest first (filled by ``journal.get`` only).
    """

    id: int
    key: str
    event: str
    workspace_id: int | None
    sync_id: int | None
    sync_run_id: int | None
    alert_instance_id: int | None
    body: bytes
    status: str
    attempts: int
    tries: int
    received_at: datetime
    updated_at: datetime
    answer_status: int | None = None
    answer_reason: str | None = None
    error: HandlerError | None = None
    next_attempt_at: datetime | None = None
    history: tuple[Attempt, ...] = ()

    def payload(self) -> Any:
        """The body decoded as JSON (``None`` if it is not valid JSON)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class Rejection:
    """A request refused before it was verified; its body is never kept.

    Attributes:
        at: when it arrived.
        status: the status answered (401, 413, 405, ...).
        reason: the refusal's reason label (``"invalid_signature"``, ...).
        remote: the client's address, when the adapter knows it.
        size: the body's size in bytes (as read, at most the limit plus one).
    """

    at: datetime
    status: int
    reason: str
    remote: str | None
    size: int


def record_from_row(row: Sequence[Any]) -> DeliveryRecord:
    """A ``DeliveryRecord`` from a row of ``sql.DELIVERY_COLUMNS``."""
    (
        id_,
        key,
        event,
        workspace,
        sync,
        run,
        alert,
        body,
        status,
        attempts,
        tries,
        received,
        updated,
        answer_status,
        answer_reason,
        error_type,
        error_message,
        error_traceback,
        next_at,
    ) = row
    error = (
        HandlerError(error_type, error_message or "", error_traceback or "")
        if error_type is not None
        else None
    )
    return DeliveryRecord(
        id=int(id_),
        key=key,
        event=event,
        workspace_id=workspace,
        sync_id=sync,
        sync_run_id=run,
        alert_instance_id=alert,
        body=bytes(body),
        status=status,
        attempts=int(attempts),
        tries=int(tries),
        received_at=from_timestamp(received),  # type: ignore[arg-type]
        updated_at=from_timestamp(updated),  # type: ignore[arg-type]
        answer_status=answer_status,
        answer_reason=answer_reason,
        error=error,
        next_attempt_at=from_timestamp(next_at),
    )


@dataclass(frozen=True, slots=True)
class JournalClaim(Claim):
    """A claim on a recorded delivery: its id, who runs it, and a finished run it closes.

    Attributes:
        id: the delivery's id in the journal.
        kind: ``"census"``, ``"worker"`` or ``"replay"``.
        run: the finished run whose ``on_run_finished`` hooks this run of the
            delivery calls (it holds the run's finish lease), or ``None``.
    """

    id: int = 0
    kind: str = "census"
    run: RunRecord | None = None
