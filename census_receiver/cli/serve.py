"""``census-receiver serve``: a local receiver that shows every delivery as it arrives.

::

    census-receiver serve [--host 127.0.0.1] [--port 8000] [--path /webhooks/census]
                          [--secret S]... [--forward URL]... [--exec CMD]... [--dedup]
                          [--journal FILE]

A plain ``WebhookReceiver`` answers the deliveries, through ``ServeApp``: a
small pure ASGI app that uses the receiver's public steps only (``check_request``,
``triage``, ``run_async``) and shows each answer on the console, refusals
included. The relays run as a handler for every event (see ``relay``); every
other path is the inspector page over the journal, behind a token printed at
start. ``serve`` runs the app under uvicorn (the ``serve`` extra), imported only when it starts,
on a socket bound here so that a port in use is reported before anything starts.

The receiver records every verified delivery in a SQLite journal: ``--journal
FILE``, or a file in a temporary folder removed at exit. A journal is a dedup
store too; so that ``serve`` still handles every delivery it is sent unless
``--dedup`` is given, each delivery is then recorded under a key of its own.
With ``--dedup`` the journal keys deliveries by their identity, and repeats are
answered ``duplicate``, as they were by the in-memory store it replaces.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import shlex
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from .. import __version__
from ..answers import Answer, Outcome, answer
from ..bodies import read_asgi_body
from ..dedup import default_key
from ..errors import ConfigurationError
from ..inspector import Inspector
from ..journal import SQLiteJournal
from ..receiver import (
    DEFAULT_DEADLINE,
    DEFAULT_PATH,
    SECRET_ENV_VAR,
    WebhookReceiver,
    check_path,
    check_receiver,
)
from ..starlette import client_address
from .common import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    EXIT_INPUT,
    EXIT_LISTEN,
    EXIT_OK,
    CommandFailed,
    add_secret_argument,
    port_number,
    secret_list,
)
from .console import Console, NoteHandler
from .relay import Relay, check_forward

if TYPE_CHECKING:
    from .._types import ASGIApp, Body, Receive, Scope, Send
    from ..events import Event
    from .common import Subcommands

__all__ = ["ServeApp", "add_parsers", "bind", "run"]

# Other paths are not ours to describe: the answer does not echo the webhook path,
# which may carry a token.
_NOT_FOUND = answer(404, "error", "not found: nothing is served at this path", "not_found")


def add_parsers(commands: Subcommands) -> None:
    """Register ``serve``.

    Args:
        commands: the sub-command set of the ``census-receiver`` parser.
    """
    serve = commands.add_parser(
        "serve",
        help="run a local receiver that shows every delivery as it arrives",
        description=(
            "Run a real receiver (under uvicorn) and show every delivery on the "
            "terminal: time, verdict, event, ids and payload. Without a secret, one is "
            "generated and printed with a ready-to-paste send command."
        ),
    )
    serve.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (%(default)s)")
    serve.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help="port (%(default)s; 0 picks a free one)",
    )
    serve.add_argument("--path", default=DEFAULT_PATH, help="webhook path (%(default)s)")
    add_secret_argument(serve, "a webhook secret", repeatable=True)
    serve.add_argument(
        "--forward",
        action="append",
        default=[],
        metavar="URL",
        help="relay each verified delivery (same body and X-Signature) to URL; repeatable",
    )
    serve.add_argument(
        "--exec",
        action="append",
        default=[],
        dest="exec_",
        metavar="CMD",
        help="run CMD through the shell for each verified delivery, its JSON on stdin; repeatable",
    )
    serve.add_argument(
        "--dedup",
        action="store_true",
        help="answer a repeat of a delivery handled before as a duplicate, without handling it",
    )
    serve.add_argument(
        "--journal",
        metavar="FILE",
        help=(
            "record deliveries in this SQLite file, kept after exit "
            "(default: a temporary one, removed at exit)"
        ),
    )
    serve.set_defaults(run=run)


class ServeApp:
    """The ASGI app of ``serve``: answers deliveries at ``path`` and shows each one.

    Every request to ``path`` is answered by ``receiver`` and shown on
    ``console``, refusals included; each verified delivery is relayed by
    ``relay`` as part of handling it. Other requests go to ``fallback`` (say, a
    page of its own at ``/``), or are answered 404 without one.

    Args:
        receiver: the receiver that verifies the deliveries.
        console: where each delivery is shown.
        path: the webhook path.
        relay: the ``--forward`` and ``--exec`` relays (none by default).
        fallback: the ASGI app for every other scope.

    Raises:
        ConfigurationError: if ``receiver`` is not a ``WebhookReceiver`` or
            ``path`` does not start with ``/``.
    """

    def __init__(
        self,
        receiver: WebhookReceiver,
        console: Console,
        *,
        path: str = DEFAULT_PATH,
        relay: Relay | None = None,
        fallback: ASGIApp | None = None,
    ) -> None:
        self.receiver = check_receiver(receiver)
        self.console = console
        self.path = check_path(path)
        self.relay = relay if relay is not None else Relay()
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            if self.fallback is not None:
                await self.fallback(scope, receive, send)
            elif scope["type"] == "http":
                await _send_outcome(send, _NOT_FOUND)
            elif scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1000})
            return
        receiver = self.receiver
        headers = scope["headers"]
        length = next((value for name, value in headers if name == b"content-length"), None)
        # The client's address, for the journal's log of refused requests.
        remote = client_address(scope) if receiver.journal is not None else None
        outcome = receiver.check_request(scope["method"], length, remote=remote)
        if outcome is not None:
            self.console.delivery(outcome, None)
        else:
            body = await read_asgi_body(receive, receiver.max_body_size, await receive())
            if body is None:  # the client left: nobody to answer, nothing to handle
                return
            notes: list[str] = []
            with self.relay.handling(body, headers, notes):
                triaged = receiver.triage(body, headers, remote=remote)
                outcome = triaged if isinstance(triaged, Outcome) else await triaged.run_async()
            self.console.delivery(outcome, body, notes)
        await _send_outcome(send, outcome)


async def _send_outcome(send: Send, outcome: Outcome | Answer) -> None:
    answer = outcome.answer if isinstance(outcome, Outcome) else outcome
    await send(
        {
            "type": "http.response.start",
            "status": answer.status,
            "headers": list(answer.raw_headers),
        }
    )
    await send({"type": "http.response.body", "body": answer.body})


def bind(host: str, port: int) -> socket.socket:
    """Open a listening TCP socket on ``host:port``.

    Args:
        host: the address (or name) to listen on.
        port: the port; 0 picks a free one.

    Returns:
        The listening socket.

    Raises:
        CommandFailed: the address cannot be listened on (EXIT_LISTEN).
    """
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        # IPPROTO_TCP, not create_server's 0: asyncio turns on TCP_NODELAY only for
        # such sockets, and without it every answer waits ~40 ms on a delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(socket.SOMAXCONN)
        except OSError:
            sock.close()
            raise
        return sock
    except OSError as exc:
        raise CommandFailed(
            EXIT_LISTEN,
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
            "pick another --port (0 picks a free one) or --host",
        ) from None


class _Stopped(Exception):
    """SIGTERM, turned into a clean stop like Ctrl-C."""


def _raise_stopped(signum: int, frame: object) -> NoReturn:
    raise _Stopped


def run(args: argparse.Namespace, prog: str) -> int:
    """Serve until Ctrl-C or SIGTERM, showing every delivery.

    Args:
        args: the parsed ``serve`` arguments.
        prog: how the command was invoked, for the ``send`` command it prints.

    Returns:
        ``EXIT_OK`` once stopped.

    Raises:
        CommandFailed: uvicorn is missing, the path or a ``--forward`` URL is
            unusable (EXIT_INPUT), or the address is taken (EXIT_LISTEN).
    """
    try:
        import uvicorn
    except ImportError as exc:
        raise CommandFailed(
            EXIT_INPUT,
            f"serve needs {exc.name or 'the serve extra'}: "
            "python3 -m pip install 'census-receiver[serve]'",
        ) from None
    if not args.path.startswith("/"):
        raise CommandFailed(EXIT_INPUT, f"--path must start with '/', not {args.path!r}")
    for target in args.forward:
        check_forward(target, host=args.host, port=args.port, path=args.path)
    console = Console(sys.stdout)
    found = secret_list(args.secret)
    generated = not found
    if generated:
        found = [secrets.token_hex(20)]
    sock = bind(args.host, args.port)
    folder = None
    try:
        if args.journal is None:
            folder = tempfile.TemporaryDirectory(prefix="census-receiver-serve-")
            journal = _open_journal(Path(folder.name, "journal.db"))
        else:
            journal = _open_journal(args.journal)
    except BaseException:
        sock.close()
        if folder is not None:
            folder.cleanup()
        raise
    receiver = WebhookReceiver(
        found,
        journal=journal,
        dedup_key=None if args.dedup else _every_request_anew,
        # As before the journal: a deadline (503 at 8 s) only with --dedup.
        deadline=DEFAULT_DEADLINE if args.dedup else None,
    )
    relay = Relay(args.forward, args.exec_)
    # For every event, even with no relay: a verified delivery is then "handled"
    # ({"status": "ok"}), not "ignored" for want of a handler.
    receiver.on("*")(relay.handler(found[0]))
    token = secrets.token_urlsafe(24)
    try:
        inspector = Inspector(journal, receiver=receiver, token=token)
    except ImportError as exc:  # Jinja2 (the serve extra has it)
        sock.close()
        journal.close()
        if folder is not None:
            folder.cleanup()
        raise CommandFailed(
            EXIT_INPUT,
            f"serve needs {exc.name or 'jinja2'}: python3 -m pip install 'census-receiver[serve]'",
        ) from None
    app = ServeApp(receiver, console, path=args.path, relay=relay, fallback=inspector)
    page = _shown_url(args.host, sock.getsockname()[1], "/") + f"?token={token}"
    url = _shown_url(args.host, sock.getsockname()[1], args.path)
    config = uvicorn.Config(
        app, log_config=None, log_level="warning", access_log=False, lifespan="off"
    )

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                _announce(console, prog, url, found[0] if generated else None, len(found))
                _announce_journal(console, prog, journal, kept=folder is None)
                console.line(f"Inspector: {page}")
                console.line("")

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            inspector.close()  # end the open live lists, or a stop waits for every browser tab
            await super().shutdown(sockets)

    logger = logging.getLogger("census_receiver")
    notes = NoteHandler(console)
    saved = logger.propagate
    logger.addHandler(notes)
    logger.propagate = False
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_stopped) if in_main else None
    try:
        asyncio.run(Server(config).serve(sockets=[sock]))
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        logger.removeHandler(notes)
        logger.propagate = saved
        sock.close()
        receiver.close()
        journal.close()
        if folder is not None:
            folder.cleanup()
    console.line("stopped")
    return EXIT_OK


def _open_journal(path: str | Path) -> SQLiteJournal:
    try:
        return SQLiteJournal(path)
    except ConfigurationError as exc:
        raise CommandFailed(EXIT_INPUT, f"--journal: {exc}") from None


def _every_request_anew(event: Event, body: Body) -> str:
    """A journal key of its own for each request: without --dedup, no repeat is a duplicate."""
    return f"{default_key(event, body)}:{secrets.token_hex(8)}"


def _announce_journal(console: Console, prog: str, journal: SQLiteJournal, *, kept: bool) -> None:
    path = journal.path.resolve()
    where = f"Recording deliveries in {path}"
    console.line(where if kept else f"{where} (removed at exit; --journal FILE keeps them)")
    console.line(f"    {prog} deliveries --journal {shlex.quote(str(path))}")
    console.line("")


def _shown_url(host: str, port: int, path: str) -> str:
    """The webhook URL to print: a wildcard address is shown as 127.0.0.1."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - naming it, not binding it
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


def _announce(console: Console, prog: str, url: str, generated: str | None, count: int) -> None:
    console.line(f"census-receiver {__version__}: receiving Census webhooks")
    if generated is not None:
        console.line(f"No secret given (--secret or {SECRET_ENV_VAR}); generated one:")
        console.line(f"    {generated}")
    else:
        console.line(f"Verifying with {count} secret(s).")
    console.line(f"Listening on {url}  (Ctrl-C to stop)")
    console.line("Send a signed test event from another terminal:")
    command = f"{prog} send sync.completed --url {url}"
    if generated is not None:
        command += f" --secret {generated}"
    elif not os.environ.get(SECRET_ENV_VAR):
        command += " --secret S"
    console.line(f"    {command}")
    if generated is None and not os.environ.get(SECRET_ENV_VAR):
        console.line("(S: one of the secrets given to serve)")
    console.line("")
