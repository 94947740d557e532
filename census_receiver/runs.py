"""Sync runs: the lifecycle events of one run put together, timed, and summed up per sync.

No I/O. Census sends up to five events per run (``sync.triggered``,
``sync.started``, ``sync.completed`` with ``status``, then ``sync.success`` or
``sync.failed``) and alerts, with no timestamps, possibly out of order after
retries, possibly to different processes. The journal keeps, per
``sync_run_id``, when each event was *first received* (receive times, since
Census sends none); this module turns those times into a ``RunRecord`` whose
fields are the same whatever order the events came in, and sums runs up into a
``SyncHealth``.

A run is finished at the first of ``sync.completed``, ``sync.success`` and
``sync.failed`` received; it *succeeded* if ``sync.success`` came, or
``sync.completed`` said ``"ok"``, and *failed* otherwise.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "LIFECYCLE_EVENTS",
    "RunAlert",
    "RunRecord",
    "SyncHealth",
    "duration_text",
    "from_timestamp",
    "health_of",
    "run_status",
    "summarize",
]

#: The lifecycle events of a run, in the order Census sends them.
LIFECYCLE_EVENTS = (
    "sync.triggered",
    "sync.started",
    "sync.completed",
    "sync.success",
    "sync.failed",
)


@dataclass(frozen=True, slots=True)
class RunAlert:
    """An alert raised or resolved during a run.

    Attributes:
        alert_instance_id: Census's id of the alert instance.
        alert_type: e.g. ``"FailureAlertConfiguration"``.
        kind: ``"raised"`` or ``"resolved"``.
        at: when it was first received.
        message: Census's message, e.g. ``"Sync Failed"``.
    """

    alert_instance_id: int | None
    alert_type: str | None
    kind: str
    at: datetime
    message: str | None


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One sync run, as put together from its events.

    Attributes:
        sync_run_id: the run.
        sync_id: its sync.
        workspace_id: its workspace.
        status: ``"triggered"``, ``"started"``, ``"succeeded"`` or ``"failed"``.
        triggered_at: when ``sync.triggered`` was first received.
        started_at: when ``sync.started`` was first received.
        finished_at: when the first of ``sync.completed`` / ``sync.success`` /
            ``sync.failed`` was received.
        completed_status: the ``status`` of ``sync.completed`` (``"ok"``,
            ``"emergency"``), if it came.
        queued_seconds: triggered to started.
        duration_seconds: started to finished.
        alerts: alerts of this run, oldest first.
        missing: the expected events of a finished run that never arrived.
        received: the lifecycle events that arrived.
    """

    sync_run_id: int
    sync_id: int
    workspace_id: int
    status: str
    triggered_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    completed_status: str | None
    queued_seconds: float | None
    duration_seconds: float | None
    alerts: tuple[RunAlert, ...] = ()
    missing: tuple[str, ...] = ()
    received: tuple[str, ...] = ()

    @property
    def finished(self) -> bool:
        """Whether the run has finished (succeeded or failed)."""
        return self.status in ("succeeded", "failed")


def run_status(
    *,
    triggered: bool,
    started: bool,
    completed_status: str | None,
    completed: bool,
    succeeded: bool,
    failed: bool,
) -> str:
    """The status of a run from which of its events arrived (in any order).

    Returns:
        ``"succeeded"``, ``"failed"``, ``"started"`` or ``"triggered"``.
    """
    if succeeded:
        return "succeeded"
    if failed:
        return "failed"
    if completed:
        return "succeeded" if completed_status == "ok" else "failed"
    return "started" if started else "triggered"


def missing_events(received: Sequence[str], status: str) -> tuple[str, ...]:
    """The expected events a finished run never received (nothing for a running one)."""
    if status not in ("succeeded", "failed"):
        return ()
    outcome = "sync.success" if status == "succeeded" else "sync.failed"
    expected = ("sync.triggered", "sync.started", "sync.completed", outcome)
    return tuple(name for name in expected if name not in received)


@dataclass(frozen=True, slots=True)
class SyncHealth:
    """How one sync's runs went.

    Attributes:
        sync_id: the sync.
        runs: finished runs counted.
        succeeded: how many succeeded.
        failed: how many failed.
        success_rate: ``succeeded / runs`` (``None`` with no finished run).
        median_duration: median of the runs' ``duration_seconds``.
        p95_duration: 95th percentile of them (nearest rank).
        last_success: when the last successful run finished.
        last_failure: when the last failed run finished.
        open_runs: runs triggered or started, not finished.
    """

    sync_id: int
    runs: int
    succeeded: int
    failed: int
    success_rate: float | None
    median_duration: float | None
    p95_duration: float | None
    last_success: datetime | None
    last_failure: datetime | None
    open_runs: int = 0


def _percentile(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def health_of(sync_id: int, runs: Sequence[RunRecord]) -> SyncHealth:
    """Sum up the runs of one sync.

    Args:
        sync_id: the sync.
        runs: its runs, in any order.

    Returns:
        The counts, success rate, median and p95 durations, last success and failure.
    """
    return summarize(
        sync_id,
        (
            (r.status, r.duration_seconds, r.finished_at.timestamp() if r.finished_at else None)
            for r in runs
        ),
    )


def summarize(sync_id: int, runs: Iterable[tuple[str, float | None, float | None]]) -> SyncHealth:
    """``health_of`` for bare facts: each run's status, duration and finish (epoch seconds).

    The journal reads just these three columns for a sync's latest runs, which
    keeps its health as cheap as one indexed query.
    """
    finished = succeeded = failed = open_runs = 0
    durations: list[float] = []
    last_success: float | None = None
    last_failure: float | None = None
    for status, duration, finished_at in runs:
        if status == "succeeded":
            succeeded += 1
            if finished_at is not None and (last_success is None or finished_at > last_success):
                last_success = finished_at
        elif status == "failed":
            failed += 1
            if finished_at is not None and (last_failure is None or finished_at > last_failure):
                last_failure = finished_at
        else:
            open_runs += 1
            continue
        finished += 1
        if duration is not None:
            durations.append(duration)
    median = statistics.median(durations) if durations else None
    return SyncHealth(
        sync_id=sync_id,
        runs=finished,
        succeeded=succeeded,
        failed=failed,
        success_rate=succeeded / finished if finished else None,
        median_duration=median,
        p95_duration=_percentile(durations, 0.95),
        last_success=from_timestamp(last_success),
        last_failure=from_timestamp(last_failure),
        open_runs=open_runs,
    )


def from_timestamp(value: float | None) -> datetime | None:
    """A stored epoch time as a UTC ``datetime`` (``None`` stays ``None``)."""
    return None if value is None else datetime.fromtimestamp(value, UTC)


def duration_text(seconds: float | None) -> str:
    """A duration for people: ``0.4 s``, ``31 s``, ``2 min 5 s``, ``2 h``, ``1 d 4 h``.

    Args:
        seconds: the duration, or ``None``.

    Returns:
        The text; ``-`` for ``None``.
    """
    if seconds is None:
        return "-"
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    parts = (
        (whole // 86400, "d"),
        (whole % 86400 // 3600, "h"),
        (whole % 3600 // 60, "min"),
        (whole % 60, "s"),
    )
    # The largest unit that is not 0, then the next one unless it is 0: "2 h", "2 h 5 min".
    first = next(i for i, (count, _) in enumerate(parts) if count)
    return " ".join(f"{count} {unit}" for count, unit in parts[first : first + 2] if count)
