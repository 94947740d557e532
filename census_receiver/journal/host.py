"""What ``Journal`` provides to the parts mixed into it: its clock, transactions and cursor.

No I/O of its own. ``DeliveryLog`` (reading, pruning), ``RunLog`` (sync runs) and
``WorkQueue`` (workers and replays) are written against this; ``Journal``
supplies it.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

__all__ = ["Cursor", "JournalHost", "Notes"]

_T = TypeVar("_T")


class JournalHost:
    """The clock and transactions a journal part reads and writes with.

    A write transaction first writes the rejection notes kept in memory
    (``_rejections``); if it fails, they are kept for the next one.
    """

    #: Seconds since the epoch, now (the tests give a controllable one).
    clock: Callable[[], float]
    #: Refusals noted in memory, written by the next write transaction.
    _rejections: Notes[tuple[float, int, str, str | None, int]]

    if TYPE_CHECKING:

        def transaction(self, *, write: bool = True) -> AbstractContextManager[Any]: ...


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


class Notes(Generic[_T]):
    """Notes kept in memory until a transaction writes them: the newest ``limit``.

    ``take`` hands them all over; a transaction that then fails ``put_back``s
    them, ahead of any noted meanwhile. Thread-safe.
    """

    __slots__ = ("_items", "_lock")

    def __init__(self, limit: int) -> None:
        self._items: collections.deque[_T] = collections.deque(maxlen=limit)
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._items)

    def add(self, note: _T) -> None:
        """Keep ``note`` (the oldest is dropped past the limit)."""
        with self._lock:
            self._items.append(note)

    def take(self) -> list[_T]:
        """Every note kept, oldest first, none kept any longer."""
        if not self._items:  # the usual case, without the lock
            return []
        with self._lock:
            taken = list(self._items)
            self._items.clear()
        return taken

    def put_back(self, notes: list[_T]) -> None:
        """Keep ``notes`` again, as older than those noted since they were taken."""
        if notes:
            with self._lock:
                kept = [*notes, *self._items]
                self._items.clear()
                self._items.extend(kept)  # past the limit, the oldest go
