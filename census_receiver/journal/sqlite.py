"""The embedded journal: one SQLite file, standard library ``sqlite3``, several processes.

Safe for several worker processes on one host (gunicorn or uvicorn
``--workers``): the file is in WAL mode, so readers never wait for the writer,
and every write is a short ``BEGIN IMMEDIATE`` transaction that waits up to
``timeout`` seconds for another process's to finish. Each thread has its own
connection. Not for several hosts: SQLite over a network file system does not
lock reliably; use ``PostgresJournal`` there.

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
from .base import Journal

__all__ = ["SQLiteJournal"]

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
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if str(path) == ":memory:" or not str(path):
            raise ConfigurationError(
                "SQLiteJournal needs a file path: an in-memory database is not shared "
                "between threads (use a temporary file)"
            )
        if synchronous not in _SYNCHRONOUS:
            raise ConfigurationError(
                f"synchronous must be one of {', '.join(_SYNCHRONOUS)}, not {synchronous!r}"
            )
        self.path = Path(path)
        self.timeout = timeout
        self.synchronous = synchronous
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            self._connection().execute("PRAGMA journal_mode = WAL")
            self.create_tables()
        except (sqlite3.Error, OSError) as exc:
            raise ConfigurationError(f"cannot open the journal at {self.path}: {exc}") from None

    def __repr__(self) -> str:
        return f"SQLiteJournal({str(self.path)!r}, synchronous={self.synchronous!r})"

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            # Autocommit mode: transactions are begun explicitly, as BEGIN IMMEDIATE.
            connection = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            connection.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[self.synchronous]}")
            connection.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    @contextlib.contextmanager
    def _connect(self, *, write: bool = True) -> Iterator[sqlite3.Cursor]:
        connection = self._connection()
        cursor = connection.cursor()
        # IMMEDIATE takes the write lock up front: two processes that both read,
        # then both try to write, would otherwise deadlock into "database is locked".
        # Reads take none: in WAL mode they see the last commit and never wait.
        cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
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
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()
