"""The journal on PostgreSQL, for receivers and workers on several hosts (psycopg 3).

Same semantics as ``SQLiteJournal``: the statements of ``census_receiver.journal.base``
run in PostgreSQL's default READ COMMITTED isolation, where every claim is one
atomic statement (``INSERT ... ON CONFLICT DO NOTHING``, or an ``UPDATE`` whose
conditions PostgreSQL checks again on the row it locks), and workers take due
deliveries with ``FOR UPDATE SKIP LOCKED`` so that two never take the same one.
Connections come from a ``psycopg_pool.ConnectionPool``.

A statement that outlives its client (the client timed out, the server went
on and committed) cannot hold a delivery for ever: a claim is a lease, and a
Census retry or a worker takes it over once ``lease`` has passed.

Needs the ``postgres`` extra: ``pip install 'census-receiver[postgres]'``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

from ..errors import ConfigurationError, missing_extra
from .base import Journal, JournalUnavailable

try:
    import psycopg
    import psycopg_pool
except ModuleNotFoundError as exc:  # pragma: no cover - depends on what is installed
    raise missing_extra(
        exc, "PostgresJournal needs psycopg 3 and psycopg-pool", "postgres"
    ) from None

__all__ = ["PostgresJournal"]


class PostgresJournal(Journal):
    """A journal in PostgreSQL, shared by every process and host that uses it.

    Args:
        conninfo: a libpq connection string or URL (``postgresql://user@host/db``).
        min_size: connections the pool keeps open.
        max_size: connections the pool opens at most (each worker thread that
            writes holds one for a transaction's length).
        timeout: seconds to wait for a pooled connection, and for each statement
            (``statement_timeout``), before the delivery is answered 503.
        **options: the ``Journal`` settings: ``lease``, ``retention``,
            ``max_tries``, ``backoff``, ``clock``.

    Raises:
        ConfigurationError: when the database cannot be reached or set up (the
            message names the error, never the password).
    """

    errors: ClassVar[tuple[type[Exception], ...]] = (psycopg.Error, psycopg_pool.PoolTimeout)
    column_types: ClassVar[dict[str, str]] = {
        "id": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        "bigint": "BIGINT",
        "bytes": "BYTEA",
        "time": "DOUBLE PRECISION",
    }
    take_due_lock = " FOR UPDATE SKIP LOCKED"
    # statement_timeout bounds what the server does, not a network that stops
    # answering: under a deadline, handle() waits for the claim from another thread.
    bounded = False
    # Workers starting at once would race on CREATE TABLE IF NOT EXISTS, which is
    # not atomic in PostgreSQL (a unique violation in pg_type): one at a time.
    schema_lock = "SELECT pg_advisory_xact_lock(1667591795)"

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 5.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.timeout = timeout
        self._pool = psycopg_pool.ConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            kwargs={"options": f"-c statement_timeout={int(timeout * 1000)}"},
            open=False,
            name="census-journal",
        )
        try:
            self._pool.open(wait=True, timeout=timeout)
            self.create_tables()
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            self._pool.close()
            raise ConfigurationError(
                f"cannot open the journal on PostgreSQL: {type(exc).__name__}"
            ) from None

    def __repr__(self) -> str:
        return f"PostgresJournal(pool max_size={self._pool.max_size})"

    def _sql(self, statement: str) -> str:
        # Our statements hold no literal question marks: each one is a parameter.
        return statement.replace("?", "%s")

    @contextlib.contextmanager
    def _connect(self, *, write: bool = True) -> Iterator[Any]:
        with (
            self._pool.connection() as connection,
            connection.transaction(),
            connection.cursor() as cursor,
        ):
            yield cursor

    def close(self) -> None:
        """Close the connection pool."""
        with contextlib.suppress(JournalUnavailable):
            self.flush()  # the rejection notes not written yet
        self._pool.close()
