"""``census-receiver deliveries``, ``replay`` and ``work``: the journal of a user's receiver.

::

    census-receiver deliveries (--app MODULE:ATTR | --journal FILE) [--status S] [--event E]
                               [--sync ID] [--run ID] [--before ID] [--limit N] [--json]
    census-receiver deliveries (--app MODULE:ATTR | --journal FILE) --show ID [--json]
    census-receiver deliveries (--app MODULE:ATTR | --journal FILE) --rejections [--json]
    census-receiver replay --app MODULE:ATTR (ID... | --failed [--limit N]) [--force]
    census-receiver work --app MODULE:ATTR [--poll SECONDS] [--prune-every SECONDS] [--once]

The receiver is imported as uvicorn imports an app (``census_receiver.cli.app``)
and must have a journal; the journal's own settings (lease, tries, backoff,
retention) are the ones used, so that every process agrees on them.
``deliveries --journal FILE`` reads a SQLite journal without any app (the one
``serve --journal FILE`` keeps, say).

``work`` calls ``receiver.run_pending(1)`` in a loop: one delivery at a time, so
that a stop (Ctrl-C, SIGTERM) waits for the delivery being run and never leaves
one taken but not started. Several workers may run at once, on one host with
SQLite or on several with PostgreSQL: the journal's leases give each delivery
to one of them, and a worker that dies mid-handler loses nothing (its lease
expires, another worker runs the delivery again). Records older than the
journal's ``retention`` are pruned at start, then every ``--prune-every``.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

from ..answers import REASONS, printable
from ..journal.base import JournalUnavailable
from ..journal.records import STATUSES, DeliveryRecord, Rejection
from .app import (
    add_app_arguments,
    add_source_arguments,
    close_journal,
    journal_errors,
    load_app_journal,
    reading_journal,
)
from .common import (
    EXIT_INPUT,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CommandFailed,
    non_negative,
    positive_int,
    positive_seconds,
)
from .tables import (
    add_json_argument,
    cell,
    json_data,
    print_facts,
    print_table,
    time_cell,
)

if TYPE_CHECKING:
    from ..journal.base import Journal
    from ..receiver import WebhookReceiver
    from .common import Subcommands

__all__ = [
    "DEFAULT_LIST_LIMIT",
    "DEFAULT_POLL",
    "DEFAULT_PRUNE_EVERY",
    "EXIT_STOPPED_AT_ONCE",
    "add_parsers",
    "record_json",
    "run_deliveries",
    "run_replay",
    "run_work",
]

#: Deliveries listed by ``deliveries`` unless ``--limit`` says otherwise.
DEFAULT_LIST_LIMIT = 50
#: Seconds ``work`` waits before looking again when nothing was due.
DEFAULT_POLL = 1.0
#: Seconds between two prunes of the journal by ``work``.
DEFAULT_PRUNE_EVERY = 3600.0
#: ``work`` stopped by a second Ctrl-C or SIGTERM, in the middle of a delivery (128 + SIGINT).
EXIT_STOPPED_AT_ONCE = 130
#: How many failed deliveries ``replay --failed`` reads from the journal at a time.
_PAGE = 500
#: The longest ``work`` waits before trying an unavailable journal again.
_MAX_OUTAGE_WAIT = 30.0
#: Time stamps of ``work``'s lines, as its log lines show them (local time).
_STAMP = "%Y-%m-%d %H:%M:%S"


def add_parsers(commands: Subcommands) -> None:
    """Register ``deliveries``, ``replay`` and ``work``.

    Args:
        commands: the sub-command set of the ``census-receiver`` parser.
    """
    deliveries = commands.add_parser(
        "deliveries",
        help="list the deliveries your receiver's journal recorded",
        description=(
            "List recorded deliveries, newest first (or show one in full, or the "
            "recent refusals), from the journal of your receiver or a SQLite journal file."
        ),
    )
    add_source_arguments(deliveries)
    deliveries.add_argument(
        "--status",
        choices=STATUSES,
        metavar="S",
        help=f"only deliveries in this status: {', '.join(STATUSES)}",
    )
    deliveries.add_argument("--event", metavar="E", help="only this event (sync.failed, ...)")
    deliveries.add_argument("--sync", type=int, metavar="ID", help="only this sync")
    deliveries.add_argument(
        "--run", type=int, dest="sync_run", metavar="ID", help="only this sync run"
    )
    deliveries.add_argument(
        "--before", type=int, metavar="ID", help="only ids below ID (the next page)"
    )
    deliveries.add_argument(
        "--limit",
        type=positive_int,
        default=DEFAULT_LIST_LIMIT,
        metavar="N",
        help="list at most N (%(default)s)",
    )
    add_json_argument(deliveries)
    mode = deliveries.add_mutually_exclusive_group()
    mode.add_argument(
        "--show",
        type=int,
        metavar="ID",
        help="show one delivery in full: payload, attempts, handler traceback",
    )
    mode.add_argument(
        "--rejections",
        action="store_true",
        help="list recent refusals of unverified requests instead (their bodies are never kept)",
    )
    deliveries.set_defaults(run=run_deliveries)

    replay = commands.add_parser(
        "replay",
        help="run recorded deliveries through your handlers again",
        description=(
            "Run the handlers of recorded deliveries again, one line per delivery. "
            "Exits 0 only if every replay succeeded (a delivery handled before counts, "
            "and is said so); 1 otherwise; 3 for an unknown id."
        ),
    )
    add_app_arguments(replay)
    replay.add_argument("ids", nargs="*", type=int, metavar="ID", help="the deliveries' ids")
    replay.add_argument(
        "--failed", action="store_true", help="every failed delivery instead, oldest first"
    )
    replay.add_argument(
        "--limit", type=positive_int, metavar="N", help="with --failed: at most N (the oldest)"
    )
    replay.add_argument(
        "--force",
        action="store_true",
        help="run deliveries already handled (or ignored, or dropped) again too",
    )
    replay.set_defaults(run=run_replay)

    work = commands.add_parser(
        "work",
        help="run due deliveries: captured ones, retries, runs a dead worker left",
        description=(
            "Run the deliveries that are due, one at a time, until Ctrl-C or SIGTERM "
            "(which stop after the current delivery). Several workers may run at once. "
            "Tries, backoff, lease and retention are the journal's settings."
        ),
    )
    add_app_arguments(work)
    work.add_argument(
        "--poll",
        type=positive_seconds,
        default=DEFAULT_POLL,
        metavar="SECONDS",
        help="wait this long when nothing is due (%(default)g)",
    )
    work.add_argument(
        "--prune-every",
        type=non_negative,
        default=DEFAULT_PRUNE_EVERY,
        metavar="SECONDS",
        help=(
            "prune records older than the journal's retention at start and then this "
            "often (%(default)g; 0: never)"
        ),
    )
    work.add_argument(
        "--once",
        action="store_true",
        help="run what is due now, then exit (for cron)",
    )
    work.set_defaults(run=run_work)


# -- deliveries -------------------------------------------------------------------------


def run_deliveries(args: argparse.Namespace, prog: str) -> int:
    """List recorded deliveries, show one, or list recent refusals.

    Args:
        args: the parsed ``deliveries`` arguments.
        prog: how the command was invoked, for the commands it suggests.

    Returns:
        ``EXIT_OK``.

    Raises:
        CommandFailed: the app or journal cannot be loaded, or ``--show`` names an
            unknown id (EXIT_INPUT); the journal's database fails (EXIT_UNREACHABLE).
    """
    with reading_journal(args) as journal:
        if args.show is not None:
            _show(journal, args.show, as_json=args.json)
        elif args.rejections:
            _list_rejections(journal.rejections(args.limit), as_json=args.json)
        else:
            _list_deliveries(journal, args)
    return EXIT_OK


def record_json(record: DeliveryRecord, *, history: bool = False) -> dict[str, Any]:
    """A delivery record as plain JSON data: every field, times in ISO 8601.

    The body is ``body`` as text when it is UTF-8 (it always is from Census),
    else ``body_base64``; the other of the two is ``None``.

    Args:
        record: the record.
        history: include its attempts (only ``journal.get`` reads them).

    Returns:
        A dict ready for ``json.dumps``.
    """
    data: dict[str, Any] = json_data(record)
    if not history:
        del data["history"]
    try:
        data["body"], data["body_base64"] = record.body.decode("utf-8"), None
    except UnicodeDecodeError:
        data["body"], data["body_base64"] = None, base64.b64encode(record.body).decode("ascii")
    return data


def _list_deliveries(journal: Journal, args: argparse.Namespace) -> None:
    records = journal.deliveries(
        status=args.status,
        event=args.event,
        sync_id=args.sync,
        sync_run_id=args.sync_run,
        before=args.before,
        limit=args.limit,
    )
    if args.json:
        for record in records:
            print(json.dumps(record_json(record)))
        return
    filtered = any(v is not None for v in (args.status, args.event, args.sync, args.sync_run))
    if not records:
        print("no deliveries recorded" + (" that match" if filtered else "") + ".")
    else:
        header = (
            "ID", "RECEIVED (UTC)", "EVENT", "WORKSPACE", "SYNC", "RUN",
            "STATUS", "ATTEMPTS", "TRIES", "LAST ERROR",
        )  # fmt: skip
        rows = [
            (
                str(r.id),
                time_cell(r.received_at),
                cell(r.event),
                cell(r.workspace_id),
                cell(r.sync_id),
                cell(r.sync_run_id),
                r.status,
                str(r.attempts),
                str(r.tries),
                cell(r.error.type if r.error is not None else None, 60),
            )
            for r in records
        ]
        print_table(header, rows)
        if len(records) == args.limit:
            print(
                f"(the newest {args.limit}: --before {records[-1].id} shows the next page, "
                "--limit N more at once)"
            )
    counts = journal.counts()
    total = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts.get(s))
    print(f"in the journal: {total or 'nothing yet'}")


def _show(journal: Journal, delivery_id: int, *, as_json: bool) -> None:
    record = journal.get(delivery_id)
    if record is None:
        raise CommandFailed(
            EXIT_INPUT, f"no delivery #{delivery_id} in the journal (pruned, or never recorded)"
        )
    if as_json:
        print(json.dumps(record_json(record, history=True)))
        return
    print(f"delivery #{record.id}: {cell(record.event, 64)}, {record.status}")
    facts = [
        ("workspace", cell(record.workspace_id)),
        ("sync", cell(record.sync_id)),
        ("sync run", cell(record.sync_run_id)),
        ("alert instance", cell(record.alert_instance_id)),
        ("key", cell(record.key, 200)),
        ("received (UTC)", time_cell(record.received_at)),
        ("updated (UTC)", time_cell(record.updated_at)),
        ("sent by Census", f"{record.attempts} time(s)"),
        ("handlers started", f"{record.tries} time(s)"),
        (
            "last answer",
            f"{record.answer_status} {record.answer_reason}"
            if record.answer_status is not None
            else "-",
        ),
    ]
    if record.next_attempt_at is not None and record.status == "pending":
        facts.append(("next try (UTC)", time_cell(record.next_attempt_at)))
    print_facts(facts)
    print("payload:")
    payload = record.payload()
    if payload is not None:
        text = json.dumps(payload, indent=2, ensure_ascii=False)
    else:
        text = record.body.decode("utf-8", "replace")
    _print_block(text)
    print("history:")
    for attempt in record.history:
        print(f"  {time_cell(attempt.at)}  {attempt.kind:<7} {attempt.status} {attempt.reason}")
    if not record.history:
        print("  -")
    if record.error is not None:
        print(f"last handler error: {cell(record.error.type, 200)}: {record.error.message}")
        _print_block(record.error.traceback.rstrip("\n"))


def _print_block(text: str) -> None:
    # Payload text is verified, but shown on a terminal: no control characters through.
    for line in text.splitlines():
        print("  " + printable(line, limit=10_000))


def _list_rejections(rejections: list[Rejection], *, as_json: bool) -> None:
    if as_json:
        for r in rejections:
            print(json.dumps(json_data(r)))
        return
    if not rejections:
        print("no rejections recorded.")
        return
    rows = [
        (time_cell(r.at), str(r.status), r.reason, cell(r.remote), str(r.size)) for r in rejections
    ]
    print_table(("AT (UTC)", "STATUS", "REASON", "REMOTE", "SIZE"), rows)


# -- replay -----------------------------------------------------------------------------


def run_replay(args: argparse.Namespace, prog: str) -> int:
    """Replay recorded deliveries, one line each.

    Args:
        args: the parsed ``replay`` arguments.
        prog: how the command was invoked, for the commands it suggests.

    Returns:
        ``EXIT_OK`` if every replay was answered 2xx (a delivery handled before
        included), else ``EXIT_REFUSED``.

    Raises:
        CommandFailed: neither ids nor ``--failed``, or both (EXIT_USAGE); the
            app cannot be loaded or an id is unknown (EXIT_INPUT); the journal's
            database fails (EXIT_UNREACHABLE).
    """
    if bool(args.ids) == args.failed:
        raise CommandFailed(EXIT_USAGE, "give the ids of the deliveries to replay, or --failed")
    if args.limit is not None and not args.failed:
        raise CommandFailed(EXIT_USAGE, "--limit goes with --failed")
    receiver, journal = load_app_journal(args)
    try:
        with journal_errors():
            return _replay(receiver, journal, args, prog)
    finally:
        close_journal(receiver, journal)


def _failed_ids(journal: Journal, limit: int | None) -> list[int]:
    """The ids of every failed delivery, oldest first (the oldest ``limit`` of them)."""
    ids: list[int] = []
    before = None
    while True:
        page = journal.deliveries(status="failed", before=before, limit=_PAGE)
        ids.extend(r.id for r in page)
        if len(page) < _PAGE:
            break
        before = page[-1].id
    ids.sort()
    return ids[:limit] if limit is not None else ids


def _replay(
    receiver: WebhookReceiver, journal: Journal, args: argparse.Namespace, prog: str
) -> int:
    ids = _failed_ids(journal, args.limit) if args.failed else list(dict.fromkeys(args.ids))
    if not ids:
        print("no failed deliveries to replay.")
        return EXIT_OK
    records = {i: journal.get(i) for i in ids}
    unknown = [f"#{i}" for i, r in records.items() if r is None]
    if unknown:
        raise CommandFailed(
            EXIT_INPUT,
            f"no delivery {', '.join(unknown)} in the journal (pruned, or never recorded); "
            f"nothing was replayed. List them with: {prog} deliveries --app {args.app}",
        )
    succeeded = 0
    for delivery_id, record in records.items():
        assert record is not None
        what = (
            f"#{delivery_id} {cell(record.event, 64)} workspace={cell(record.workspace_id)} "
            f"sync={cell(record.sync_id)} run={cell(record.sync_run_id)}"
        )
        try:
            outcome = receiver.replay(delivery_id, force=args.force)
        except KeyError:
            print(f"{what}: pruned meanwhile, not replayed")
            continue
        note = ""
        if outcome.reason == "duplicate":
            note = f": already {record.status} before, not run again (--force runs it)"
        elif outcome.reason == "in_progress":
            note = ": being run elsewhere right now; try again later"
        elif not outcome.ok:
            after = journal.get(delivery_id)
            if after is not None and after.error is not None:
                note = f": {cell(after.error.type, 200)}: {printable(after.error.message, 200)}"
        print(f"{what}: {outcome.status} {outcome.reason}{note}")
        succeeded += outcome.ok
    if len(records) > 1:
        print(f"replayed {len(records)}: {succeeded} succeeded, {len(records) - succeeded} did not")
    return EXIT_OK if succeeded == len(records) else EXIT_REFUSED


# -- work -------------------------------------------------------------------------------


class _StopRequest:
    """Set by the first SIGINT or SIGTERM; a second one stops at once (KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        # Only a flag: the loop notices it between deliveries. Nothing is printed
        # here, where the main thread may be halfway through writing a line.
        self.requested = True

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less once a stop is requested."""
        deadline = time.monotonic() + seconds
        while not self.requested:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.1))


@contextmanager
def _signals(stop: _StopRequest) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only: nothing to install
        return
    saved = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


@contextmanager
def _delivery_logs() -> Iterator[None]:
    """The receiver's log line per delivery run, on stdout unless logging is configured.

    An app that configured logging (a handler on the root logger or on
    ``census_receiver``) keeps its configuration; the ``census_receiver`` logger
    is only set to INFO if it has no level of its own.
    """
    logger = logging.getLogger("census_receiver")
    saved_level = logger.level
    handler = None
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s  %(message)s", _STAMP))
        logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(saved_level)
        if handler is not None:
            logger.removeHandler(handler)


def _say(text: str) -> None:
    print(f"{time.strftime(_STAMP)}  {text}", flush=True)


def _seconds(value: float) -> str:
    for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if value >= size and value % size == 0:
            return f"{value / size:g} {unit}"
    return f"{value:g} s"


def _failures(before: dict[tuple[str, str], int], after: dict[tuple[str, str], int]) -> int:
    """How many of the runs counted between two stats snapshots were not answered 2xx."""
    return sum(
        n - before.get(key, 0)
        for key, n in after.items()
        if not 200 <= REASONS.get(key[1], 500) < 300
    )


def run_work(args: argparse.Namespace, prog: str) -> int:
    """Run due deliveries until stopped (or, with ``--once``, until none is due).

    Args:
        args: the parsed ``work`` arguments.
        prog: how the command was invoked.

    Returns:
        ``EXIT_OK`` once stopped (failed runs are in the journal, to be retried),
        ``EXIT_STOPPED_AT_ONCE`` after a second Ctrl-C or SIGTERM.

    Raises:
        CommandFailed: the app cannot be loaded (EXIT_INPUT); with ``--once``,
            the journal's database fails (EXIT_UNREACHABLE).
    """
    receiver, journal = load_app_journal(args)
    stop = _StopRequest()
    counted = {"ran": 0, "failed": 0}
    try:
        with _signals(stop), _delivery_logs():
            _announce_work(receiver, journal, args)
            try:
                _work(receiver, journal, args, stop, counted)
            except KeyboardInterrupt:
                # The run cut short settles as failed: retried later, as a failed one is
                # (and were that write lost too, its lease would expire).
                _say(
                    f"stopped at once: ran {counted['ran']}, failed {counted['failed']}; the "
                    "delivery cut short is tried again later, as a failed one is"
                )
                return EXIT_STOPPED_AT_ONCE
    finally:
        close_journal(receiver, journal)
    _say(f"stopped: ran {counted['ran']}, failed {counted['failed']}")
    return EXIT_OK


def _announce_work(receiver: WebhookReceiver, journal: Journal, args: argparse.Namespace) -> None:
    _say(f"census-receiver work: running the due deliveries of {args.app} from {journal!r}")
    retries = (
        f"up to {journal.max_tries} tries, {_seconds(journal.backoff)} apart at first, "
        "then doubling"
    )
    _say(
        f"lease {_seconds(journal.lease)}; {retries}; records kept "
        f"{_seconds(journal.retention)}; Ctrl-C or SIGTERM stops after the current delivery"
    )
    if receiver.acknowledge != "on_capture":
        _say(
            "note: this receiver runs its handlers when deliveries arrive, so only the runs "
            "of a process that died are due here; build it with acknowledge='on_capture' "
            "to have its deliveries run by workers"
        )


def _work(
    receiver: WebhookReceiver,
    journal: Journal,
    args: argparse.Namespace,
    stop: _StopRequest,
    counted: dict[str, int],
) -> None:
    next_prune = time.monotonic() if args.prune_every > 0 else float("inf")
    outage_wait = args.poll
    while not stop.requested:
        if time.monotonic() >= next_prune:
            next_prune = time.monotonic() + args.prune_every
            _prune(journal, once=args.once)
        before = receiver.stats.counts()
        try:
            ran = receiver.run_pending(1)
        except JournalUnavailable as exc:
            if args.once:
                raise CommandFailed(EXIT_UNREACHABLE, f"{exc}; nothing was run") from None
            _say(f"{exc}; trying again in {outage_wait:g} s")
            stop.sleep(outage_wait)
            outage_wait = min(outage_wait * 2, max(_MAX_OUTAGE_WAIT, args.poll))
            continue
        outage_wait = args.poll
        if ran:
            counted["ran"] += ran
            counted["failed"] += _failures(before, receiver.stats.counts())
        elif args.once:
            return
        else:
            stop.sleep(args.poll)


def _prune(journal: Journal, *, once: bool) -> None:
    try:
        removed = journal.prune()
    except JournalUnavailable as exc:
        if once:
            raise CommandFailed(EXIT_UNREACHABLE, f"{exc}; nothing was run") from None
        _say(f"{exc}; pruning again later")
        return
    if removed:
        _say(f"pruned {removed} deliveries older than {_seconds(journal.retention)}")
