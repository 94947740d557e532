"""Finding the user's receiver from ``--app MODULE:ATTR``, the way uvicorn finds an app.

::

    census-receiver deliveries --app myapp.webhooks:receiver [--app-dir DIR]
    census-receiver deliveries --journal census.db

``MODULE`` is imported with ``importlib.import_module``, with ``--app-dir``
(default: the current directory) first on ``sys.path``, so a module next to
where the command runs is found as ``python3 -m`` would find it. ``ATTR`` may be
dotted (``hooks.receiver``). It names a ``WebhookReceiver``, or a function of no
arguments that returns one (uvicorn's ``--factory`` idea; the function is called
when it is one). The commands that need the journal (``deliveries``, ``replay``,
``work``, ``runs``) then check that the receiver has one; the ones that only
read (``deliveries``, ``runs``) take a SQLite journal file instead with
``--journal FILE`` and run within ``reading_journal``. A database that cannot
be reached ends a command with ``EXIT_UNREACHABLE`` (``journal_errors``).

Every other failure is a ``CommandFailed`` with ``EXIT_INPUT`` whose message names the
fix. An exception raised while importing the module or calling the factory is
shown with its traceback, except the package's own errors (a missing secret,
say), whose messages already say what to do.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from ..errors import CensusReceiverError, ConfigurationError
from ..journal.base import JournalUnavailable
from ..receiver import WebhookReceiver
from .common import EXIT_INPUT, EXIT_UNREACHABLE, CommandFailed
from .tables import piped_output

if TYPE_CHECKING:
    from ..journal.base import Journal

__all__ = [
    "add_app_arguments",
    "add_source_arguments",
    "app_spec",
    "close_journal",
    "journal_errors",
    "load_app_journal",
    "load_receiver",
    "reading_journal",
    "require_journal",
]


def app_spec(value: str) -> str:
    """Check the form of an ``--app`` value, ``MODULE:ATTR`` (an argparse ``type``).

    Args:
        value: the argument as given.

    Returns:
        ``value`` unchanged.

    Raises:
        argparse.ArgumentTypeError: if it is not two non-empty parts around a colon.
    """
    module, _, attr = value.partition(":")
    if not module or not attr or ":" in attr:
        raise argparse.ArgumentTypeError(
            f"must be MODULE:ATTR, the module and the name of its receiver "
            f"(e.g. myapp.webhooks:receiver), not {value!r}"
        )
    return value


def add_app_arguments(
    parser: argparse.ArgumentParser, *, group: argparse._MutuallyExclusiveGroup | None = None
) -> None:
    """Add ``--app MODULE:ATTR`` and ``--app-dir DIR`` to a sub-command's parser.

    Args:
        parser: the sub-command's parser.
        group: a required group of ``parser`` to put ``--app`` in, when another
            option may stand for it; without one, ``--app`` is required.
    """
    (group or parser).add_argument(
        "--app",
        type=app_spec,
        required=group is None,
        metavar="MODULE:ATTR",
        help=(
            "your receiver: a WebhookReceiver built with a journal, or a function of "
            "no arguments returning one (e.g. myapp.webhooks:receiver)"
        ),
    )
    parser.add_argument(
        "--app-dir",
        default=".",
        metavar="DIR",
        help="look for MODULE in DIR first (default: the current directory)",
    )


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the journal to read: ``--app MODULE:ATTR`` (with ``--app-dir``) or ``--journal FILE``.

    Args:
        parser: the sub-command's parser; one of the two options is required.
    """
    source = parser.add_mutually_exclusive_group(required=True)
    add_app_arguments(parser, group=source)
    source.add_argument(
        "--journal",
        metavar="FILE",
        help="read this SQLite journal file instead of an app's (serve --journal FILE)",
    )


