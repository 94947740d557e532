"""The ``census-receiver`` command: a local receiver, a test-event sender, sign and verify.

::

    census-receiver serve [--host 127.0.0.1] [--port 8000] [--path /webhooks/census]
                          [--secret S]... [--forward URL]... [--exec CMD]... [--dedup]
    census-receiver send EVENT [--url URL] [--secret S] [--set KEY=VALUE]...
                          [--bad-signature] [--retry [--retry-scale F]]
    census-receiver sign [FILE] [--secret S]
    census-receiver verify [FILE] --signature SIG [--secret S]...

``--secret`` defaults to ``CENSUS_WEBHOOK_SECRET``. ``send``, ``sign`` and
``verify`` need only the standard library; ``serve`` runs the Starlette adapter
under uvicorn (the ``serve`` extra), imported only when it starts.

Exit status: 0 on success; 1 when a delivery is answered non-2xx or a signature
does not verify; 2 for bad arguments; 3 for bad input (a malformed ``--set``, an
unreadable file, no secret, a missing extra); 4 when the URL cannot be reached;
5 when ``serve`` cannot listen on its address.
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TextIO, overload

from .. import __version__
from ..errors import RequestRejected
from ..receiver import SECRET_ENV_VAR, Outcome, WebhookReceiver
from ..signature import SecretSet, compute_signature, decode_signature, signature_from_headers
from ..testing import DEFAULT_PATH, EVENT_NAMES, RETRY_DELAYS, make_delivery

if TYPE_CHECKING:
    from .._types import Body, Headers
    from ..events import Event

__all__ = [
    "EXIT_INPUT",
    "EXIT_LISTEN",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "build_parser",
    "main",
]

#: Success: answered 2xx, signature verified, server stopped cleanly.
EXIT_OK = 0
#: The receiver answered non-2xx, or the signature does not verify.
EXIT_REFUSED = 1
#: Bad arguments (argparse's own status).
EXIT_USAGE = 2
#: Bad input: a malformed ``--set``, an unreadable file, no secret, a missing extra.
EXIT_INPUT = 3
#: The URL could not be reached, or gave no answer in time.
EXIT_UNREACHABLE = 4
#: ``serve`` could not listen on the address it was given.
EXIT_LISTEN = 5

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}{DEFAULT_PATH}"
#: Census gives up on a delivery attempt after 10 s; so do ``send`` and the relays.
TIMEOUT = 10.0
#: How much of an unverified body or a command's output ``serve`` shows.
_SHOWN_CHARS = 2000


class _Failure(Exception):
    """Ends the command with ``code`` after printing ``message`` on stderr."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Stopped(Exception):
    """SIGTERM, turned into a clean stop like Ctrl-C."""


# -- arguments ------------------------------------------------------------------------


def _invocation() -> str:
    """How the user ran us, to print commands they can paste back."""
    if Path(sys.argv[0]).name != "__main__.py":
        return "census-receiver"
    name = Path(sys.executable).name
    found = shutil.which(name)
    python = name if found and Path(found).resolve() == Path(sys.executable).resolve() else None
    return f"{python or shlex.quote(sys.executable)} -m census_receiver"


def _scale(value: str) -> float:
    try:
        scale = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not scale >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value!r}")
    return scale


