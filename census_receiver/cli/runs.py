"""``census-receiver runs``: the sync runs your receiver's journal put together, and their health.

::

    census-receiver runs (--app MODULE:ATTR | --journal FILE) [--sync ID] [--status S]
                         [--overdue DURATION] [--limit N] [--json]
    census-receiver runs (--app MODULE:ATTR | --journal FILE) --health [--sync ID]
                         [--limit N] [--json]
    census-receiver runs (--app MODULE:ATTR | --journal FILE) --show ID [--json]

Only reads: the journal's ``runs``, ``overdue_runs``, ``run``, ``syncs`` and
``sync_health`` (see ``census_receiver.runs`` for what a run record's times
mean). The receiver is found as for ``deliveries`` (``census_receiver.cli.app``);
``--journal FILE`` reads a SQLite journal without any app. Times are shown in
UTC, queue times and durations as ``31 s`` or ``2 min 5 s``; ``--json`` prints
one object per line with every field, times in ISO 8601.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..journal.runlog import HEALTH_WINDOW
from ..runs import duration_text
from .app import add_source_arguments, reading_journal
from .common import EXIT_INPUT, EXIT_OK, EXIT_USAGE, CommandFailed, add_limit_argument
from .tables import add_json_argument, cell, json_data, print_facts, print_table, time_cell

if TYPE_CHECKING:
    from ..journal.base import Journal
    from ..runs import RunRecord, SyncHealth
    from .common import Subcommands

__all__ = [
    "DEFAULT_RUNS_LIMIT",
    "RUN_STATUSES",
    "add_parsers",
    "duration_text",
    "health_json",
    "parse_duration",
    "run_json",
    "run_runs",
]

#: Runs (or, with ``--health``, syncs) listed unless ``--limit`` says otherwise.
DEFAULT_RUNS_LIMIT = 50
#: The statuses of a run, as ``census_receiver.runs`` sets them.
RUN_STATUSES = ("triggered", "started", "succeeded", "failed")
#: Seconds per unit of an ``--overdue`` value; a bare number is seconds.
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[smhd]?)")


def parse_duration(value: str) -> timedelta:
    """Parse a duration such as ``90s``, ``15m``, ``2h``, ``1d`` or ``7200`` (an argparse ``type``).

    Args:
        value: the argument as given: a number of seconds, or a number followed
            by ``s``, ``m``, ``h`` or ``d``.

    Returns:
        The duration.

    Raises:
        argparse.ArgumentTypeError: if it is not of that form, or too long.
    """
    match = _DURATION.fullmatch(value.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"not a duration: {value!r}; give seconds, or a number with s, m, h or d "
            "(90s, 15m, 2h, 1d)"
        )
    try:
        return timedelta(seconds=float(match["number"]) * _UNITS[match["unit"]])
    except OverflowError:
        raise argparse.ArgumentTypeError(f"too long a duration: {value!r}") from None


def add_parsers(commands: Subcommands) -> None:
    """Register ``runs``.

    Args:
        commands: the sub-command set of the ``census-receiver`` parser.
    """
    runs = commands.add_parser(
        "runs",
        help="list the sync runs your receiver's journal put together, or each sync's health",
        description=(
            "List sync runs with their times (UTC), queue time and duration, newest first; "
            "or the runs overdue by a given time, the health of each sync, or one run in "
            "full. Times are when the journal first received each event."
        ),
    )
    add_source_arguments(runs)
    runs.add_argument("--sync", type=int, metavar="ID", help="only this sync")
    runs.add_argument(
        "--status",
        choices=RUN_STATUSES,
        metavar="S",
        help=f"only runs in this status: {', '.join(RUN_STATUSES)}",
    )
    add_limit_argument(
        runs,
        default=DEFAULT_RUNS_LIMIT,
        help="list at most N runs, or with --health N syncs (%(default)s)",
    )
    add_json_argument(runs)
    mode = runs.add_mutually_exclusive_group()
    mode.add_argument(
        "--overdue",
        type=parse_duration,
        metavar="DURATION",
        help=(
            "only runs triggered or started and not finished for this long, oldest first "
            "(90s, 15m, 2h, 1d, or seconds)"
        ),
    )
    mode.add_argument(
        "--health",
        action="store_true",
        help=(
            "each sync's health instead (the --sync one, or the most recently active): "
            "runs, success rate, median and p95 duration, last success and failure, open runs"
        ),
    )
    mode.add_argument(
        "--show",
        type=int,
        metavar="ID",
        help="show one run in full: its times, events, missing events and alerts",
    )
    runs.set_defaults(run=run_runs)


# -- loading ----------------------------------------------------------------------------


def _check_options(args: argparse.Namespace) -> None:
    """Refuse the filters that do not apply to the mode asked for, before loading anything."""
    if args.status is not None and (args.health or args.show is not None):
        raise CommandFailed(
            EXIT_USAGE, "--status filters the list of runs: it goes without --health and --show"
        )
    if args.sync is not None and args.show is not None:
        raise CommandFailed(EXIT_USAGE, "--show names one run: it goes without --sync")


# -- runs -------------------------------------------------------------------------------


def run_runs(args: argparse.Namespace, prog: str) -> int:
    """List sync runs (all, or the overdue ones), show one, or sum up each sync's health.

    Args:
        args: the parsed ``runs`` arguments.
        prog: how the command was invoked, for the commands it suggests.

    Returns:
        ``EXIT_OK``.

    Raises:
        CommandFailed: a filter that does not go with the mode asked for
            (EXIT_USAGE); the app or journal cannot be loaded, or ``--show``
            names an unknown run (EXIT_INPUT); the journal's database fails
            (EXIT_UNREACHABLE).
    """
    _check_options(args)
    with reading_journal(args) as journal:
        if args.show is not None:
            _show(journal, args, prog)
        elif args.health:
            _list_health(journal, args)
        elif args.overdue is not None:
            _list_overdue(journal, args)
        else:
            _list_runs(journal, args)
    return EXIT_OK


def run_json(run: RunRecord) -> dict[str, Any]:
    """A run record as plain JSON data: every field and ``finished``, times in ISO 8601.

    Args:
        run: the record.

    Returns:
        A dict ready for ``json.dumps``.
    """
    data: dict[str, Any] = json_data(run)
    data["finished"] = run.finished
    return data


def health_json(health: SyncHealth) -> dict[str, Any]:
    """A sync's health as plain JSON data: every field, times in ISO 8601.

    Args:
        health: what ``journal.sync_health`` returned.

    Returns:
        A dict ready for ``json.dumps``; ``success_rate`` is a fraction (0 to 1).
    """
    data: dict[str, Any] = json_data(health)
    return data


def _missing(run: RunRecord) -> str:
    return ",".join(name.removeprefix("sync.") for name in run.missing) or "-"


_RUN_HEADER = (
    "RUN", "SYNC", "STATUS", "TRIGGERED (UTC)", "STARTED (UTC)", "FINISHED (UTC)",
    "QUEUED", "DURATION", "ALERTS", "MISSING",
)  # fmt: skip


def _run_row(run: RunRecord) -> tuple[str, ...]:
    return (
        str(run.sync_run_id),
        str(run.sync_id),
        run.status,
        time_cell(run.triggered_at),
        time_cell(run.started_at),
        time_cell(run.finished_at),
        duration_text(run.queued_seconds),
        duration_text(run.duration_seconds),
        str(len(run.alerts)),
        _missing(run),
    )


def _list_runs(journal: Journal, args: argparse.Namespace) -> None:
    runs = journal.runs(sync_id=args.sync, status=args.status, limit=args.limit)
    if args.json:
        for run in runs:
            print(json.dumps(run_json(run)))
        return
    if not runs:
        filtered = args.sync is not None or args.status is not None
        print("no runs recorded" + (" that match" if filtered else "") + ".")
        return
    print_table(_RUN_HEADER, [_run_row(run) for run in runs])
    if len(runs) == args.limit:
        print(f"(the newest {args.limit}: --limit N shows more)")


def _open_since(run: RunRecord) -> datetime | None:
    # What overdue_runs counts from: sync.started, else sync.triggered.
    return run.started_at or run.triggered_at


def _list_overdue(journal: Journal, args: argparse.Namespace) -> None:
    after: timedelta = args.overdue
    now = journal.clock()
    runs = [
        run
        for run in journal.overdue_runs(after=after)
        if args.sync in (None, run.sync_id) and args.status in (None, run.status)
    ]
    shown = runs[: args.limit]
    open_for: dict[int, float | None] = {}
    for run in shown:
        since = _open_since(run)
        open_for[run.sync_run_id] = None if since is None else max(0.0, now - since.timestamp())
    if args.json:
        for run in shown:
            print(json.dumps({**run_json(run), "open_seconds": open_for[run.sync_run_id]}))
        return
    threshold = duration_text(after.total_seconds())
    if not shown:
        filtered = args.sync is not None or args.status is not None
        print(f"no runs open for over {threshold}" + (" that match" if filtered else "") + ".")
        return
    rows = [(*_run_row(run), duration_text(open_for[run.sync_run_id])) for run in shown]
    print_table((*_RUN_HEADER, "OPEN FOR"), rows)
    more = (
        f"; the oldest {len(shown)} shown, --limit N shows more" if len(runs) > len(shown) else ""
    )
    print(f"{len(runs)} run(s) triggered or started over {threshold} ago and not finished{more}")


def _percent(rate: float | None) -> str:
    if rate is None:
        return "-"
    return f"{rate * 100:.1f}".rstrip("0").rstrip(".") + "%"


def _list_health(journal: Journal, args: argparse.Namespace) -> None:
    syncs = [args.sync] if args.sync is not None else journal.syncs(args.limit)
    healths = [journal.sync_health(sync_id) for sync_id in syncs]
    if args.json:
        for health in healths:
            print(json.dumps(health_json(health)))
        return
    healths = [h for h in healths if h.runs or h.open_runs]
    if not healths:
        which = f" of sync {args.sync}" if args.sync is not None else ""
        print(f"no runs{which} recorded.")
        return
    header = (
        "SYNC", "RUNS", "SUCCESS", "MEDIAN", "P95",
        "LAST SUCCESS (UTC)", "LAST FAILURE (UTC)", "OPEN",
    )  # fmt: skip
    rows = [
        (
            str(h.sync_id),
            str(h.runs),
            _percent(h.success_rate),
            duration_text(h.median_duration),
            duration_text(h.p95_duration),
            time_cell(h.last_success),
            time_cell(h.last_failure),
            str(h.open_runs),
        )
        for h in healths
    ]
    print_table(header, rows)
    print(
        f"(each sync's latest {HEALTH_WINDOW:,} runs: RUNS counts the finished ones, "
        "OPEN those triggered or started and not finished)"
    )


def _show(journal: Journal, args: argparse.Namespace, prog: str) -> None:
    run = journal.run(args.show)
    if run is None:
        source = f"--app {args.app}" if args.journal is None else f"--journal {args.journal}"
        raise CommandFailed(
            EXIT_INPUT,
            f"no run {args.show} in the journal (none of its events recorded, or pruned); "
            f"list them with: {prog} runs {source}",
        )
    if args.json:
        print(json.dumps(run_json(run)))
        return
    print(
        f"run {run.sync_run_id} of sync {run.sync_id} (workspace {run.workspace_id}): {run.status}"
    )
    facts = [
        ("triggered (UTC)", time_cell(run.triggered_at)),
        ("started (UTC)", time_cell(run.started_at)),
        ("finished (UTC)", time_cell(run.finished_at)),
        ("queued", duration_text(run.queued_seconds)),
        ("duration", duration_text(run.duration_seconds)),
        ("completed status", cell(run.completed_status)),
        ("events received", ", ".join(run.received) or "-"),
        ("missing events", ", ".join(run.missing) or "-"),
    ]
    print_facts(facts)
    print("alerts:")
    for alert in run.alerts:
        print(
            f"  {time_cell(alert.at)}  {alert.kind:<8} #{cell(alert.alert_instance_id)} "
            f"{cell(alert.alert_type, 64)}: {cell(alert.message, 200)}"
        )
    if not run.alerts:
        print("  -")