def load_receiver(spec: str, *, app_dir: str = ".") -> WebhookReceiver:
    """Import the receiver that ``spec`` (``MODULE:ATTR``) names.

    Args:
        spec: ``MODULE:ATTR``; ``ATTR`` may be dotted.
        app_dir: the folder put first on ``sys.path`` for the import.

    Returns:
        The receiver: the attribute itself, or what the function it names returned.

    Raises:
        CommandFailed: the module cannot be imported, has no such attribute,
            or it is not a receiver nor a function returning one (EXIT_INPUT).
    """
    module_name, _, attr = app_spec(spec).partition(":")
    folder = str(Path(app_dir).resolve())
    if not Path(folder).is_dir():
        raise CommandFailed(EXIT_INPUT, f"--app-dir {app_dir}: no such folder")
    if sys.path[:1] != [folder]:
        sys.path.insert(0, folder)
    module = _import(module_name, folder)
    found: object = module
    for depth, name in enumerate(attr.split(".")):
        try:
            found = getattr(found, name)
        except AttributeError:
            where = ".".join([module_name, *attr.split(".")[:depth]])
            raise CommandFailed(
                EXIT_INPUT,
                f"{where} has no attribute {name!r}{_receivers_hint(module, module_name)}",
            ) from None
    return _as_receiver(found, spec, module, module_name)


def require_journal(receiver: WebhookReceiver, spec: str) -> Journal:
    """The journal of ``receiver``, which the journal commands read and run from.

    Args:
        receiver: the loaded receiver.
        spec: its ``--app`` value, for the message.

    Returns:
        ``receiver.journal``.

    Raises:
        CommandFailed: the receiver has no journal (EXIT_INPUT).
    """
    if receiver.journal is None:
        raise CommandFailed(
            EXIT_INPUT,
            f"the receiver {spec} has no journal to read: build it with "
            "journal=SQLiteJournal(path) (one host) or PostgresJournal(url) (several), "
            "from census_receiver.journal",
        )
    return receiver.journal


def load_app_journal(args: argparse.Namespace) -> tuple[WebhookReceiver, Journal]:
    """The receiver that ``--app`` (with ``--app-dir``) names, and its journal.

    Args:
        args: the parsed arguments, with ``app`` and ``app_dir``.

    Returns:
        The receiver and ``receiver.journal``.

    Raises:
        CommandFailed: the app cannot be loaded, or has no journal (EXIT_INPUT).
    """
    receiver = load_receiver(args.app, app_dir=args.app_dir)
    return receiver, require_journal(receiver, args.app)


@contextmanager
def reading_journal(args: argparse.Namespace) -> Iterator[Journal]:
    """The journal that ``add_source_arguments`` options name, for a command that lists it.

    Within the block, a database that fails ends the command (``journal_errors``)
    and output into a pipe that closes ends quietly (``piped_output``); the
    journal, and the ``--app`` receiver, are closed after it.

    Args:
        args: the parsed arguments, with ``app``, ``app_dir`` and ``journal``.

    Yields:
        The ``--app`` receiver's journal, or the ``--journal`` file's ``SQLiteJournal``.

    Raises:
        CommandFailed: the app cannot be loaded or has no journal, or the file
            does not exist or is not a journal (EXIT_INPUT); the database fails
            (EXIT_UNREACHABLE).
    """
    receiver, journal = _open_journal(args)
    try:
        with piped_output(), journal_errors():
            yield journal
    finally:
        close_journal(receiver, journal)


def _open_journal(args: argparse.Namespace) -> tuple[WebhookReceiver | None, Journal]:
    if args.journal is None:
        return load_app_journal(args)
    from ..journal.sqlite import SQLiteJournal

    # It must exist: no new empty journal for a typo.
    if not Path(args.journal).is_file():
        raise CommandFailed(
            EXIT_INPUT,
            f"no journal file at {args.journal}; give the path serve printed, or --app MODULE:ATTR",
        )
    try:
        return None, SQLiteJournal(args.journal)
    except ConfigurationError as exc:
        raise CommandFailed(EXIT_INPUT, str(exc)) from None