def _seconds(value: str) -> float:
    seconds = _scale(value)
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {value!r}")
    return seconds


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, not {port}")
    return port


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of the ``census-receiver`` command.

    Args:
        prog: the program name shown in help and errors.

    Returns:
        The parser, with one sub-command per action.
    """
    env_note = f"(default: ${SECRET_ENV_VAR})"
    parser = argparse.ArgumentParser(
        prog=prog or "census-receiver",
        description="Receive, send, sign and verify Census sync-lifecycle webhooks.",
        epilog=(
            "exit status: 0 ok; 1 answered non-2xx or not verified; 2 bad arguments; "
            "3 bad input; 4 URL unreachable; 5 cannot listen"
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run a local receiver that shows every delivery as it arrives",
        description=(
            "Run a real receiver (Starlette + uvicorn) and show every delivery on the "
            "terminal: time, verdict, event, ids and payload. Without a secret, one is "
            "generated and printed with a ready-to-paste send command."
        ),
    )
    serve.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (%(default)s)")
    serve.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help="port (%(default)s; 0 picks a free one)"
    )
    serve.add_argument("--path", default=DEFAULT_PATH, help="webhook path (%(default)s)")
    serve.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="S",
        help=f"a webhook secret; repeat for several {env_note}",
    )
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
        help="remember deliveries (in memory) and answer duplicates without handling them",
    )

    send = commands.add_parser(
        "send",
        help="sign a realistic event and POST it to a receiver",
        description=(
            "Build a realistic payload for EVENT, sign it as Census does and POST it. "
            "Exits 0 only when answered 2xx."
        ),
        epilog=f"documented events: {', '.join(EVENT_NAMES)}",
    )
    send.add_argument("event", metavar="EVENT", help="the event name, e.g. sync.failed")
    send.add_argument("--url", default=DEFAULT_URL, help="where to POST (%(default)s)")
    send.add_argument("--secret", metavar="S", help=f"the secret to sign with {env_note}")
    send.add_argument(
        "--set",
        action="append",
        default=[],
        dest="fields",
        metavar="KEY=VALUE",
        help="set a payload field; VALUE is JSON when it parses (42, null, true), "
        "else a string; null removes the field",
    )
    send.add_argument(
        "--bad-signature", action="store_true", help="sign with a wrong secret, to see a 401"
    )
    send.add_argument(
        "--retry",
        action="store_true",
        help="until answered 2xx, retry on Census's schedule (4, 8, 16, 32, 64 s)",
    )
    send.add_argument(
        "--retry-scale",
        type=_scale,
        default=1.0,
        metavar="F",
        help="multiply the retry delays by F (%(default)s)",
    )
    send.add_argument(
        "--timeout",
        type=_seconds,
        default=TIMEOUT,
        help="seconds to wait for an answer (%(default)s)",
    )

    sign = commands.add_parser(
        "sign",
        help="print the X-Signature of a body",
        description="Print the X-Signature Census would send for the body in FILE or on stdin.",
    )
    sign.add_argument("file", nargs="?", metavar="FILE", help="the body (default: stdin)")
    sign.add_argument("--secret", metavar="S", help=f"the secret {env_note}")

    verify = commands.add_parser(
        "verify",
        help="check an X-Signature against a body",
        description="Check that SIG is the X-Signature of the body under one of the secrets.",
    )
    verify.add_argument("file", nargs="?", metavar="FILE", help="the body (default: stdin)")
    verify.add_argument("--signature", required=True, metavar="SIG", help="the X-Signature value")
    verify.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="S",
        help=f"a secret to try; repeat for several {env_note}",
    )
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
    command: Callable[[argparse.Namespace, str], int] = _COMMANDS[args.command]
    try:
        return command(args, prog)
    except _Failure as exc:
        print(f"{prog} {args.command}: error: {exc}", file=sys.stderr)
        return exc.code


# -- secrets and input ----------------------------------------------------------------


def _secret_list(given: Sequence[str]) -> list[str]:
    if any(not s for s in given):
        raise _Failure(EXIT_INPUT, "--secret must not be empty")
    if given:
        return list(given)
    from_env = os.environ.get(SECRET_ENV_VAR, "")
    return [from_env] if from_env else []


def _one_secret(given: str | None, what: str) -> str:
    found = _secret_list([] if given is None else [given])
    if not found:
        raise _Failure(
            EXIT_INPUT,
            f"no secret to {what} with: pass --secret S or set {SECRET_ENV_VAR} "
            "(census-receiver serve prints one when it generates it)",
        )
    return found[0]


def _read_body(file: str | None) -> bytes:
    if file is None or file == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(file).read_bytes()
    except OSError as exc:
        raise _Failure(
            EXIT_INPUT, f"cannot read {file}: {exc.strerror or exc}; give a readable file or '-'"
        ) from None


def _parse_fields(items: Sequence[str]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise _Failure(
                EXIT_INPUT,
                f"--set {item!r} is not KEY=VALUE; write e.g. --set sync_id=42 "
                "or --set status=emergency",
            )
        if key == "event":
            raise _Failure(EXIT_INPUT, "--set event=...: give the event name as EVENT instead")
        try:
            fields[key] = json.loads(raw)
        except ValueError:
            fields[key] = raw
    return fields


# -- HTTP -----------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect would turn the POST into a GET without the body; show it instead.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _relays_to_itself(url: str, host: str, port: int, path: str) -> bool:
    """Whether a ``--forward`` URL is the webhook URL of the server being started."""
    parts = urllib.parse.urlsplit(url)
    try:
        forward_port = parts.port or 80
    except ValueError:
        return False  # not a port at all: the relay says so when it runs
    forward_host = parts.hostname or ""
    listens_locally = host in ("0.0.0.0", "::", "") or _is_loopback(host)  # noqa: S104
    same_host = forward_host == host or (_is_loopback(forward_host) and listens_locally)
    return parts.scheme == "http" and same_host and forward_port == port and parts.path == path


def _opener(url: str) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
    if _is_loopback(urllib.parse.urlsplit(url).hostname or ""):
        # A local receiver is never behind the proxy that http_proxy names.
        handlers.append(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener(*handlers)


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, str, bytes]:
    """POST ``body``; return status, reason and answer body, whatever the status.

    Raises:
        _Failure: the URL is invalid (EXIT_INPUT) or unreachable (EXIT_UNREACHABLE).
    """
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise _Failure(EXIT_INPUT, f"{url!r} is not an http:// or https:// URL")
    # The scheme is checked above: no file:// or custom-scheme opening here.
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with _opener(url).open(request, timeout=timeout) as response:
            return response.status, response.reason, response.read(_SHOWN_CHARS)
    except urllib.error.HTTPError as exc:
        with exc:
            answer = exc.read(_SHOWN_CHARS)
            location = exc.headers.get("location")
        reason = f"{exc.reason} (to {location})" if location else str(exc.reason)
        return exc.code, reason, answer
    except urllib.error.URLError as exc:
        why = exc.reason.strerror if isinstance(exc.reason, OSError) else exc.reason
        raise _Failure(
            EXIT_UNREACHABLE,
            f"cannot reach {url}: {why or exc.reason}; is the receiver running there?",
        ) from None
    except TimeoutError:
        raise _Failure(EXIT_UNREACHABLE, f"no answer from {url} within {timeout:g} s") from None
    except (OSError, ValueError) as exc:
        raise _Failure(EXIT_UNREACHABLE, f"cannot reach {url}: {exc}") from None


# -- send -----------------------------------------------------------------------------


def _send(args: argparse.Namespace, prog: str) -> int:
    fields = _parse_fields(args.fields)
    if args.bad_signature and args.secret is None and not os.environ.get(SECRET_ENV_VAR):
        secret = "census-receiver-wrong-secret"
    else:
        secret = _one_secret(args.secret, "sign")
    if args.event not in EVENT_NAMES:
        print(
            f"note: {args.event!r} is not a documented event ({', '.join(EVENT_NAMES)}); "
            "sending it with the three ids only",
            file=sys.stderr,
        )
    delivery = make_delivery(args.event, secret=secret, bad_signature=args.bad_signature, **fields)
    print(f"-> POST {args.url}")
    print(f"   X-Signature: {delivery.headers['X-Signature']}")
    print(f"   {delivery.body.decode('utf-8')}", flush=True)
    delays = [d * args.retry_scale for d in RETRY_DELAYS] if args.retry else []
    attempt = 0
    while True:
        attempt += 1
        label = f"attempt {attempt}: " if args.retry else ""
        try:
            status, reason, answer = _post(args.url, delivery.body, delivery.headers, args.timeout)
        except _Failure as exc:
            if exc.code != EXIT_UNREACHABLE or attempt > len(delays):
                raise
            print(f"<- {label}{exc}", flush=True)
            code = exc.code
        else:
            text = answer.decode("utf-8", "replace").strip()
            print(f"<- {label}{status} {reason} {text}".rstrip(), flush=True)
            if 200 <= status < 300:
                return EXIT_OK
            code = EXIT_REFUSED
        if attempt > len(delays):
            return code
        delay = delays[attempt - 1]
        print(f"   retrying in {delay:g} s (Census's retry {attempt} of {len(delays)})", flush=True)
        time.sleep(delay)


# -- sign and verify ------------------------------------------------------------------


def _sign(args: argparse.Namespace, prog: str) -> int:
    secret = _one_secret(args.secret, "sign")
    body = _read_body(args.file)
    print(compute_signature(body, secret))
    return EXIT_OK


def _verify(args: argparse.Namespace, prog: str) -> int:
    found = _secret_list(args.secret)
    if not found:
        raise _Failure(
            EXIT_INPUT, f"no secret to verify with: pass --secret S or set {SECRET_ENV_VAR}"
        )
    body = _read_body(args.file)
    try:
        claimed = decode_signature(args.signature)
    except RequestRejected as exc:
        print(f"not verified: {exc}")
        return EXIT_REFUSED
    position = SecretSet(found).match(body, claimed)
    if position is None:
        which = "the secret" if len(found) == 1 else f"any of the {len(found)} secrets"
        print(f"not verified: the signature does not match the body for {which}")
        return EXIT_REFUSED
    print(f"verified (secret #{position + 1} of {len(found)})")
    return EXIT_OK


# -- serve ----------------------------------------------------------------------------


class _RelayFailed(Exception):
    """A --forward or --exec relay did not succeed; the delivery is answered 500."""


class _Console:
    """Writes what ``serve`` shows; called from the event loop only."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def block(self, text: str, indent: str = "    ") -> None:
        for row in text.splitlines():
            self.line(indent + row)

    def delivery(self, outcome: Outcome, body: Body | None, notes: Sequence[str]) -> None:
        stamp = time.strftime("%H:%M:%S")
        event = outcome.event
        if event is not None:
            verdict, comment = _VERDICTS.get(outcome.reason, ("verified", outcome.reason))
            ids = f"workspace={event.workspace_id} sync={event.sync_id} run={event.sync_run_id}"
            answer = f"{outcome.status} {comment}" if comment else str(outcome.status)
            self.line(f"{stamp}  {verdict:<9}  {event.event}  {ids}  -> {answer}")
            if verdict != "duplicate":
                self.block(json.dumps(dict(event.raw), indent=2, ensure_ascii=False))
        else:
            try:
                why = outcome.json().get("error", outcome.reason)
            except ValueError:
                why = outcome.reason
            self.line(f"{stamp}  rejected   {outcome.status} {outcome.reason}: {why}")
            if body:
                self.line("    unverified body, not handled:")
                self.block(_preview(bytes(body)), indent="      ")
        for note in notes:
            self.block(note)


