"""The relays of ``census-receiver serve``: ``--forward URL`` and ``--exec CMD``.

Each verified delivery is relayed by a handler registered for every event, as
part of handling it: a relay that fails makes the delivery answer 500 (Census
would retry it) and keeps it from being remembered as done. A forward sends
the same bytes with the same ``X-Signature``, so the app behind it verifies
them as it would Census's; a command gets the body on stdin and the event's ids
in ``CENSUS_*`` environment variables. ``ServeApp`` hands the request's bytes
to the handler (``Relay.handling``); a delivery replayed from the journal (the
inspector's button) is relayed as its recorded payload, signed anew with
serve's secret.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import subprocess
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from ..signature import compute_signature, signature_from_headers
from .common import EXIT_INPUT, SHOWN_CHARS, TIMEOUT, CommandFailed, is_loopback, post

if TYPE_CHECKING:
    from .._types import Headers
    from ..events import Event

__all__ = ["Relay", "RelayFailed", "check_forward", "relays_to_itself"]


#: The request being handled, for the relay handler: body, headers, console notes.
_REQUEST: contextvars.ContextVar[tuple[bytes, Headers, list[str]] | None] = contextvars.ContextVar(
    "census_relay_request", default=None
)


class RelayFailed(Exception):
    """A ``--forward`` or ``--exec`` relay did not succeed; the delivery is answered 500."""


def relays_to_itself(url: str, host: str, port: int, path: str) -> bool:
    """Whether a ``--forward`` URL is the webhook URL of the server being started.

    Args:
        url: the ``--forward`` URL.
        host: the address ``serve`` listens on.
        port: its port.
        path: its webhook path.

    Returns:
        True if relaying there would send every delivery back to ``serve`` itself.
    """
    parts = urllib.parse.urlsplit(url)
    try:
        forward_port = parts.port or 80
    except ValueError:
        return False  # not a port at all: check_forward refuses it
    forward_host = parts.hostname or ""
    listens_locally = host in ("0.0.0.0", "::", "") or is_loopback(host)  # noqa: S104
    same_host = forward_host == host or (is_loopback(forward_host) and listens_locally)
    return parts.scheme == "http" and same_host and forward_port == port and parts.path == path


def check_forward(url: str, *, host: str, port: int, path: str) -> None:
    """Refuse a ``--forward`` URL that no delivery could be relayed to.

    Args:
        url: the ``--forward`` URL.
        host: the address ``serve`` listens on.
        port: its port.
        path: its webhook path.

    Raises:
        CommandFailed: the URL is not http:// or https:// with a host (and a
            valid port), or is the server's own webhook URL (EXIT_INPUT).
    """
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        valid = False
    else:
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    if not valid:
        raise CommandFailed(
            EXIT_INPUT,
            f"--forward {url} is not an http:// or https:// URL with a host; give your "
            "app's webhook URL, e.g. --forward http://127.0.0.1:5000/webhooks/census",
        )
    if relays_to_itself(url, host, port, path):
        raise CommandFailed(
            EXIT_INPUT,
            f"--forward {url} is this server's own webhook URL: every delivery "
            "would be relayed to itself; forward to your app's URL instead",
        )


class Relay:
    """Relays verified deliveries to URLs and commands.

    Args:
        forward: URLs to POST each delivery to, in order.
        commands: shell commands to run for each delivery, in order.
        timeout: seconds each forward and each command may take.
    """

    def __init__(
        self, forward: Sequence[str] = (), commands: Sequence[str] = (), timeout: float = TIMEOUT
    ) -> None:
        self.forward = tuple(forward)
        self.commands = tuple(commands)
        self.timeout = timeout

    @contextlib.contextmanager
    def handling(self, body: bytes, headers: Headers, notes: list[str]) -> Iterator[None]:
        """Within the block, the relay handler relays this request's own bytes.

        Args:
            body: the exact request body.
            headers: the request headers (they hold its one X-Signature once verified).
            notes: where to append a line about each relay, for the console.
        """
        token = _REQUEST.set((body, headers, notes))
        try:
            yield
        finally:
            _REQUEST.reset(token)

    def handler(self, secret: str) -> Callable[[Event], None]:
        """The handler that relays each delivery, to register for every event.

        It is a plain function, so the receiver runs it in a worker thread.

        Args:
            secret: signs a replayed delivery's payload for ``--forward``.

        Returns:
            ``relay(event)``, which raises ``RelayFailed`` if any relay failed.
        """

        def relay(event: Event) -> None:
            current = _REQUEST.get()
            if current is None:  # a replay from the journal: no request, the payload
                body = json.dumps(dict(event.raw)).encode()
                headers: Headers = {"x-signature": compute_signature(body, secret)}
                notes: list[str] = []
            else:
                body, headers, notes = current
            failures = self._forward(body, headers, notes)
            for command in self.commands:
                error = self._run(command, body, event, notes)
                if error:
                    failures.append(error)
            if failures:
                raise RelayFailed("; ".join(failures))

        return relay

    def _forward(self, body: bytes, headers: Headers, notes: list[str]) -> list[str]:
        if not self.forward:
            return []
        signature = signature_from_headers(headers)  # verified by now: exactly one
        if isinstance(signature, bytes):
            signature = signature.decode("latin-1")
        sent = {"Content-Type": "application/json", "X-Signature": signature or ""}
        failures = []
        for url in self.forward:
            try:
                status, reason, _ = post(url, body, sent, self.timeout)
            except CommandFailed as exc:
                failures.append(f"forward to {url}: {exc}")
                notes.append(f"forwarded to {url}: failed: {exc}")
                continue
            notes.append(f"forwarded to {url}: {status} {reason}")
            if not 200 <= status < 300:
                failures.append(f"forward to {url}: answered {status}")
        return failures

    def _run(self, command: str, body: bytes, event: Event, notes: list[str]) -> str | None:
        """Run ``command``; the failure to report, or ``None`` if it exited 0."""
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
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            notes.append(f"exec {command!r}: killed after {self.timeout:g} s")
            return f"exec {command!r}: timed out"
        except OSError as exc:
            notes.append(f"exec {command!r}: cannot run: {exc}")
            return f"exec {command!r}: cannot run"
        notes.append(f"exec {command!r}: exit {done.returncode}")
        output = done.stdout.decode("utf-8", "replace").rstrip()
        if output:
            notes.append("  " + output[-SHOWN_CHARS:].replace("\n", "\n  "))
        return None if done.returncode == 0 else f"exec {command!r}: exit {done.returncode}"
