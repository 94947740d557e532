"""``census-receiver sign`` and ``verify``: the X-Signature of a body, computed or checked.

::

    census-receiver sign [FILE] [--secret S]
    census-receiver verify [FILE] --signature SIG [--secret S]...

Standard library only. ``verify`` names the secret that matched by its number
and its fingerprint, as the receiver's log lines do (``secret #2 [1a2b3c4d]``),
so a delivery verified here can be matched to one in the log.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..errors import RequestRejected
from ..receiver import SECRET_ENV_VAR
from ..signature import SecretSet, compute_signature, decode_signature
from .common import (
    EXIT_INPUT,
    EXIT_OK,
    EXIT_REFUSED,
    CommandFailed,
    add_secret_argument,
    one_secret,
    read_body,
    secret_list,
)

if TYPE_CHECKING:
    from .common import Subcommands

__all__ = ["add_parsers", "run_sign", "run_verify"]


def add_parsers(commands: Subcommands) -> None:
    """Register ``sign`` and ``verify``.

    Args:
        commands: the sub-command set of the ``census-receiver`` parser.
    """
    sign = commands.add_parser(
        "sign",
        help="print the X-Signature of a body",
        description="Print the X-Signature Census would send for the body in FILE or on stdin.",
    )
    sign.add_argument("file", nargs="?", metavar="FILE", help="the body (default: stdin)")
    add_secret_argument(sign, "the secret")
    sign.set_defaults(run=run_sign)

    verify = commands.add_parser(
        "verify",
        help="check an X-Signature against a body",
        description="Check that SIG is the X-Signature of the body under one of the secrets.",
    )
    verify.add_argument("file", nargs="?", metavar="FILE", help="the body (default: stdin)")
    verify.add_argument("--signature", required=True, metavar="SIG", help="the X-Signature value")
    add_secret_argument(verify, "a secret to try", repeatable=True)
    verify.set_defaults(run=run_verify)


def run_sign(args: argparse.Namespace, prog: str) -> int:
    """Print the X-Signature of the body under the secret.

    Args:
        args: the parsed ``sign`` arguments.
        prog: how the command was invoked.

    Returns:
        ``EXIT_OK``.

    Raises:
        CommandFailed: no secret, or the file cannot be read (EXIT_INPUT).
    """
    secret = one_secret(args.secret, "sign")
    body = read_body(args.file)
    print(compute_signature(body, secret))
    return EXIT_OK


def run_verify(args: argparse.Namespace, prog: str) -> int:
    """Say whether the signature is the body's under one of the secrets, and which.

    Args:
        args: the parsed ``verify`` arguments.
        prog: how the command was invoked.

    Returns:
        ``EXIT_OK`` when verified, else ``EXIT_REFUSED``.

    Raises:
        CommandFailed: no secret, or the file cannot be read (EXIT_INPUT).
    """
    found = secret_list(args.secret)
    if not found:
        raise CommandFailed(
            EXIT_INPUT, f"no secret to verify with: pass --secret S or set {SECRET_ENV_VAR}"
        )
    body = read_body(args.file)
    try:
        claimed = decode_signature(args.signature)
    except RequestRejected as exc:
        print(f"not verified: {exc}")
        return EXIT_REFUSED
    secrets = SecretSet(found)
    position = secrets.match(body, claimed)
    if position is None:
        which = "the secret" if len(found) == 1 else f"any of the {len(found)} secrets"
        print(f"not verified: the signature does not match the body for {which}")
        return EXIT_REFUSED
    # Numbered from 1 with its fingerprint, exactly as the receiver's log says it.
    label = f"#{position + 1} [{secrets.fingerprints[position]}]"
    print(f"verified (secret {label} of {len(found)})")
    return EXIT_OK
