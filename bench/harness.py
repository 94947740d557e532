"""Interleaved, paired timing rounds and the figures table every bench script prints.

Absolute times on a shared machine swing by 2x from one minute to the next, so no
figure here is an absolute time. Each figure is the ratio of two contenders timed
side by side: every round times one batch of each contender, in an order that
rotates from round to round, and the figure is the median over rounds of the
ratio *within* a round. A burst of noise slows both sides of a round, or one round
out of many, and the median shrugs it off; the min-max of the per-round ratios
shows how noisy the run was.

Batches are timed in CPU time of this process (``time.process_time``, every
thread included), not wall-clock time: when other processes take the CPU, the
wall clock runs on but the batch does not, and such pauses would otherwise be
most of the noise.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

__all__ = [
    "Budget",
    "CorrectnessError",
    "Figure",
    "Row",
    "calibrate",
    "check",
    "check_counts",
    "failed_musts",
    "format_table",
    "measure",
    "print_report",
    "quiet_logs",
    "rows_to_json",
    "run_alone",
]

#: The clock batches are timed with: CPU seconds of this process, all threads.
CLOCK = time.process_time

#: A contender does ``n`` operations when called with ``n``.
Batch = Callable[[int], object]


class CorrectnessError(AssertionError):
    """A contender answered wrongly: its figures mean nothing and the run fails."""


def quiet_logs() -> None:
    """Keep census_receiver's warnings (one per forged delivery checked) off the report.

    For the command line only: it changes the process's logging for good.
    """
    logging.getLogger("census_receiver").setLevel(logging.ERROR)


def check(condition: bool, message: str) -> None:
    """Fail the run unless ``condition`` holds.

    Args:
        condition: what must be true.
        message: what went wrong, for the report.

    Raises:
        CorrectnessError: if ``condition`` is false.
    """
    if not condition:
        raise CorrectnessError(message)


def check_counts(name: str, sent: int, ok: int, calls: int) -> None:
    """Fail the run unless every timed request was answered 200 and ran the handler once.

    Raises:
        CorrectnessError: naming the contender and what it got wrong.
    """
    check(ok == sent, f"{name}: {sent - ok} requests not 200")
    check(calls == sent, f"{name}: {sent} requests ran the handler {calls} times")


@dataclass(frozen=True)
class Budget:
    """How long to measure: CPU seconds per batch, rounds, and a wall-clock cap.

    A ``measure`` call runs ``rounds`` rounds, but stops early (after at least
    ``min_rounds``) once ``seconds`` of wall-clock time have passed, so a busy
    machine makes a run less precise, not longer.

    ``Budget.quick_run()`` runs every code path once with tiny counts, for tests:
    its figures are meaningless, but every correctness check still runs.
    """

    batch_seconds: float = 0.01
    rounds: int = 41
    seconds: float = 10.0
    min_rounds: int = 9
    quick: bool = False

    @classmethod
    def quick_run(cls) -> Budget:
        """One round of tiny batches: exercises the code and the checks, measures nothing."""
        return cls(batch_seconds=0.0, rounds=1, quick=True)


def calibrate(batch: Batch, seconds: float, *, limit: int = 1 << 22) -> int:
    """Find an operation count for which ``batch`` takes about ``seconds``.

    Args:
        batch: the contender.
        seconds: the wanted duration of one batch; 0 gives a count of 1.
        limit: the largest count tried.

    Returns:
        The count (at least 1).
    """
    n = 1
    while n < limit:
        started = CLOCK()
        batch(n)
        elapsed = CLOCK() - started
        if elapsed >= seconds:
            break
        # Jump straight to the estimate when the clock saw enough, else double.
        if elapsed > seconds / 20:
            n = max(n + 1, math.ceil(n * seconds / elapsed))
            break
        n *= 2
    return min(n, limit)


def measure(
    contenders: dict[str, Batch],
    budget: Budget,
    *,
    counts: dict[str, int] | None = None,
    rounds: int | None = None,
) -> dict[str, list[float]]:
    """Time every contender in interleaved rounds.

    Each contender's batch size is calibrated once, so every batch lasts about
    ``budget.batch_seconds``; round ``r`` starts with contender ``r mod k`` so no
    contender always runs right after the same neighbour. Rounds stop early when
    ``budget.seconds`` of wall-clock time have passed (see ``Budget``).

    Args:
        contenders: name -> batch function.
        budget: batch duration and rounds.
        counts: fixed operation counts per contender, instead of calibrating.
        rounds: overrides ``budget.rounds``.

    Returns:
        name -> seconds per operation, one value per round (paired by index).
    """
    names = list(contenders)
    sizes = dict(counts or {})
    for name in names:
        if name not in sizes:
            sizes[name] = calibrate(contenders[name], budget.batch_seconds)
    samples: dict[str, list[float]] = {name: [] for name in names}
    total = rounds if rounds is not None else budget.rounds
    deadline = time.monotonic() + budget.seconds
    for r in range(total):
        if r >= min(budget.min_rounds, total) and time.monotonic() > deadline:
            break
        # Collect between batches, not inside one: each batch still pays for the
        # garbage it makes, but not for what the previous contender left behind.
        gc.collect()
        for i in range(len(names)):
            name = names[(r + i) % len(names)]
            n = sizes[name]
            started = CLOCK()
            contenders[name](n)
            samples[name].append((CLOCK() - started) / n)
    return samples


@dataclass
class Figure:
    """What one table row compares, and the targets it is held to.

    ``kind="time"``: the ratio is subject time / baseline time (lower is better).
    ``kind="rate"``: the ratio is subject rate / baseline rate (higher is better).
    """

    title: str
    subject: str
    baseline: str
    kind: Literal["time", "rate"]
    must: float | None = None
    aim: float | None = None
    note: str = ""

    def better(self, ratio: float, bound: float) -> bool:
        """Whether ``ratio`` reaches ``bound`` in this figure's direction."""
        return ratio <= bound if self.kind == "time" else ratio >= bound


