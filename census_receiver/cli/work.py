"""``census-receiver work``: run the due deliveries of your receiver's journal.

::

    census-receiver work --app MODULE:ATTR [--poll SECONDS] [--prune-every SECONDS] [--once]

The receiver is imported as uvicorn imports an app (``census_receiver.cli.app``)
and must have a journal; the journal's own settings (lease, tries, backoff,
retention) are the ones used, so that every process agrees on them.

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
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

from ..answers import REASONS
from ..journal.base import JournalUnavailable
from .app import add_app_arguments, close_journal, load_app_journal
from .common import EXIT_OK, EXIT_UNREACHABLE, CommandFailed, non_negative, positive_seconds

if TYPE_CHECKING:
    from ..journal.base import Journal
    from ..receiver import WebhookReceiver
    from .common import Subcommands

__all__ = [
    "DEFAULT_POLL",
    "DEFAULT_PRUNE_EVERY",
    "EXIT_STOPPED_AT_ONCE",
    "add_parsers",
    "run_work",
]

#: Seconds ``work`` waits before looking again when nothing was due.
DEFAULT_POLL = 1.0
#: Seconds between two prunes of the journal by ``work``.
DEFAULT_PRUNE_EVERY = 3600.0
#: ``work`` stopped by a second Ctrl-C or SIGTERM, in the middle of a delivery (128 + SIGINT).
EXIT_STOPPED_AT_ONCE = 130
#: The longest ``work`` waits before trying an unavailable journal again.
_MAX_OUTAGE_WAIT = 30.0
#: Time stamps of ``work``'s lines, as its log lines show them (local time).
_STAMP = "%Y-%m-%d %H:%M:%S"


def add_parsers(commands: Subcommands) -> None:
    """Register ``work``.

    Args:
        commands: the sub-command set of the ``census-receiver`` parser.
    """
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
