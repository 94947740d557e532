"""A real ``redis-server`` for the tests: 127.0.0.1, a free port, no persistence.

``RedisServer`` starts the Debian/Homebrew ``redis-server`` binary as a child
process, waits until it answers ``PING``, and can be stopped and started again
on the same port in the middle of a test (to show what the receiver answers while
Redis is down, and that nothing is lost once it is back). It never writes a
dump or an append-only file, and removes its working directory when closed::

    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        server.stop()   # clients now get ConnectionError
        server.start()  # same port, empty again

The session-wide fixture ``redis_server`` in ``tests/conftest.py`` wraps one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

    import redis

__all__ = ["RedisServer", "free_port"]

#: The binary to run; CI installs Debian's redis-server when it is missing.
EXECUTABLE = os.environ.get("CENSUS_TEST_REDIS_SERVER", "redis-server")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` child process, restartable on the same port.

    Args:
        startup_timeout: seconds to wait for the server to answer ``PING``.

    Raises:
        RuntimeError: from ``start`` when the binary is missing or does not come up.
    """

    def __init__(self, *, startup_timeout: float = 10.0) -> None:
        self.startup_timeout = startup_timeout
        #: The port, chosen on the first ``start`` and kept across restarts.
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="census-redis-"))

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer 127.0.0.1:{self.port} {state}>"

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server (on the port of the previous run, if any) and wait for ``PING``."""
        if self.running:
            raise RuntimeError("redis-server is already running")
        if shutil.which(EXECUTABLE) is None:
            raise RuntimeError(
                f"{EXECUTABLE!r} not found: install redis-server (apt-get install redis-server)"
            )
        # A port picked by free_port() can be taken by someone else before
        # redis binds it; then pick another. A restart keeps its port.
        for _ in range(1 if self.port else 5):
            port = self.port or free_port()
            if self._spawn(port):
                self.port = port
                return
        raise RuntimeError(f"redis-server did not start; its log:\n{self._log_tail()}")

    def _spawn(self, port: int) -> bool:
        log = (self._dir / "redis.log").open("ab")
        with log:
            options = {
                "port": str(port),
                "bind": "127.0.0.1",
                "save": "",  # no RDB snapshot, not even at shutdown
                "appendonly": "no",
                "dir": str(self._dir),
                "daemonize": "no",
                "loglevel": "warning",
            }
            argv = [EXECUTABLE]
            for name, value in options.items():
                argv += [f"--{name}", value]
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False  # port taken, most likely
            if _pings(port):
                self._process = process
                return True
            time.sleep(0.02)
        process.kill()
        process.wait()
        return False

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self._dir / "redis.log").read_text(errors="replace")[-2000:]
        return ""

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); its data is gone."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Freeze the server (SIGSTOP) for the block: connections stay open, nothing answers."""
        process = self._process
        assert process is not None, "redis-server is not running"
        process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """``stop`` then ``start`` on the same port."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its working directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def client(self, **options: Any) -> redis.Redis:
        """A sync redis-py client for this server, with short timeouts by default."""
        import redis

        options.setdefault("socket_timeout", 5)
        options.setdefault("socket_connect_timeout", 5)
        return redis.Redis(host="127.0.0.1", port=self.port, **options)

    def flush(self) -> None:
        """Empty every database, so one test does not see another's keys."""
        with self.client() as client:
            client.flushall()