@dataclass
class Row:
    """One measured figure: medians, ranges and the verdict."""

    group: str
    title: str
    kind: str
    subject: str
    baseline: str
    subject_median: float
    subject_min: float
    subject_max: float
    baseline_median: float
    ratio: float
    ratio_min: float
    ratio_max: float
    rounds: int
    unit: str
    must: float | None
    aim: float | None
    verdict: str
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)


def _verdict(figure: Figure, ratio: float, quick: bool) -> str:
    if quick:
        return "ran"
    if figure.must is not None and not figure.better(ratio, figure.must):
        return "FAIL"
    if figure.aim is not None:
        return "aim met" if figure.better(ratio, figure.aim) else "pass"
    return "pass" if figure.must is not None else "info"


def make_row(
    group: str,
    figure: Figure,
    samples: dict[str, list[float]],
    *,
    quick: bool = False,
    unit: Literal["time", "rate"] | None = None,
) -> Row:
    """Turn per-round samples (seconds per operation) into a table row.

    Args:
        group: the figure group (the script) the row belongs to.
        figure: the comparison.
        samples: name -> seconds per operation per round, from ``measure``.
        quick: whether this was a quick run (no verdict).
        unit: how to show the medians: per-operation time, or operations per
            second; defaults to the figure's kind.

    Returns:
        The row.
    """
    subject = samples[figure.subject]
    baseline = samples[figure.baseline]
    if figure.kind == "time":
        ratios = [s / b for s, b in zip(subject, baseline, strict=True)]
    else:
        ratios = [b / s for s, b in zip(subject, baseline, strict=True)]
    shown = unit or figure.kind

    def show(values: Sequence[float]) -> list[float]:
        return [1 / v for v in values] if shown == "rate" else list(values)

    subject_shown = show(subject)
    ratio = statistics.median(ratios)
    return Row(
        group=group,
        title=figure.title,
        kind=figure.kind,
        subject=figure.subject,
        baseline=figure.baseline,
        subject_median=statistics.median(subject_shown),
        subject_min=min(subject_shown),
        subject_max=max(subject_shown),
        baseline_median=statistics.median(show(baseline)),
        ratio=ratio,
        ratio_min=min(ratios),
        ratio_max=max(ratios),
        rounds=len(ratios),
        unit="req/s" if shown == "rate" else "s/op",
        must=figure.must,
        aim=figure.aim,
        verdict=_verdict(figure, ratio, quick),
        note=figure.note,
    )


def _quantity(value: float, unit: str) -> str:
    if unit == "req/s":
        return f"{value:,.0f}/s"
    if unit == "MB":
        return f"{value:.1f} MB"
    if value >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    if value >= 1e-6:
        return f"{value * 1e6:.2f} µs"
    return f"{value * 1e9:.0f} ns"


def _bound(figure_kind: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{'<=' if figure_kind == 'time' else '>='} {value:.2f}"


def format_table(rows: Iterable[Row]) -> str:
    """The figures as a Markdown table (it reads fine in a terminal too).

    Args:
        rows: the rows, in order.

    Returns:
        The table text.
    """
    header = (
        "| figure | subject median | subject min-max | baseline median "
        "| ratio (median) | ratio min-max | must reach | aim | result |"
    )
    lines = [header, "|" + "---|" * 9]
    for row in rows:
        lines.append(
            "| "
            + " | ".join(
                [
                    row.title,
                    _quantity(row.subject_median, row.unit),
                    f"{_quantity(row.subject_min, row.unit)} - "
                    f"{_quantity(row.subject_max, row.unit)}",
                    _quantity(row.baseline_median, row.unit),
                    f"{row.ratio:.2f}",
                    f"{row.ratio_min:.2f} - {row.ratio_max:.2f}",
                    _bound(row.kind, row.must),
                    _bound(row.kind, row.aim),
                    row.verdict,
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def failed_musts(rows: Iterable[Row]) -> list[Row]:
    """The rows whose "must reach" target was missed."""
    return [row for row in rows if row.verdict == "FAIL"]


def rows_to_json(rows: Iterable[Row]) -> str:
    """The rows as JSON, for tools that keep a history of runs."""
    return json.dumps([asdict(row) for row in rows], indent=2)


def print_report(rows: Sequence[Row], *, notes: Iterable[str] = ()) -> int:
    """Print the table and the notes; return the exit status (1 if a must was missed).

    Args:
        rows: the measured rows.
        notes: lines printed under the table.

    Returns:
        0 when every "must reach" target was met, else 1.
    """
    print(format_table(rows))
    for note in notes:
        print(note)
    for row in rows:
        if row.note:
            print(f"- {row.title}: {row.note}")
    missed = failed_musts(rows)
    for row in missed:
        print(
            f"MISSED: {row.title}: ratio {row.ratio:.2f}, must reach {_bound(row.kind, row.must)}",
            file=sys.stderr,
        )
    return 1 if missed else 0


def run_alone(run: Callable[[Budget], list[Row]], budget: Budget) -> int:
    """Run one group on its own (``python3 -m bench.<group>``) and print its table.

    Returns:
        The exit status of ``print_report``.
    """
    quiet_logs()
    return print_report(run(budget))
