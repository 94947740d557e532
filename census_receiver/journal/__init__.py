"""The delivery journal: every verified delivery kept, visible, and runnable again.

A journal records each verified delivery (its exact body, event and ids, how
many times Census sent it, what became of it, and a failed handler's
exception) and is, at the same time, the receiver's dedup store::

    journal = SQLiteJournal("census.db")                  # one host, several processes
    journal = PostgresJournal("postgresql://.../census")  # several hosts (postgres extra)
    receiver = WebhookReceiver(secret=..., journal=journal)

Reading: ``journal.deliveries(status=..., event=..., sync_id=..., sync_run_id=...)``
(newest first), ``journal.get(id)``, ``journal.rejections()``. Running again:
``receiver.replay(id)``; with ``acknowledge="on_capture"``, ``receiver.run_pending()``
and ``census-receiver work``. ``journal.prune()`` removes old records.

``PostgresJournal`` is imported on first use, so this package needs nothing
beyond the standard library until it is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Journal, JournalClaim, JournalUnavailable
from .records import STATUSES, Attempt, DeliveryRecord, HandlerError, Rejection
from .sqlite import SQLiteJournal

if TYPE_CHECKING:
    from .postgres import PostgresJournal

__all__ = [
    "STATUSES",
    "Attempt",
    "DeliveryRecord",
    "HandlerError",
    "Journal",
    "JournalClaim",
    "JournalUnavailable",
    "PostgresJournal",
    "Rejection",
    "SQLiteJournal",
]


def __getattr__(name: str) -> Any:
    if name == "PostgresJournal":
        from .postgres import PostgresJournal

        return PostgresJournal
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
