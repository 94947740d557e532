"""Counters of what the receiver did, for logs, dashboards and scrapers.

No I/O, no third-party import. ``ReceiverStats`` counts deliveries by event name
and outcome reason, and sums handling time per event; ``snapshot()`` returns a
plain dict ready for ``json.dumps``. A Prometheus collector over the same counters
lives in ``census_receiver.prometheus``.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field

__all__ = ["ReceiverStats", "Timing"]

#: Histogram bucket upper bounds, in seconds (as Prometheus' defaults, plus Census's 10 s).
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(slots=True)
class Timing:
    """Handling time of the deliveries of one event name, in seconds."""

    count: int = 0
    total: float = 0.0
    max: float = 0.0
    #: counts per bucket: ``buckets[i]`` holds times in ``(BUCKETS[i-1], BUCKETS[i]]``,
    #: the last one those over ``BUCKETS[-1]``.
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))

    def cumulative(self) -> list[int]:
        """Counts at or below each bound of ``BUCKETS``, then the total (Prometheus' ``le``)."""
        out, running = [], 0
        for n in self.buckets:
            running += n
            out.append(running)
        return out


class ReceiverStats:
    """Thread-safe counters of deliveries, updated once per delivery by the receiver.

    Recording is on every delivery's path, reading is rare: ``record`` only
    appends to a deque (atomic in CPython, no lock), and the entries are folded
    into the counters under a lock when someone reads, or every ``_FOLD_EVERY``
    records so the deque stays small.
    """

    __slots__ = ("_counts", "_lock", "_pending", "_timings")

    _FOLD_EVERY = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: deque[tuple[str | None, str, float]] = deque()
        self._counts: dict[tuple[str, str], int] = {}
        self._timings: dict[str, Timing] = {}

    def record(self, event: str | None, reason: str, seconds: float) -> None:
        """Count one delivery with its outcome ``reason`` and handling time.

        Args:
            event: the event name, or ``None`` when the delivery was refused before
                its payload was read.
            reason: the outcome label (``"handled"``, ``"invalid_signature"``, ...).
            seconds: time spent in the receiver.
        """
        pending = self._pending
        pending.append((event, reason, seconds))
        if len(pending) >= self._FOLD_EVERY:
            self._fold()

    def _fold(self) -> None:
        """Move pending records into the counters (every reader calls this first)."""
        with self._lock:
            pending, counts, timings = self._pending, self._counts, self._timings
            while pending:
                try:
                    event, reason, seconds = pending.popleft()
                except IndexError:  # emptied by a reader that did not take our lock
                    break
                name = event if event is not None else "-"
                key = (name, reason)
                counts[key] = counts.get(key, 0) + 1
                timing = timings.get(name)
                if timing is None:
                    timing = timings[name] = Timing()
                timing.count += 1
                timing.total += seconds
                if seconds > timing.max:
                    timing.max = seconds
                timing.buckets[bisect_left(BUCKETS, seconds)] += 1

    def count(self, event: str | None = None, reason: str | None = None) -> int:
        """Deliveries recorded, optionally only those of one event name and/or reason."""
        self._fold()
        with self._lock:
            return sum(
                n
                for (name, why), n in self._counts.items()
                if (event is None or name == event) and (reason is None or why == reason)
            )

    def counts(self) -> dict[tuple[str, str], int]:
        """A copy of the counts by ``(event, reason)``; ``"-"`` stands for no event."""
        self._fold()
        with self._lock:
            return dict(self._counts)

    def timings(self) -> dict[str, Timing]:
        """A copy of the handling times by event name."""
        self._fold()
        with self._lock:
            return {
                name: Timing(t.count, t.total, t.max, list(t.buckets))
                for name, t in self._timings.items()
            }

    def snapshot(self) -> dict[str, object]:
        """Everything, as plain JSON-ready data.

        Returns:
            ``{"deliveries": [{"event", "outcome", "count"}...],
            "handling_seconds": {event: {"count", "sum", "max"}}}``.
        """
        return {
            "deliveries": [
                {"event": name, "outcome": reason, "count": n}
                for (name, reason), n in sorted(self.counts().items())
            ],
            "handling_seconds": {
                name: {"count": t.count, "sum": t.total, "max": t.max}
                for name, t in sorted(self.timings().items())
            },
        }

    def reset(self) -> None:
        """Forget everything counted so far."""
        with self._lock:
            self._pending.clear()
            self._counts.clear()
            self._timings.clear()