@contextmanager
def journal_errors() -> Iterator[None]:
    """Within the block, a journal whose database fails ends the command.

    Raises:
        CommandFailed: the journal raised ``JournalUnavailable`` (EXIT_UNREACHABLE).
    """
    try:
        yield
    except JournalUnavailable as exc:
        raise CommandFailed(
            EXIT_UNREACHABLE, f"{exc}; check that the database is up and reachable"
        ) from None


def close_journal(receiver: WebhookReceiver | None, journal: Journal) -> None:
    """Close the receiver, if any, and the journal, when the command is done.

    Args:
        receiver: the receiver ``load_app_journal`` gave, or ``None``.
        journal: its journal, or the ``--journal`` file's.
    """
    # The command owns the process: its threads and connections end with it.
    if receiver is not None:
        receiver.close()
    journal.close()


def _import(module_name: str, folder: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == module_name or module_name.startswith(missing + "."):
            raise CommandFailed(
                EXIT_INPUT,
                f"cannot import {module_name!r}: no module named {missing!r} in {folder} "
                "or on the Python path; run the command from the folder that holds it, "
                "or pass --app-dir DIR",
            ) from None
        raise _failed(f"importing {module_name}", exc) from None
    except Exception as exc:  # noqa: BLE001 - the user's module failed: show why
        raise _failed(f"importing {module_name}", exc) from None


def _failed(what: str, exc: Exception) -> CommandFailed:
    """The error for the user's code raising ``exc``, its traceback printed unless ours."""
    if isinstance(exc, CensusReceiverError):
        return CommandFailed(EXIT_INPUT, f"{what} failed: {exc}")
    traceback.print_exception(exc, file=sys.stderr)
    return CommandFailed(
        EXIT_INPUT, f"{what} failed: {type(exc).__name__}: {exc} (traceback above)"
    )


def _receivers_hint(module: ModuleType, module_name: str) -> str:
    """``; it has one: --app myapp:receiver``, from the module's receivers."""
    names = [name for name, value in vars(module).items() if isinstance(value, WebhookReceiver)]
    if not names:
        return f"; {module_name} defines no WebhookReceiver at its top level"
    shown = ", ".join(f"--app {module_name}:{name}" for name in names)
    return f"; did you mean {shown}?"


def _as_receiver(found: object, spec: str, module: ModuleType, module_name: str) -> WebhookReceiver:
    if isinstance(found, WebhookReceiver):
        return found
    kind = type(found).__name__
    if inspect.isclass(found) or not callable(found):
        what = f"the class {found.__name__}" if inspect.isclass(found) else f"a {kind}"
        raise CommandFailed(
            EXIT_INPUT,
            f"{spec} is {what}, not a WebhookReceiver nor a function returning one"
            + _receivers_hint(module, module_name),
        )
    if inspect.iscoroutinefunction(found):
        raise CommandFailed(
            EXIT_INPUT,
            f"{spec} is an async function: give a WebhookReceiver, or a plain function "
            "of no arguments that returns one",
        )
    try:
        takes_arguments = any(
            p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            for p in inspect.signature(found).parameters.values()
        )
    except (TypeError, ValueError):  # no signature to read: try calling it
        takes_arguments = False
    if takes_arguments:
        raise CommandFailed(
            EXIT_INPUT,
            f"{spec} is a {kind} that takes arguments (an ASGI or WSGI app?), not a "
            "WebhookReceiver nor a function of no arguments returning one"
            + _receivers_hint(module, module_name),
        )
    try:
        made = found()
    except Exception as exc:  # noqa: BLE001 - the user's factory failed: show why
        raise _failed(f"calling {spec}()", exc) from None
    if not isinstance(made, WebhookReceiver):
        raise CommandFailed(
            EXIT_INPUT,
            f"{spec}() returned a {type(made).__name__}, not a WebhookReceiver",
        )
    return made
