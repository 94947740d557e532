"""Servers with several worker processes, for tests: gunicorn or ``uvicorn --workers``.

``running(kind, target, env=..., workers=...)`` binds a socket here (so no port
is guessed), starts the server on it in a process group of its own, waits until
every worker answered (any path but the webhook's answers the worker's pid),
yields the base URL, and stops the group at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def listening_socket() -> socket.socket:
    """A listening socket on 127.0.0.1 that a child process can inherit."""
    # IPPROTO_TCP so the uvicorn workers' asyncio sets TCP_NODELAY on accepted sockets.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def command(kind: str, target: str, fd: int, workers: int, threads: int = 0) -> list[str]:
    """The command line serving ``target`` (``module:attr``) on the inherited socket ``fd``.

    With ``threads``, gunicorn's workers are threaded (``gthread``) with that many each.
    """
    if kind == "gunicorn":
        worker_class = (
            ("--worker-class", "gthread", "--threads", str(threads))
            if threads
            else ("--worker-class", "sync")
        )
        return [
            sys.executable, "-m", "gunicorn",
            "--workers", str(workers),
            *worker_class,
            "--bind", f"fd://{fd}",
            "--graceful-timeout", "5",
            "--log-level", "warning",
            target,
        ]  # fmt: skip
    return [
        sys.executable, "-m", "uvicorn",
        "--workers", str(workers),
        "--fd", str(fd),
        "--lifespan", "off",
        "--log-level", "warning",
        "--timeout-graceful-shutdown", "5",
        target,
    ]  # fmt: skip


@contextlib.contextmanager
def running(
    kind: str,
    target: str,
    *,
    env: dict[str, str],
    log: Path,
    workers: int = 2,
    threads: int = 0,
) -> Iterator[str]:
    """Serve ``target`` with ``kind`` (``"gunicorn"`` or ``"uvicorn"``); yield its base URL."""
    sock = listening_socket()
    port = sock.getsockname()[1]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command(kind, target, sock.fileno(), workers, threads),
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            pass_fds=(sock.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    sock.close()  # the server holds its own copy
    base = f"http://127.0.0.1:{port}"
    try:
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while len(seen) < workers:
            assert process.poll() is None, f"the server exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"workers seen: {seen}\n{log.read_text()[-3000:]}"
            try:
                seen.add(httpx.get(base + "/pid", timeout=2).text)
            except httpx.TransportError:
                time.sleep(0.05)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
