"""Counters of what the receiver did, for logs, dashboards and scrapers.

No I/O, no third-party import. ``ReceiverStats`` counts deliveries by event name
and outcome reason, and sums handling time per event; ``snapshot()`` returns a
plain dict ready for ``json.dumps``. A Prometheus collector over the same counters
lives in ``census_receiver.prometheus``.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from dataclasses import dataclass, field

__all__ = ["ReceiverStats", "Timing"]

#: Histogram bucket upper bounds, in seconds (as Prometheus' defaults, plus Census's 10 s).
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Pending samples of one (event, reason) folded into the counters at once.
FOLD_EVERY = 1024


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

    Recording is on every delivery's path and reading is rare, so ``record``
    takes no lock: it appends the time to a list per (event, reason), and
    ``list.append`` is atomic. Readers fold the lists into counts, sums and
    histogram buckets under a lock, taking samples from the front of each list
    (``del samples[:n]``, also atomic), so an append racing with a fold is kept
    for the next one. A list is folded early when it reaches ``FOLD_EVERY`` samples.
    """

    __slots__ = ("_counts", "_lock", "_samples", "_timings")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: dict[tuple[str | None, str], list[float]] = {}
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
        samples = self._samples.get((event, reason))
        if samples is None:  # atomic: one list per key
            samples = self._samples.setdefault((event, reason), [])
        samples.append(seconds)
        if len(samples) >= FOLD_EVERY:
            self._fold()

    def _fold(self) -> None:
        """Fold every pending sample into the counters (every reader calls this first)."""
        with self._lock:
            for key, samples in list(self._samples.items()):
                n = len(samples)
                if n:
                    taken = samples[:n]
                    del samples[:n]
                    self._add(key, taken)

    def _add(self, key: tuple[str | None, str], samples: list[float]) -> None:
        # Called with the lock held.
        event, reason = key
        name = event if event is not None else "-"
        n = len(samples)
        self._counts[(name, reason)] = self._counts.get((name, reason), 0) + n
        timing = self._timings.get(name)
        if timing is None:
            timing = self._timings[name] = Timing()
        timing.count += n
        timing.total += sum(samples)
        timing.max = max(timing.max, max(samples))
        samples.sort()
        below = 0
        for i, bound in enumerate(BUCKETS):
            upto = bisect_right(samples, bound)
            timing.buckets[i] += upto - below
            below = upto
        timing.buckets[-1] += n - below

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
            for samples in list(self._samples.values()):
                del samples[:]
            self._counts.clear()
            self._timings.clear()