#: The verdict and a comment on the answer, by ``Outcome.reason``, for verified events.
_VERDICTS = {
    "handled": ("verified", ""),
    "ignored": ("verified", ""),
    "dropped": ("verified", ""),
    "handler_error": ("verified", "(a relay failed; Census would retry)"),
    "deadline": ("verified", "(still running at the deadline; Census would retry)"),
    "duplicate": ("duplicate", "(already handled)"),
    "in_progress": ("duplicate", "(still being handled; Census would retry)"),
}


def _preview(body: bytes) -> str:
    try:
        text = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        text = repr(body[:_SHOWN_CHARS])
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "\n..."


class _NoteHandler(logging.Handler):
    """Shows the receiver's log records that the delivery lines do not already say."""

    def __init__(self, console: _Console) -> None:
        super().__init__(logging.WARNING)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "census_reason"):
            return  # a rejection or a failed relay: its delivery line says it
        self.console.line(f"    note: {record.getMessage()}")


class _ServeReceiver(WebhookReceiver):
    """A receiver that shows every delivery and relays the verified ones.

    It wraps the steps every delivery goes through (``check_request``, then
    ``_begin``, where ``handle`` and ``handle_async`` start too), so rejections
    (which no handler sees) are shown too; relays run as the ``endpoint``, i.e.
    as part of handling: a failed relay answers 500 and, with dedup, is not
    remembered as done.
    """

    def __init__(
        self,
        secret: Sequence[str],
        *,
        console: _Console,
        forward: Sequence[str] = (),
        commands: Sequence[str] = (),
        **options: Any,
    ) -> None:
        super().__init__(secret, **options)
        self.console = console
        self.forward = tuple(forward)
        self.commands = tuple(commands)

    def check_request(
        self, method: str, content_length: str | bytes | None = None
    ) -> Outcome | None:
        outcome = super().check_request(method, content_length)
        if outcome is not None:
            self.console.delivery(outcome, None, ())
        return outcome

    @overload
    def _begin(
        self,
        is_async: Literal[False],
        body: Body,
        signature: str | bytes | None,
        endpoint: Callable[[Event], object] | None = None,
        headers: Headers | None = None,
    ) -> Outcome: ...

    @overload
    def _begin(
        self,
        is_async: Literal[True],
        body: Body,
        signature: str | bytes | None,
        endpoint: Callable[[Event], object] | None = None,
        headers: Headers | None = None,
    ) -> Outcome | Coroutine[Any, Any, Outcome]: ...

    def _begin(
        self,
        is_async: bool,
        body: Body,
        signature: str | bytes | None,
        endpoint: Callable[[Event], object] | None = None,
        headers: Headers | None = None,
    ) -> Outcome | Coroutine[Any, Any, Outcome]:
        notes: list[str] = []
        relay = self._endpoint(body, signature, headers, notes, endpoint)
        begun = super()._begin(is_async, body, signature, relay, headers)  # type: ignore[call-overload]
        if isinstance(begun, Outcome):
            self.console.delivery(begun, body, notes)
            return begun
        return self._shown(begun, body, notes)

    async def _shown(
        self, pending: Coroutine[Any, Any, Outcome], body: Body, notes: list[str]
    ) -> Outcome:
        outcome = await pending
        self.console.delivery(outcome, body, notes)
        return outcome

    def _endpoint(
        self,
        body: Body,
        signature: str | bytes | None,
        headers: Headers | None,
        notes: list[str],
        inner: Callable[[Event], object] | None,
    ) -> Callable[[Event], object]:
        # Always an endpoint, so a verified delivery is "handled" ({"status": "ok"}).
        return functools.partial(self._relay, bytes(body), signature, headers, notes, inner)

    def _relay(
        self,
        body: bytes,
        signature: str | bytes | None,
        headers: Headers | None,
        notes: list[str],
        inner: Callable[[Event], object] | None,
        event: Event,
    ) -> object:
        result = inner(event) if inner is not None else None
        failures = []
        if self.forward:
            if headers is not None:  # verified by now: they hold the one X-Signature
                signature = signature_from_headers(headers)
            sent = {"Content-Type": "application/json", "X-Signature": _text(signature)}
            for url in self.forward:
                try:
                    status, reason, _ = _post(url, body, sent, TIMEOUT)
                except _Failure as exc:
                    failures.append(f"forward to {url}: {exc}")
                    notes.append(f"forwarded to {url}: failed: {exc}")
                    continue
                notes.append(f"forwarded to {url}: {status} {reason}")
                if not 200 <= status < 300:
                    failures.append(f"forward to {url}: answered {status}")
        for command in self.commands:
            error = _run_command(command, body, event, notes)
            if error:
                failures.append(error)
        if failures:
            raise _RelayFailed("; ".join(failures))
        return result


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value or ""


