"""Reading sync runs from a large journal stays interactive: indexes, not scans.

A SQLite journal is filled with 100,000 recorded deliveries (25,000 runs of 4
lifecycle events over 50 syncs, written in bulk into the journal's own tables),
and another with only the 2,000 deliveries of the one sync the reads ask for.
Each figure times the same read, with the same answer, on both: a ratio near 1
says the read does not grow with the journal (a scan would make it about 50):

- ``journal.runs(sync_id=...)``: the latest 100 runs of one sync;
- ``journal.sync_health(sync_id)``: one sync's health over its latest runs;
- ``journal.deliveries(sync_id=...)``: the latest 100 deliveries of one sync;
- ``journal.runs()``: the latest 100 runs of any sync.

Run on its own with ``python3 -m bench.runs``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from census_receiver.journal import SQLiteJournal
from census_receiver.testing import DOCUMENTED_EXAMPLES

from .harness import Budget, Figure, Row, check, make_row, measure, run_alone

__all__ = ["FIGURES", "fill", "run"]

GROUP = "runs"
BUDGET = Budget(rounds=21, seconds=15.0, batch_seconds=0.05)
SYNCS = 50
EVENTS = ("sync.triggered", "sync.started", "sync.completed", "sync.success", "sync.failed")

FIGURES = [
    Figure(
        "runs: journal.runs(sync_id) on 100,000 deliveries / on that sync's 2,000",
        "runs-by-sync-large",
        "runs-by-sync-small",
        "time",
        must=3.0,
    ),
    Figure(
        "runs: journal.sync_health(sync_id) on 100,000 deliveries / on that sync's 2,000",
        "health-large",
        "health-small",
        "time",
        must=3.0,
    ),
    Figure(
        "runs: journal.deliveries(sync_id) on 100,000 deliveries / on that sync's 2,000",
        "deliveries-by-sync-large",
        "deliveries-by-sync-small",
        "time",
        must=3.0,
    ),
    Figure(
        "runs: journal.runs() on 100,000 deliveries / on one sync's 2,000",
        "runs-large",
        "runs-small",
        "time",
        must=3.0,
    ),
]


def fill(journal: SQLiteJournal, deliveries: int, *, only: int | None = None) -> None:
    """Record ``deliveries`` deliveries (4 per run, 50 syncs) straight into the journal's tables.

    With ``only``, keep just that sync's runs (the same ones).

    Each run is triggered, started a minute later, completed ten minutes after
    that, then succeeded (or, one in ten, failed): what the journal would hold
    after receiving them, written in bulk.
    """
    runs = deliveries // 4
    start = 1_700_000_000.0
    rows: list[tuple[Any, ...]] = []
    run_rows: list[tuple[Any, ...]] = []
    template = dict(DOCUMENTED_EXAMPLES[0])
    for run in range(runs):
        sync = 1000 + run % SYNCS
        if only is not None and sync != only:
            continue
        at = start + run * 60.0
        failed = run % 10 == 0
        times = {"sync.triggered": at, "sync.started": at + 60, "sync.completed": at + 660}
        times["sync.failed" if failed else "sync.success"] = at + 661
        for event, when in times.items():
            body = json.dumps({**template, "event": event, "sync_id": sync, "sync_run_id": run})
            rows.append(
                (f"{event}:3167:{sync}:{run}", event, 3167, sync, run, body.encode(), "handled",
                 1, 1, when, when)
            )  # fmt: skip
        run_rows.append(
            (run, sync, 3167, at, times["sync.triggered"], times["sync.started"],
             times["sync.completed"], None if failed else at + 661, at + 661 if failed else None,
             "emergency" if failed else "ok", "failed" if failed else "succeeded", at + 660,
             at + 661, 1)
        )  # fmt: skip
    with journal.transaction() as cur:
        raw = cur._cursor  # bulk insert with executemany: these rows, not single statements
        raw.executemany(
            "INSERT INTO census_deliveries (key, event, workspace_id, sync_id, sync_run_id, "
            "body, status, attempts, tries, received_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        raw.executemany(
            "INSERT INTO census_runs (sync_run_id, sync_id, workspace_id, first_seen_at, "
            "triggered_at, started_at, completed_at, success_at, failed_at, completed_status, "
            "status, finished_at, updated_at, finish_handled) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            run_rows,
        )


def run(budget: Budget) -> list[Row]:
    """Measure the reads on a large and a small journal."""
    large_count = 2_000 if budget.quick else 100_000
    with tempfile.TemporaryDirectory(prefix="census-bench-runs-") as tmp:
        large = SQLiteJournal(Path(tmp) / "large.db", synchronous="off")
        small = SQLiteJournal(Path(tmp) / "small.db", synchronous="off")
        try:
            sync = 1000 + 7
            fill(large, large_count)
            fill(small, large_count, only=sync)
            check(
                [r.sync_run_id for r in large.runs(sync_id=sync)]
                == [r.sync_run_id for r in small.runs(sync_id=sync)],
                "the two journals do not hold the same runs of the sync",
            )
            check(
                large.run(7) is not None and large.run(7).status == "succeeded",  # type: ignore[union-attr]
                "run 7 was not put together",
            )
            contenders = {}
            for name, journal in (("large", large), ("small", small)):
                contenders[f"runs-by-sync-{name}"] = _times(lambda j=journal: j.runs(sync_id=sync))
                contenders[f"health-{name}"] = _times(lambda j=journal: j.sync_health(sync))
                contenders[f"deliveries-by-sync-{name}"] = _times(
                    lambda j=journal: j.deliveries(sync_id=sync)
                )
                contenders[f"runs-{name}"] = _times(lambda j=journal: j.runs())
            samples = measure(contenders, budget)
        finally:
            large.close()
            small.close()
    return [make_row(GROUP, figure, samples, quick=budget.quick) for figure in FIGURES]


def _times(read: Any) -> Any:
    def batch(n: int) -> None:
        for _ in range(n):
            read()

    return batch


def main() -> int:
    """Run this group alone and print its table."""
    return run_alone(run, BUDGET)


if __name__ == "__main__":
    sys.exit(main())
