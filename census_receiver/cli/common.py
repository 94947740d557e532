"""What ``census-receiver`` commands share: exit codes, options, secrets, input, HTTP POST.

A command module registers its sub-commands with ``add_parsers(commands)`` and
gives each a ``run(args, prog) -> int`` through ``set_defaults(run=...)``; see
``census_receiver.cli``. A command ends early by raising ``CommandFailed``,
which ``main`` prints on stderr and turns into its exit code. Only the standard
library is used here.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

from ..receiver import DEFAULT_PATH, SECRET_ENV_VAR

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PATH",
    "DEFAULT_PORT",
    "DEFAULT_URL",
    "ENV_NOTE",
    "EXIT_INPUT",
    "EXIT_LISTEN",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "SHOWN_CHARS",
    "TIMEOUT",
    "Command",
    "CommandFailed",
    "Subcommands",
    "add_limit_argument",
    "add_secret_argument",
    "is_loopback",
    "non_negative",
    "one_secret",
    "port_number",
    "positive_int",
    "positive_seconds",
    "post",
    "read_body",
    "secret_list",
]

#: Success: answered 2xx, signature verified, server stopped cleanly.
EXIT_OK = 0
#: The receiver answered non-2xx, or the signature does not verify.
EXIT_REFUSED = 1
#: Bad arguments (argparse's own status).
EXIT_USAGE = 2
#: Bad input: a malformed ``--set``, an unreadable file, no secret, a missing extra,
#: an app that cannot be imported or has no journal, an unknown delivery or run id.
EXIT_INPUT = 3
#: The URL could not be reached, or gave no answer in time; or the journal's
#: database could not be reached.
EXIT_UNREACHABLE = 4
#: ``serve`` could not listen on the address it was given.
EXIT_LISTEN = 5

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}{DEFAULT_PATH}"
#: Census gives up on a delivery attempt after 10 s; so do ``send`` and the relays.
TIMEOUT = 10.0
#: How much of an answer, a body or a command's output is read and shown.
SHOWN_CHARS = 2000
#: Appended to the help of every ``--secret``.
ENV_NOTE = f"(default: ${SECRET_ENV_VAR})"

#: What a command module's ``add_parsers`` is given: what ``add_subparsers()`` returns.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
#: What runs a sub-command: ``run(args, prog)`` returns the exit status.
Command: TypeAlias = Callable[[argparse.Namespace, str], int]

_Number = TypeVar("_Number", int, float)


class CommandFailed(Exception):
    """Ends the command with exit status ``code`` after printing ``message`` on stderr.

    Args:
        code: one of the ``EXIT_*`` codes.
        message: what failed and how to fix it.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# -- argument types ----------------------------------------------------------------------


def non_negative(value: str) -> float:
    """Parse a number that may be 0 (an argparse ``type``).

    Args:
        value: the argument as given.

    Returns:
        The number.

    Raises:
        argparse.ArgumentTypeError: if it is not a number, or is negative.
    """
    number = _converted(float, value, "a number")
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value!r}")
    return number


def positive_seconds(value: str) -> float:
    """Parse a duration in seconds, more than 0 (an argparse ``type``).

    Args:
        value: the argument as given.

    Returns:
        The number of seconds.

    Raises:
        argparse.ArgumentTypeError: if it is not a number, or not more than 0.
    """
    seconds = non_negative(value)
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {value!r}")
    return seconds


def positive_int(value: str) -> int:
    """Parse a whole number, 1 or more (an argparse ``type``), such as a ``--limit``.

    Args:
        value: the argument as given.

    Returns:
        The number.

    Raises:
        argparse.ArgumentTypeError: if it is not a whole number, or is less than 1.
    """
    number = _converted(int, value, "a whole number")
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {number}")
    return number


def port_number(value: str) -> int:
    """Parse a TCP port, 0 to 65535 (an argparse ``type``).

    Args:
        value: the argument as given.

    Returns:
        The port.

    Raises:
        argparse.ArgumentTypeError: if it is not an integer in range.
    """
    port = _converted(int, value, "a port number")
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, not {port}")
    return port


