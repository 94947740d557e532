"""The ``census-receiver`` command: serve, send, sign, verify, and your receiver's journal.

::

    census-receiver serve [--host 127.0.0.1] [--port 8000] [--path /webhooks/census]
                          [--secret S]... [--forward URL]... [--exec CMD]... [--dedup]
                          [--journal FILE]
    census-receiver send EVENT [--url URL] [--secret S] [--set KEY=VALUE]...
                          [--bad-signature] [--retry [--retry-scale F]]
    census-receiver sign [FILE] [--secret S]
    census-receiver verify [FILE] --signature SIG [--secret S]...
    census-receiver deliveries (--app MODULE:ATTR | --journal FILE) [--status S] [--event E]
                          [--sync ID] [--run ID] [--before ID] [--limit N] [--json]
                          [--show ID | --rejections]
    census-receiver replay --app MODULE:ATTR (ID... | --failed [--limit N]) [--force]
    census-receiver work --app MODULE:ATTR [--poll SECONDS] [--prune-every SECONDS] [--once]
    census-receiver runs (--app MODULE:ATTR | --journal FILE) [--sync ID] [--status S]
                          [--overdue DURATION | --health | --show ID] [--limit N] [--json]

``--secret`` defaults to ``CENSUS_WEBHOOK_SECRET``. ``send``, ``sign`` and
``verify`` need only the standard library; ``serve`` runs under uvicorn (the
``serve`` extra), imported only when it starts. ``--app MODULE:ATTR`` imports
your receiver as uvicorn imports an app (``--app-dir DIR``, default the current
directory, first on the path); it names a ``WebhookReceiver`` built with a
journal, or a function of no arguments returning one.

Exit status: 0 on success; 1 when a delivery is answered non-2xx (``send``, a
``replay``) or a signature does not verify; 2 for bad arguments; 3 for bad input
(a malformed ``--set``, an unreadable file, no secret, a missing extra, an app
that cannot be imported or has no journal, no journal file, an unknown delivery
or run id); 4 when the URL or the journal's database cannot be reached; 5 when
``serve`` cannot listen on its address; 130 when a second Ctrl-C or SIGTERM
stops ``work`` in the middle of a delivery.

Each command lives in a module of this package (``send``, ``signing``,
``serve``, ``deliveries``, ``replay``, ``work``, ``runs``) with
``add_parsers(commands)``, which registers its sub-commands and gives each its
``run(args, prog) -> int`` with ``set_defaults(run=...)``. A new module joins by being listed in
``COMMAND_MODULES``; shared helpers are the public names of ``common``,
``app`` finds the receiver that ``--app`` names (or the journal ``--journal``
names), and ``tables`` shows the journal's records.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .. import __version__
from . import deliveries, replay, runs, send, serve, signing, work
from .common import (
    EXIT_INPUT,
    EXIT_LISTEN,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CommandFailed,
)

if TYPE_CHECKING:
    from .common import Command, Subcommands

__all__ = [
    "COMMAND_MODULES",
    "EXIT_INPUT",
    "EXIT_LISTEN",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "CommandFailed",
    "CommandModule",
    "build_parser",
    "main",
]


class CommandModule(Protocol):
    """What a command module provides: ``add_parsers``, registering its sub-commands."""

    def add_parsers(self, commands: Subcommands, /) -> None:
        """Add its sub-commands to ``commands``, each with ``set_defaults(run=...)``."""
        ...


#: The command modules, in the order their sub-commands are listed in the help.
COMMAND_MODULES: tuple[CommandModule, ...] = (serve, send, signing, deliveries, replay, work, runs)


def _invocation() -> str:
    """How the user ran us, to print commands they can paste back."""
    if Path(sys.argv[0]).name != "__main__.py":
        return "census-receiver"
    name = Path(sys.executable).name
    found = shutil.which(name)
    python = name if found and Path(found).resolve() == Path(sys.executable).resolve() else None
    return f"{python or shlex.quote(sys.executable)} -m census_receiver"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of the ``census-receiver`` command.

    Args:
        prog: the program name shown in help and errors.

    Returns:
        The parser, with one sub-command per action; the parsed arguments of
        each carry ``run``, the function that carries it out.
    """
    parser = argparse.ArgumentParser(
        prog=prog or "census-receiver",
        description=(
            "Receive, send, sign and verify Census sync-lifecycle webhooks; list, replay "
            "and run the deliveries and sync runs your receiver's journal recorded."
        ),
        epilog=(
            "exit status: 0 ok; 1 answered non-2xx, not verified, or a replay failed; "
            "2 bad arguments; 3 bad input (an app that cannot be imported or has no journal, "
            "an unknown id); 4 URL or journal database unreachable; 5 cannot listen; "
            "130 work stopped at once by a second Ctrl-C or SIGTERM"
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``census-receiver`` command.

    Args:
        argv: the arguments, without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status (see the module docstring).
    """
    prog = _invocation()
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    run: Command = args.run
    try:
        return run(args, prog)
    except CommandFailed as exc:
        print(f"{prog} {args.command}: error: {exc}", file=sys.stderr)
        return exc.code
