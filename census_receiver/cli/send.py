"""``census-receiver send``: sign a realistic event as Census does and POST it.

::

    census-receiver send EVENT [--url URL] [--secret S] [--set KEY=VALUE]...
                         [--bad-signature] [--retry [--retry-scale F]] [--timeout T]

Standard library only. The exchange is printed as it happens (``->`` the
request, ``<-`` each answer); the exit status is 0 only when answered 2xx.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..receiver import DEFAULT_PATH, SECRET_ENV_VAR
from ..testing import EVENT_NAMES, RETRY_DELAYS, make_delivery
from .common import (
    DEFAULT_URL,
    EXIT_INPUT,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    TIMEOUT,
    CommandFailed,
    add_secret_argument,
    non_negative,
    one_secret,
    positive_seconds,
    post,
)

if TYPE_CHECKING:
    from .common import Subcommands

__all__ = ["add_parsers", "parse_fields", "run"]

#: Signs ``--bad-signature`` deliveries when no secret is given at all.
_WRONG_SECRET = "census-receiver-wrong-secret"


def add_parsers(commands: Subcommands) -> None:
    """Register ``send``.

    Args:
        commands: the sub-command set of the ``census-receiver`` parser.
    """
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
    add_secret_argument(send, "the secret to sign with")
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
        type=non_negative,
        default=1.0,
        metavar="F",
        help="multiply the retry delays by F (%(default)s)",
    )
    send.add_argument(
        "--timeout",
        type=positive_seconds,
        default=TIMEOUT,
        help="seconds to wait for an answer (%(default)s)",
    )
    send.set_defaults(run=run)


def parse_fields(items: Sequence[str]) -> dict[str, Any]:
    """Turn ``--set KEY=VALUE`` items into payload fields.

    Args:
        items: the ``--set`` values, in order (a later key wins).

    Returns:
        The fields: each VALUE decoded as JSON when it parses, else kept as a string.

    Raises:
        CommandFailed: an item is not ``KEY=VALUE``, or sets ``event`` (EXIT_INPUT).
    """
    fields: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CommandFailed(
                EXIT_INPUT,
                f"--set {item!r} is not KEY=VALUE; write e.g. --set sync_id=42 "
                "or --set status=emergency",
            )
        if key == "event":
            raise CommandFailed(EXIT_INPUT, "--set event=...: give the event name as EVENT instead")
        try:
            fields[key] = json.loads(raw)
        except ValueError:
            fields[key] = raw
    return fields


def run(args: argparse.Namespace, prog: str) -> int:
    """Send the event, retrying on Census's schedule with ``--retry``.

    Args:
        args: the parsed ``send`` arguments.
        prog: how the command was invoked.

    Returns:
        ``EXIT_OK`` when answered 2xx, else ``EXIT_REFUSED``.

    Raises:
        CommandFailed: bad input (EXIT_INPUT), or the URL is unreachable after
            the last attempt (EXIT_UNREACHABLE).
    """
    fields = parse_fields(args.fields)
    if args.bad_signature and args.secret is None and not os.environ.get(SECRET_ENV_VAR):
        secret = _WRONG_SECRET
    else:
        secret = one_secret(args.secret, "sign")
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
    hinted = False
    attempt = 0
    while True:
        attempt += 1
        label = f"attempt {attempt}: " if args.retry else ""
        try:
            status, reason, answer = post(args.url, delivery.body, delivery.headers, args.timeout)
        except CommandFailed as exc:
            if exc.code != EXIT_UNREACHABLE or attempt > len(delays):
                raise
            print(f"<- {label}{exc}", flush=True)
            code = exc.code
        else:
            text = answer.decode("utf-8", "replace").strip()
            print(f"<- {label}{status} {reason} {text}".rstrip(), flush=True)
            if 200 <= status < 300:
                return EXIT_OK
            if status in (404, 405) and not hinted:
                print(f"   hint: {_wrong_path_hint(args.url)}", flush=True)
                hinted = True
            code = EXIT_REFUSED
        if attempt > len(delays):
            return code
        delay = delays[attempt - 1]
        print(f"   retrying in {delay:g} s (Census's retry {attempt} of {len(delays)})", flush=True)
        time.sleep(delay)


def _wrong_path_hint(url: str) -> str:
    # 404 and 405 both say "nothing takes a POST here": most often the path is not
    # the one the receiver answers on.
    parts = urllib.parse.urlsplit(url)
    path = parts.path or "/"
    if path == DEFAULT_PATH:
        return (
            f"nothing takes a webhook POST at {path}: if the receiver there was given "
            "another path, pass its full webhook URL with --url"
        )
    suggested = urllib.parse.urlunsplit((parts.scheme, parts.netloc, DEFAULT_PATH, "", ""))
    return (
        f"nothing takes a webhook POST at {path}; serve and the adapters listen on "
        f"{DEFAULT_PATH} unless given another path: pass the full webhook URL with --url, "
        f"e.g. --url {suggested}"
    )