def _run_command(command: str, body: bytes, event: Event, notes: list[str]) -> str | None:
    env = {
        **os.environ,
        "CENSUS_EVENT": event.event,
        "CENSUS_WORKSPACE_ID": str(event.workspace_id),
        "CENSUS_SYNC_ID": str(event.sync_id),
        "CENSUS_SYNC_RUN_ID": str(event.sync_run_id),
    }
    try:
        # The command is the user's own, from their command line: the shell is the point.
        done = subprocess.run(  # noqa: S602
            command,
            shell=True,
            input=body,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        notes.append(f"exec {command!r}: killed after {TIMEOUT:g} s")
        return f"exec {command!r}: timed out"
    except OSError as exc:
        notes.append(f"exec {command!r}: cannot run: {exc}")
        return f"exec {command!r}: cannot run"
    notes.append(f"exec {command!r}: exit {done.returncode}")
    output = done.stdout.decode("utf-8", "replace").rstrip()
    if output:
        notes.append("  " + output[-_SHOWN_CHARS:].replace("\n", "\n  "))
    return None if done.returncode == 0 else f"exec {command!r}: exit {done.returncode}"


def _bind(host: str, port: int) -> socket.socket:
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
        raise _Failure(
            EXIT_LISTEN,
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
            "pick another --port (0 picks a free one) or --host",
        ) from None


def _raise_stopped(signum: int, frame: object) -> NoReturn:
    raise _Stopped


def _serve(args: argparse.Namespace, prog: str) -> int:
    try:
        import uvicorn
        from starlette.applications import Starlette

        from ..starlette import CensusWebhookMiddleware
    except ImportError as exc:
        raise _Failure(
            EXIT_INPUT,
            f"serve needs {exc.name or 'the serve extra'}: "
            "python3 -m pip install 'census-receiver[serve]'",
        ) from None
    if not args.path.startswith("/"):
        raise _Failure(EXIT_INPUT, f"--path must start with '/', not {args.path!r}")
    for target in args.forward:
        if _relays_to_itself(target, args.host, args.port, args.path):
            raise _Failure(
                EXIT_INPUT,
                f"--forward {target} is this server's own webhook URL: every delivery "
                "would be relayed to itself; forward to your app's URL instead",
            )
    console = _Console(sys.stdout)
    found = _secret_list(args.secret)
    generated = not found
    if generated:
        found = [secrets.token_hex(20)]
    sock = _bind(args.host, args.port)
    from ..dedup import InMemoryDedupStore

    receiver = _ServeReceiver(
        found,
        console=console,
        forward=args.forward,
        commands=args.exec_,
        dedup=InMemoryDedupStore() if args.dedup else None,
    )
    port = sock.getsockname()[1]
    shown_host = args.host
    if shown_host in ("0.0.0.0", "::", ""):  # noqa: S104 - naming it, not binding it
        shown_host = "127.0.0.1"
    if ":" in shown_host:
        shown_host = f"[{shown_host}]"
    url = f"http://{shown_host}:{port}{args.path}"

    app = CensusWebhookMiddleware(Starlette(), receiver=receiver, path=args.path)
    config = uvicorn.Config(
        app, log_config=None, log_level="warning", access_log=False, lifespan="off"
    )

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                _announce(console, prog, url, found[0] if generated else None, len(found))

    logger = logging.getLogger("census_receiver")
    notes = _NoteHandler(console)
    saved = logger.propagate
    logger.addHandler(notes)
    logger.propagate = False
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_stopped) if in_main else None
    try:
        import asyncio

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
    console.line("stopped")
    return EXIT_OK


def _announce(console: _Console, prog: str, url: str, generated: str | None, count: int) -> None:
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


_COMMANDS: dict[str, Callable[[argparse.Namespace, str], int]] = {
    "serve": _serve,
    "send": _send,
    "sign": _sign,
    "verify": _verify,
}
