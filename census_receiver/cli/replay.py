"""``census-receiver replay``: run recorded deliveries through your handlers again.

::

    census-receiver replay --app MODULE:ATTR (ID... | --failed [--limit N]) [--force]

The receiver is imported as uvicorn imports an app (``census_receiver.cli.app``)
and must have a journal; each delivery is run again with ``receiver.replay``,
one line per delivery, and the journal's own settings are the ones used.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..answers import printable
from .app import add_app_arguments, close_journal, journal_errors, load_app_journal
from .common import EXIT_INPUT, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, CommandFailed, add_limit_argument
from .tables import cell

if TYPE_CHECKING:
    from ..journal.base import Journal
    from ..receiver import WebhookReceiver
    from .common import Subcommands

__all__ = [
    "add_parsers",
    "run_replay",
]

#: How many failed deliveries ``replay --failed`` reads from the journal at a time.
_PAGE = 500


def add_parsers(commands: Subcommands) -> None:
    """Register ``replay``.

    Args:
        commands: the sub-command set of the ``census-receiver`` parser.
    """
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
    add_limit_argument(replay, help="with --failed: at most N (the oldest)")
    replay.add_argument(
        "--force",
        action="store_true",
        help="run deliveries already handled (or ignored, or dropped) again too",
    )
    replay.set_defaults(run=run_replay)


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
