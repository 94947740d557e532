"""The embedded journal: one SQLite file, standard library ``sqlite3``, several processes.

Safe for several worker processes on one host (gunicorn or uvicorn
``--workers``): the file is in WAL mode, so readers never wait for the writer,
and every write is a short ``BEGIN IMMEDIATE`` transaction that waits up to
``timeout`` seconds for another process's to finish. In one process, writes go
through one connection, one at a time (a lock, so threads queue instead of
polling SQLite's file lock); each thread reads on a connection of its own.
Not for several hosts: SQLite over a network file system does not lock
reliably; use ``PostgresJournal`` there.

Durability (``synchronous``): ``"normal"`` (the default) commits without
waiting for the disk in WAL mode: a power loss may lose the last transactions,
a crashed process loses nothing. ``"full"`` waits for the disk on every
commit: nothing acknowledged is lost even on power loss, at a cost per delivery
that depends on the disk.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ConfigurationError
from .base import Journal, JournalUnavailable

__all__ = ["IDLE_READERS", "SQLiteJournal"]

#: Read connections kept open between reads; more are opened under load, then closed.
IDLE_READERS = 4

_SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL", "off": "OFF"}


class SQLiteJournal(Journal):
    """A journal in a SQLite file, shared by the processes of one host.

    Args:
        path: the database file (created with its tables if missing). ``":memory:"``
            is refused: every thread would get a journal of its own.
        timeout: seconds a write waits for another process's transaction before
            the delivery is answered 503 (Census retries).
        synchronous: ``"normal"`` or ``"full"`` (see the module docstring), or
            ``"off"`` for tests and throwaway journals.
        on_event_loop: under ``handle_async`` (ASGI), make the journal's calls
            on the event loop itself instead of in a worker thread: several
            times cheaper per delivery, but while a call waits (a slow disk,
            another process's transaction) the whole server waits with it. For
            one process on a local disk.
        **options: the ``Journal`` settings: ``lease``, ``retention``,
            ``max_tries``, ``backoff``, ``clock``.

    Raises:
        ConfigurationError: for a bad option, or a file that cannot be opened.
    """

    errors: ClassVar[tuple[type[Exception], ...]] = (sqlite3.OperationalError,)
    column_types: ClassVar[dict[str, str]] = {
        "id": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "bigint": "INTEGER",
        "bytes": "BLOB",
        "time": "REAL",
    }

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 5.0,
        synchronous: str = "normal",
        on_event_loop: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.blocking = not on_event_loop
        if str(path) == ":memory:" or not str(path):
            raise ConfigurationError(
                "SQLiteJournal needs a file path: an in-memory database is not shared "
                "between threads (use a temporary file)"
            )
        text = str(path)
        if text.startswith(("postgres://", "postgresql://")) or " dbname=" in f" {text}":
            raise ConfigurationError(
                "SQLiteJournal takes a file path, and this looks like a PostgreSQL "
                "connection string: use PostgresJournal(conninfo) for PostgreSQL"
            )
        if synchronous not in _SYNCHRONOUS:
            raise ConfigurationError(
                f"synchronous must be one of {', '.join(_SYNCHRONOUS)}, not {synchronous!r}"
            )
        self.path = Path(path)
        self.timeout = timeout
        self.synchronous = synchronous
        self._connections: list[sqlite3.Connection] = []
        #: Read connections not in use, lent to the next read (at most IDLE_READERS).
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        try:
            with self._reader() as connection:
                connection.execute("PRAGMA journal_mode = WAL")
            self.create_tables()
        except (sqlite3.Error, OSError) as exc:
            raise ConfigurationError(f"cannot open the journal at {self.path}: {exc}") from None

    def __repr__(self) -> str:
        return f"SQLiteJournal({str(self.path)!r}, synchronous={self.synchronous!r})"

    def _open(self) -> sqlite3.Connection:
        # Autocommit mode: transactions are begun explicitly, as BEGIN IMMEDIATE.
        connection = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        connection.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[self.synchronous]}")
        connection.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        with self._lock:
            self._connections.append(connection)
        return connection

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """A read connection, lent for one transaction: an idle one, or a new one.

        Lent rather than kept per thread: servers that start a thread per request
        (and a Prometheus scrape) would otherwise leave a connection open each.
        """
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        if connection is None:
            connection = self._open()
        try:
            yield connection
        finally:
            with self._lock:
                keep = len(self._idle) < IDLE_READERS and connection in self._connections
                if keep:
                    self._idle.append(connection)
                elif connection in self._connections:
                    self._connections.remove(connection)
            if not keep:
                connection.close()

    @contextlib.contextmanager
    def _connect(self, *, write: bool = True) -> Iterator[sqlite3.Cursor]:
        if not write:
            # Reads take no lock: in WAL mode they see the last commit and never wait.
            with self._reader() as connection, self._transaction(connection, "BEGIN") as cursor:
                yield cursor
            return
        if not self._write_lock.acquire(timeout=self.timeout):
            raise sqlite3.OperationalError("another thread held the journal for too long")
        try:
            if self._writer is None:
                self._writer = self._open()
            # IMMEDIATE takes the file's write lock up front: two processes that both
            # read, then both write, would otherwise fail with "database is locked".
            with self._transaction(self._writer, "BEGIN IMMEDIATE") as cursor:
                yield cursor
        finally:
            self._write_lock.release()

    @staticmethod
    @contextlib.contextmanager
    def _transaction(connection: sqlite3.Connection, begin: str) -> Iterator[sqlite3.Cursor]:
        cursor = connection.cursor()
        cursor.execute(begin)
        try:
            yield cursor
            cursor.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.rollback()
            raise
        finally:
            cursor.close()

    def close(self) -> None:
        """Close every connection this journal opened (in any thread)."""
        with contextlib.suppress(JournalUnavailable):
            self.flush()  # the rejection notes not written yet
        with self._lock:
            connections, self._connections, self._idle = self._connections, [], []
        for connection in connections:
            connection.close()
        self._writer = None
