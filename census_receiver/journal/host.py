"""What ``Journal`` provides to the parts mixed into it: its clock and its transactions.

No I/O of its own. ``DeliveryLog`` (reading, pruning) and ``RunLog`` (sync runs)
are written against this, and ``Journal`` supplies both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager

__all__ = ["JournalHost"]


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
