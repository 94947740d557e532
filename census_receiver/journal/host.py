"""What ``Journal`` provides to the parts mixed into it: its clock, transactions and cursor.

No I/O of its own. ``DeliveryLog`` (reading, pruning), ``RunLog`` (sync runs) and
``WorkQueue`` (workers and replays) are written against this; ``Journal``
supplies it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

__all__ = ["Cursor", "JournalHost"]


class JournalHost:
    """The clock and transactions a journal part reads and writes with.

    ``_flush_rejections(cur)`` writes the rejection notes kept in memory, in a
    write transaction that is open anyway.
    """

    #: Seconds since the epoch, now (the tests give a controllable one).
    clock: Callable[[], float]

    if TYPE_CHECKING:

        def transaction(self, *, write: bool = True) -> AbstractContextManager[Any]: ...

        def _flush_rejections(self, cur: Any) -> None: ...


class Cursor:
    """A DB-API cursor whose statements use ``?`` placeholders, whatever the backend's.

    What ``Journal.transaction`` yields: ``execute`` rewrites the placeholders
    with the backend's ``sql`` and returns the underlying cursor.
    """

    __slots__ = ("_cursor", "_sql")

    def __init__(self, cursor: Any, sql: Callable[[str], str]) -> None:
        self._cursor = cursor
        self._sql = sql

    def execute(self, statement: str, params: Sequence[object]) -> Any:
        self._cursor.execute(self._sql(statement), tuple(params))
        return self._cursor

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)