def _converted(convert: Callable[[str], _Number], value: str, what: str) -> _Number:
    """``convert(value)``, its ``ValueError`` told as argparse tells a bad value."""
    try:
        return convert(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {value!r}") from None


# -- options shared by several commands --------------------------------------------------


def add_secret_argument(
    parser: argparse.ArgumentParser, what: str, *, repeatable: bool = False
) -> None:
    """Add ``--secret S``, which defaults to ``CENSUS_WEBHOOK_SECRET`` (see ``ENV_NOTE``).

    Read it with ``one_secret``, or with ``secret_list`` when it is repeatable.

    Args:
        parser: the sub-command's parser.
        what: the start of its help, before the note on the default ("the secret").
        repeatable: whether it may be given several times: then ``args.secret``
            is a list, empty when it is not given.
    """
    if repeatable:
        parser.add_argument(
            "--secret",
            action="append",
            default=[],
            metavar="S",
            help=f"{what}; repeat for several {ENV_NOTE}",
        )
    else:
        parser.add_argument("--secret", metavar="S", help=f"{what} {ENV_NOTE}")


def add_limit_argument(
    parser: argparse.ArgumentParser, *, help: str, default: int | None = None
) -> None:
    """Add ``--limit N``, a whole number of 1 or more (``positive_int``).

    Args:
        parser: the sub-command's parser.
        help: its help; ``%(default)s`` in it stands for ``default``.
        default: the limit when ``--limit`` is not given (``None``: no limit).
    """
    parser.add_argument("--limit", type=positive_int, default=default, metavar="N", help=help)


# -- secrets and input -------------------------------------------------------------------


def secret_list(given: Sequence[str]) -> list[str]:
    """The secrets given with ``--secret``, else the one in ``CENSUS_WEBHOOK_SECRET``.

    Args:
        given: the ``--secret`` values, in order.

    Returns:
        The secrets; empty when none is given and the variable is unset or empty.

    Raises:
        CommandFailed: a ``--secret`` is empty (EXIT_INPUT).
    """
    if any(not s for s in given):
        raise CommandFailed(EXIT_INPUT, "--secret must not be empty")
    if given:
        return list(given)
    from_env = os.environ.get(SECRET_ENV_VAR, "")
    return [from_env] if from_env else []


def one_secret(given: str | None, what: str) -> str:
    """The secret to ``what`` with: ``--secret``, else ``CENSUS_WEBHOOK_SECRET``.

    Args:
        given: the ``--secret`` value, if any.
        what: the action, for the message ("sign").

    Returns:
        The secret.

    Raises:
        CommandFailed: there is none, or it is empty (EXIT_INPUT).
    """
    found = secret_list([] if given is None else [given])
    if not found:
        raise CommandFailed(
            EXIT_INPUT,
            f"no secret to {what} with: pass --secret S or set {SECRET_ENV_VAR} "
            "(census-receiver serve prints one when it generates it)",
        )
    return found[0]


def read_body(file: str | None) -> bytes:
    """Read a request body from ``file``, or from stdin for ``None`` or ``"-"``.

    Args:
        file: the path given on the command line.

    Returns:
        The exact bytes.

    Raises:
        CommandFailed: the file cannot be read (EXIT_INPUT).
    """
    if file is None or file == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(file).read_bytes()
    except OSError as exc:
        raise CommandFailed(
            EXIT_INPUT, f"cannot read {file}: {exc.strerror or exc}; give a readable file or '-'"
        ) from None


# -- HTTP --------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect would turn the POST into a GET without the body; show it instead.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback.

    Args:
        host: a host name or IP address, without brackets.

    Returns:
        True for ``localhost`` and loopback addresses.
    """
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _opener(url: str) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
    if is_loopback(urllib.parse.urlsplit(url).hostname or ""):
        # A local receiver is never behind the proxy that http_proxy names.
        handlers.append(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener(*handlers)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, str, bytes]:
    """POST ``body`` to ``url``, following no redirect, whatever the answer.

    Args:
        url: an http:// or https:// URL.
        body: the exact bytes to send.
        headers: the request headers.
        timeout: seconds to wait for the connection and for the answer.

    Returns:
        The status, its reason (with the target of a redirect) and the first
        ``SHOWN_CHARS`` bytes of the answer body.

    Raises:
        CommandFailed: the URL is not http(s) (EXIT_INPUT), or cannot be reached
            or gives no answer in time (EXIT_UNREACHABLE).
    """
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise CommandFailed(EXIT_INPUT, f"{url!r} is not an http:// or https:// URL")
    # The scheme is checked above: no file:// or custom-scheme opening here.
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with _opener(url).open(request, timeout=timeout) as response:
            return response.status, response.reason, response.read(SHOWN_CHARS)
    except urllib.error.HTTPError as exc:
        with exc:
            answer = exc.read(SHOWN_CHARS)
            location = exc.headers.get("location")
        reason = f"{exc.reason} (to {location})" if location else str(exc.reason)
        return exc.code, reason, answer
    except urllib.error.URLError as exc:
        why = exc.reason.strerror if isinstance(exc.reason, OSError) else exc.reason
        raise CommandFailed(
            EXIT_UNREACHABLE,
            f"cannot reach {url}: {why or exc.reason}; is the receiver running there?",
        ) from None
    except TimeoutError:
        raise CommandFailed(
            EXIT_UNREACHABLE, f"no answer from {url} within {timeout:g} s"
        ) from None
    except (OSError, ValueError) as exc:
        raise CommandFailed(EXIT_UNREACHABLE, f"cannot reach {url}: {exc}") from None
