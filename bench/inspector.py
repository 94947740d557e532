"""The inspector's pages on a journal of 100,000 deliveries against the same on 5,000.

Every page reads one page of rows (keyset paging by id), so its cost must not
grow with the journal. The journals are SQLite files filled straight through
``executemany`` (``fill_journal``); the pages are rendered in process through
``InspectorCore.handle``, so no server is measured. Figures (time per page, as
a ratio of the large journal to the small one, medians of interleaved rounds):

- the newest page of the list (with the status counts in its header);
- the list filtered by status (failed, one delivery in 97), and by sync;
- a page deep in the list (``before=`` the middle id);
- one delivery;
- one poll of the live stream with nothing new;
- the runs page: the last 20 runs of the 10 most recent syncs, and each
  sync's health (``journal.sync_health``, which sums up to 1,000 runs: so
  this page's cost grows until then, and is held to an aim only).

The page header's status counts are reused for ``COUNTS_TTL`` seconds, so the
pages above are timed as a person browsing sees them; counting itself
(``journal.counts()``, one pass over an index) grows with the journal, and is
shown on its own, for information.

The journals hold one run per four deliveries (``census_runs`` filled too).
The check, in the same run: each page answers 200 and shows its 50 rows (the
runs page its 200 runs).

Run on its own with ``python3 -m bench.inspector``.
"""

from __future__ import annotations

import json
import re
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from census_receiver.inspector.core import (
    RUNS_PER_SYNC,
    SYNCS_SHOWN,
    InspectorCore,
    InspectorRequest,
)
from census_receiver.journal import SQLiteJournal

from .harness import Budget, Figure, Row, check, make_row, measure, run_alone

__all__ = ["FIGURES", "LARGE", "SMALL", "fill_journal", "run"]

GROUP = "inspector"
BUDGET = Budget(rounds=21, seconds=20.0)
LARGE = 100_000
SMALL = 5_000
TOKEN = "bench-inspector-token"
#: Every 97th delivery failed; every 11th is an ignored alert.
FAILED_EVERY = 97
SYNCS = 50
#: The runs page draws the last runs of the most recent syncs.
RUNS_SHOWN = SYNCS_SHOWN * RUNS_PER_SYNC

PAGES: dict[str, str] = {
    "list": "/",
    "failed": "/?status=failed",
    "sync": "/?sync=1007",
    "deep": "/?before={middle}",
    "delivery": "/deliveries/{middle}",
    "live": "/live?after={last}",
    "runs": "/runs",
}
FIGURES = [
    Figure(
        f"inspector {name} page: {LARGE:,} / {SMALL:,} deliveries, time",
        f"{name}-large",
        f"{name}-small",
        "time",
        must=3.0,
        aim=1.5,
    )
    for name in PAGES
    if name != "runs"
] + [
    Figure(
        f"inspector runs page: {LARGE:,} / {SMALL:,} deliveries, time",
        "runs-large",
        "runs-small",
        "time",
        aim=3.0,
        note=(
            "each sync's health sums up to its last 1,000 runs (journal.sync_health): "
            "bounded, not paged; here 500 runs per sync against 25"
        ),
    ),
    Figure(
        f"journal.counts() behind the header: {LARGE:,} / {SMALL:,} deliveries, time",
        "counts-large",
        "counts-small",
        "time",
    ),
]

_EVENTS = ("sync.triggered", "sync.started", "sync.completed", "sync.success")


