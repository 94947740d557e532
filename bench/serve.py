"""Serve one benchmark app with uvicorn (one worker) on 127.0.0.1, and drive such servers.

As a command, ``python3 -m bench.serve APP`` binds a port the OS picks, prints
``PORT <n>`` and serves until it receives SIGTERM or SIGINT. ``Server`` starts
that command in a child process so its memory and CPU are its own.

Apps (each also answers ``GET /count`` with how many times its handler ran):

- ``starlette-by-hand``: a Starlette route doing the recipe and ``json.loads`` by hand;
- ``middleware``: a Starlette app with ``CensusWebhookMiddleware`` (async handler);
- ``middleware-sync``: the same with a plain ``def`` handler;
- ``middleware-journal``: ``middleware`` with a journal: a SQLite file, or a
  PostgreSQL database, named by ``CENSUS_BENCH_JOURNAL`` (a path or a URL).

uvicorn runs with its pure-Python defaults (``h11``, the asyncio loop), so
the figures do not depend on optional C accelerators being installed.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

__all__ = ["APPS", "Server", "build", "main"]

APPS = ("starlette-by-hand", "middleware", "middleware-sync", "middleware-journal")
ROOT = Path(__file__).resolve().parent.parent


def build(name: str) -> object:
    """The ASGI app called ``name`` (one of ``APPS``)."""
    from .apps import Calls, census_in_starlette, census_receiver_for, starlette_by_hand

    calls = Calls()
    if name == "starlette-by-hand":
        return starlette_by_hand(calls)
    if name in ("middleware", "middleware-sync"):
        receiver = census_receiver_for(calls, sync=name.endswith("-sync"))
        return census_in_starlette(receiver, calls)
    if name == "middleware-journal":
        from .journal import open_journal

        journal = open_journal(os.environ["CENSUS_BENCH_JOURNAL"])
        return census_in_starlette(census_receiver_for(calls, journal=journal), calls)
    raise SystemExit(f"unknown app {name!r}; choose one of {', '.join(APPS)}")


def main(argv: list[str] | None = None) -> int:
    """Serve the app named on the command line until SIGTERM/SIGINT."""
    import logging

    import uvicorn

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(f"usage: python3 -m bench.serve {{{','.join(APPS)}}}", file=sys.stderr)
        return 2
    app = build(args[0])
    # Refused deliveries are logged as warnings; they are not what is measured.
    logging.getLogger("census_receiver").setLevel(logging.ERROR)
    # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP (not
    # 0, the default): without it, Nagle's algorithm and delayed ACKs put a
    # 40 ms stall between the two writes of each answer.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        log_level="warning",
        access_log=False,
        lifespan="off",
        http="h11",
        loop="asyncio",
        backlog=512,
    )
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


class Server:
    """A ``python3 -m bench.serve APP`` child process, stopped on exit.

    Args:
        app: one of ``APPS``.
        timeout: seconds to wait for it to listen and answer.

    Raises:
        RuntimeError: if it does not start in time.
    """

    def __init__(
        self, app: str, *, timeout: float = 30.0, env: dict[str, str] | None = None
    ) -> None:
        self.app = app
        # Run from the repository root: ``-m`` puts it first on sys.path, so this
        # checkout of census_receiver is served even if another one is installed.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.serve", app],
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        self.pid = self.process.pid
        try:
            self.port = self._read_port(timeout)
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _read_port(self, timeout: float) -> int:
        stdout = self.process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], timeout)
        line = stdout.readline().decode() if ready else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"bench.serve {self.app} did not start: {line!r}")
        return int(line.split()[1])

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.count()
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"bench.serve {self.app} does not answer") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        """The webhook URL."""
        from .apps import PATH

        return f"http://127.0.0.1:{self.port}{PATH}"

    def count(self) -> int:
        """How many times the app's handler has run."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/count", timeout=10) as answer:
            calls: int = json.load(answer)["calls"]
        return calls

    def post(self, body: bytes, signature: str) -> int:
        """POST one delivery; return the answer's status."""
        request = urllib.request.Request(
            self.url,
            data=body,
            headers={"Content-Type": "application/json", "X-Signature": signature},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status: int = answer.status
        except urllib.error.HTTPError as error:
            status = error.code
        return status

    def cpu_seconds(self) -> float:
        """CPU time (user + system, every thread) the server has used so far."""
        with open(f"/proc/{self.pid}/stat") as stat:
            # Fields after the command name, which is in parentheses and may hold spaces.
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss(self) -> int:
        """Peak resident memory of the server so far (VmHWM), in bytes."""
        return _status_field(self.pid, "VmHWM")

    def rss(self) -> int:
        """Resident memory of the server now (VmRSS), in bytes."""
        return _status_field(self.pid, "VmRSS")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s) and reap it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _status_field(pid: int, name: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024  # the kernel reports kB
    raise RuntimeError(f"no {name} in /proc/{pid}/status")


if __name__ == "__main__":
    sys.exit(main())
