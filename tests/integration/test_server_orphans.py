"""A server the suite starts does not outlive a pytest that is killed.

A pytest run in a child process takes the suite's own ``redis_server`` or
``postgres_server`` fixture, writes down the server's process id and port,
and waits; then it is killed with SIGKILL, so no teardown, ``finally`` or
``atexit`` runs. The server (for PostgreSQL, the postmaster and every backend
process it had) must be gone shortly after, and its port closed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ..conftest import need
from ..postgres_server import PG_MISSING, find_pg_bindir
from ..redis_server import REDIS_MISSING, find_redis_server

ROOT = Path(__file__).resolve().parents[2]
#: Seconds for the child to start its server, and for a killed server to be gone.
START = 90.0
GONE = 10.0

HOLDER = """
import time
from pathlib import Path

from tests.conftest import postgres_server, redis_server  # the suite's fixtures


def test_hold(request):
    server = request.getfixturevalue({fixture!r})
    if {fixture!r} == "postgres_server":
        import psycopg

        held = psycopg.connect(server.conninfo)  # so that there is a backend too
    report = Path({report!r})
    report.with_suffix(".tmp").write_text(f"{{server.pid}} {{server.port}} {{server._dir}}")
    report.with_suffix(".tmp").rename(report)
    time.sleep({hold})
"""


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("fixture", ["redis_server", "postgres_server"])
def test_a_server_dies_with_the_pytest_that_started_it_when_that_is_killed(
    fixture: str, tmp_path: Path
) -> None:
    if fixture == "redis_server" and find_redis_server() is None:
        need(REDIS_MISSING)
    if fixture == "postgres_server" and find_pg_bindir() is None:
        need(PG_MISSING)
    report = tmp_path / "server.txt"
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the suite's settings
    (tmp_path / "test_hold.py").write_text(
        HOLDER.format(fixture=fixture, report=str(report), hold=START * 2)
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CENSUS_TEST_REQUIRE_ALL", None)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    child = subprocess.Popen(
        [*argv, str(tmp_path / "test_hold.py")],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    pid = port = 0
    directory = None
    try:
        started = wait_until(lambda: report.exists() or child.poll() is not None, START)
        if not report.exists():
            child.kill()
            output = child.communicate(timeout=GONE)[0].decode(errors="replace")
            pytest.fail(f"the child did not start its server (started={started}):\n{output}")
        pid_text, port_text, dir_text = report.read_text().split()
        pid, port, directory = int(pid_text), int(port_text), Path(dir_text)
        assert alive(pid) and accepts(port)
        # For PostgreSQL: the backend of the held connection, the checkpointer, and so on.
        family = [pid, *children(pid)]
        if fixture == "postgres_server":
            assert len(family) > 2, family

        os.kill(child.pid, signal.SIGKILL)
        child.wait(GONE)

        assert wait_until(lambda: not any(alive(p) for p in family), GONE), [
            p for p in family if alive(p)
        ]
        # A killed process shows as a zombie while its other threads still exit,
        # and its sockets close with the last of them: wait for that too.
        assert wait_until(lambda: not accepts(port), GONE), f"127.0.0.1:{port} still accepts"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(GONE)
        if child.stdout is not None:
            child.stdout.close()
        if pid and alive(pid):  # only after a failure above: do not leave it behind
            os.kill(pid, signal.SIGKILL)
        if directory is not None:  # the killed run could not remove it
            shutil.rmtree(directory, ignore_errors=True)