def fill_journal(journal: SQLiteJournal, count: int) -> None:
    """Insert ``count`` deliveries straight into ``journal``'s table, oldest first.

    They look like a real journal's: the four lifecycle events of runs of
    ``SYNCS`` syncs, one second apart, mostly handled, every ``FAILED_EVERY``-th
    failed and every 11th an ignored alert.

    Args:
        journal: an empty (or not) SQLite journal.
        count: how many rows to add.
    """
    start = time.time() - count
    rows = []
    for i in range(count):
        sync = 1000 + (i // 4) % SYNCS
        run = 500_000 + i // 4
        if i % FAILED_EVERY == FAILED_EVERY - 1:
            event, status, answer = "sync.failed", "failed", (500, "handler_error")
        elif i % 11 == 10:
            event, status, answer = "sync.alert.raised", "ignored", (200, "ignored")
        else:
            event, status, answer = _EVENTS[i % 4], "handled", (200, "handled")
        body = json.dumps(
            {"workspace_id": 3167, "sync_id": sync, "sync_run_id": run, "event": event}
        ).encode()
        at = start + i
        rows.append((f"bench:{i}", event, 3167, sync, run, body, status, 1, 1, at, at, *answer))
    # Each four deliveries are one run, queued a second and run two.
    runs = [
        (
            500_000 + r, 1000 + r % SYNCS, 3167, start + 4 * r, start + 4 * r,
            start + 4 * r + 1, start + 4 * r + 3, start + 4 * r + 3, "ok", "succeeded",
            start + 4 * r + 3, start + 4 * r + 3,
        )
        for r in range(count // 4)
    ]  # fmt: skip
    connection = sqlite3.connect(journal.path)
    try:
        with connection:
            connection.executemany(
                "INSERT INTO census_deliveries (key, event, workspace_id, sync_id, sync_run_id, "
                "body, status, attempts, tries, received_at, updated_at, answer_status, "
                "answer_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            connection.executemany(
                "INSERT INTO census_runs (sync_run_id, sync_id, workspace_id, first_seen_at, "
                "triggered_at, started_at, completed_at, success_at, completed_status, status, "
                "finished_at, updated_at, finish_handled) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                runs,
            )
    finally:
        connection.close()


def _page(core: InspectorCore, target: str) -> Callable[[int], object]:
    path, _, query = target.partition("?")
    headers = {"authorization": f"Bearer {TOKEN}", "host": "127.0.0.1"}

    def batch(n: int) -> None:
        for _ in range(n):
            response = core.handle(InspectorRequest("GET", path, query=query, headers=headers))
            if response.stream is not None:
                response.stream.poll()

    return batch


def _counts(journal: SQLiteJournal) -> Callable[[int], object]:
    def batch(n: int) -> None:
        for _ in range(n):
            journal.counts()

    return batch


def _check(core: InspectorCore, name: str, target: str, size: int) -> None:
    path, _, query = target.partition("?")
    headers = {"authorization": f"Bearer {TOKEN}"}
    response = core.handle(InspectorRequest("GET", path, query=query, headers=headers))
    check(response.status == 200, f"{name} on {size:,}: answered {response.status}")
    if response.stream is not None:
        check(response.stream.poll() == b"", f"live on {size:,}: sent rows with nothing new")
        return
    if name == "runs":
        bars = len(re.findall(rb'<div class="run" id="run-', response.body))
        check(bars == RUNS_SHOWN, f"runs on {size:,}: {bars} runs drawn, not {RUNS_SHOWN}")
        return
    rows = len(re.findall(rb'<tr id="d-', response.body))
    expected = 0 if name == "delivery" else 50
    check(rows == expected, f"{name} on {size:,}: {rows} rows, not {expected}")


def run(budget: Budget) -> list[Row]:
    """Fill a large and a small journal, then time each page on both.

    Raises:
        CorrectnessError: if a page does not answer 200 with a full page of rows.
    """
    # The small journal still fills every page, filtered ones included (1 in 97 failed).
    large, small = (SMALL, SMALL) if budget.quick else (LARGE, SMALL)
    with tempfile.TemporaryDirectory(prefix="census-bench-inspector-") as folder:
        journals = {}
        for label, count in (("large", large), ("small", small)):
            journal = SQLiteJournal(Path(folder, f"{label}.db"), synchronous="off")
            fill_journal(journal, count)
            journals[label] = (journal, count)
        try:
            contenders = {}
            for label, (journal, count) in journals.items():
                core = InspectorCore(journal, token=TOKEN)
                for name, template in PAGES.items():
                    target = template.format(middle=count // 2, last=count)
                    _check(core, name, target, count)
                    contenders[f"{name}-{label}"] = _page(core, target)
                contenders[f"counts-{label}"] = _counts(journal)
            rows = []
            for figure in FIGURES:
                pair = {n: contenders[n] for n in (figure.subject, figure.baseline)}
                samples = measure(pair, budget)
                rows.append(make_row(GROUP, figure, samples, quick=budget.quick))
            return rows
        finally:
            for journal, _ in journals.values():
                journal.close()


if __name__ == "__main__":
    raise SystemExit(run_alone(run, BUDGET))
