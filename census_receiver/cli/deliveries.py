"""``census-receiver deliveries``: the deliveries your receiver's journal recorded.

::

    census-receiver deliveries (--app MODULE:ATTR | --journal FILE) [--status S] [--event E]
                               [--sync ID] [--run ID] [--before ID] [--limit N] [--json]
    census-receiver deliveries (--app MODULE:ATTR | --journal FILE) --show ID [--json]
    census-receiver deliveries (--app MODULE:ATTR | --journal FILE) --rejections [--json]

Only reads: the journal's ``deliveries``, ``counts``, ``get`` and
``rejections``. The receiver is imported as uvicorn imports an app
(``census_receiver.cli.app``) and must have a journal; ``--journal FILE`` reads
a SQLite journal without any app (the one ``serve --journal FILE`` keeps, say).
"""

from __future__ import annotations

import argparse
import base64
import json
from typing import TYPE_CHECKING, Any

from ..answers import printable
from ..journal.records import STATUSES, DeliveryRecord, Rejection
from .app import add_source_arguments, reading_journal
from .common import EXIT_INPUT, EXIT_OK, CommandFailed, add_limit_argument
from .tables import add_json_argument, cell, json_data, print_facts, print_table, time_cell

if TYPE_CHECKING:
    from ..journal.base import Journal
    from .common import Subcommands

__all__ = [
    "DEFAULT_LIST_LIMIT",
    "add_parsers",
    "record_json",
    "run_deliveries",
]

#: Deliveries listed by ``deliveries`` unless ``--limit`` says otherwise.
DEFAULT_LIST_LIMIT = 50


def add_parsers(commands: Subcommands) -> None:
    """Register ``deliveries``.

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
    add_limit_argument(deliveries, default=DEFAULT_LIST_LIMIT, help="list at most N (%(default)s)")
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
