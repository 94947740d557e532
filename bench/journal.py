"""The journal's cost: a receiver that records every delivery against the same without.

Figures (ratios, medians of interleaved rounds):

- in process: ``receiver.handle`` with a ``SQLiteJournal`` (WAL,
  ``synchronous="normal"``: a crashed process loses nothing, a power loss may
  lose the last transactions) against the same receiver without a journal,
  deliveries per second; and with ``synchronous="full"`` (every commit waits for
  the disk), and with a ``PostgresJournal`` (a server on 127.0.0.1, its default
  durability: every commit flushed), when one can be started;
- end to end: uvicorn (one worker) serving the middleware app with and without
  a SQLite journal, 8 keep-alive connections from a client in this process,
  requests per CPU-second of the server (the client's own cost does not count).

Every delivery is distinct (its own ``sync_run_id``), as Census's are: a
journal answers a repeated one as a duplicate without running the handler. The
check, in the same run: every request answered 200 and ran its handler once.

Run on its own with ``python3 -m bench.journal``.
"""

from __future__ import annotations

import http.client
import json
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from census_receiver import WebhookReceiver
from census_receiver.journal import Journal, SQLiteJournal
from census_receiver.testing import DOCUMENTED_EXAMPLES, sign

from .apps import PATH, SECRET, Calls, census_receiver_for
from .harness import Budget, Figure, Row, check_counts, make_row, measure, run_alone
from .serve import Server

__all__ = ["FIGURES", "open_journal", "run"]

GROUP = "journal"
BUDGET = Budget(rounds=15, seconds=20.0)
CONNECTIONS = 8

FIGURES = [
    Figure(
        "journal: handle() with SQLiteJournal (normal) / without, deliveries/s",
        "sqlite-normal",
        "no-journal",
        "rate",
    ),
    Figure(
        "journal: handle() with SQLiteJournal (full) / without, deliveries/s",
        "sqlite-full",
        "no-journal",
        "rate",
    ),
    Figure(
        "journal: handle() with PostgresJournal / without, deliveries/s",
        "postgres",
        "no-journal",
        "rate",
    ),
    Figure(
        "journal end to end (uvicorn, 8 connections): SQLite (normal) / without, "
        "req per server CPU-s",
        "e2e-sqlite",
        "e2e-no-journal",
        "rate",
        aim=0.7,
    ),
    Figure(
        "journal end to end (uvicorn, 8 connections): SQLite (normal, on the event loop) "
        "/ without, req per server CPU-s",
        "e2e-sqlite-loop",
        "e2e-no-journal",
        "rate",
        aim=0.7,
    ),
]


def open_journal(where: str) -> Journal:
    """A journal on a SQLite path (``loop:PATH``: on the event loop) or a ``postgresql://`` URL."""
    if where.startswith("postgresql://"):
        from census_receiver.journal import PostgresJournal

        return PostgresJournal(where)
    if where.startswith("loop:"):
        return SQLiteJournal(where.removeprefix("loop:"), on_event_loop=True)
    return SQLiteJournal(where)


def deliveries(start: int = 0) -> Iterator[tuple[bytes, dict[str, str]]]:
    """Distinct signed ``sync.failed`` deliveries, one ``sync_run_id`` each, for ever."""
    template = dict(DOCUMENTED_EXAMPLES[5])
    run = start
    while True:
        run += 1
        body = json.dumps({**template, "sync_run_id": run}).encode()
        yield body, {"Content-Type": "application/json", "X-Signature": sign(body, SECRET)}


def _handling(receiver: WebhookReceiver, calls: Calls, start: int) -> Any:
    pool = deliveries(start)

    def batch(n: int) -> None:
        # Signing is part of the pool, not of what is timed: taken ahead of the clock.
        taken = [next(pool) for _ in range(n)]
        before = calls.n
        ok = 0
        for body, headers in taken:
            ok += receiver.handle(body, headers).status == 200
        check_counts(str(receiver), n, ok, calls.n - before)

    return batch


def _postgres() -> Any:
    """A throwaway PostgreSQL server, or ``None`` where none can be had."""
    try:
        from tests.postgres_server import PostgresServer

        server = PostgresServer()
        server.start()
        return server
    except Exception as error:  # any reason: the rows say the server was missing
        print(f"journal: no PostgreSQL server ({error}); its row is left out", file=sys.stderr)
        return None


def _in_process(budget: Budget, tmp: Path) -> dict[str, list[float]]:
    contenders: dict[str, Any] = {}
    journals: list[Journal] = []
    plain_calls = Calls()
    contenders["no-journal"] = _handling(
        census_receiver_for(plain_calls, sync=True), plain_calls, 0
    )
    for name, synchronous in (("sqlite-normal", "normal"), ("sqlite-full", "full")):
        journal: Journal = SQLiteJournal(tmp / f"{name}.db", synchronous=synchronous)
        journals.append(journal)
        calls = Calls()
        contenders[name] = _handling(
            census_receiver_for(calls, sync=True, journal=journal), calls, 0
        )
    server = _postgres()
    try:
        if server is not None:
            from census_receiver.journal import PostgresJournal

            journal = PostgresJournal(server.conninfo)
            journals.append(journal)
            calls = Calls()
            contenders["postgres"] = _handling(
                census_receiver_for(calls, sync=True, journal=journal), calls, 0
            )
        return measure(contenders, _in_process_budget(budget))
    finally:
        for journal in journals:
            journal.close()
        if server is not None:
            server.close()


def _in_process_budget(budget: Budget) -> Budget:
    # Batches of a tenth of a second: a journal write is a few hundred microseconds.
    if budget.quick:
        return budget
    return Budget(batch_seconds=0.1, rounds=budget.rounds, seconds=budget.seconds)


def _load(server: Server, pool: Iterator[tuple[bytes, dict[str, str]]], count: int) -> float:
    """Send ``count`` distinct deliveries over 8 connections; the server's CPU s per request."""
    work = [next(pool) for _ in range(count)]
    lock = threading.Lock()
    statuses: list[int] = []
    before = server.count()

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            while True:
                with lock:
                    if not work:
                        return
                    body, headers = work.pop()
                connection.request("POST", PATH, body=body, headers=headers)
                answer = connection.getresponse()
                answer.read()
                with lock:
                    statuses.append(answer.status)
        finally:
            connection.close()

    cpu = server.cpu_seconds()
    threads = [threading.Thread(target=client) for _ in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu = server.cpu_seconds() - cpu
    check_counts(server.app, count, statuses.count(200), server.count() - before)
    return cpu / count


def _end_to_end(budget: Budget, tmp: Path) -> dict[str, list[float]]:
    count = 50 if budget.quick else 2000
    rounds = 1 if budget.quick else max(3, budget.rounds // 2)
    pool = deliveries(10_000_000)
    journals = {"e2e-sqlite": str(tmp / "e2e.db"), "e2e-sqlite-loop": f"loop:{tmp / 'loop.db'}"}
    servers = {"e2e-no-journal": Server("middleware")}
    try:
        for name, where in journals.items():
            servers[name] = Server("middleware-journal", env={"CENSUS_BENCH_JOURNAL": where})
        for server in servers.values():
            _load(server, pool, count // 4)  # warm up
        samples: dict[str, list[float]] = {name: [] for name in servers}
        order = list(servers.items())
        for r in range(rounds):
            for name, server in order[r % len(order) :] + order[: r % len(order)]:
                samples[name].append(_load(server, pool, count))
    finally:
        for server in servers.values():
            server.stop()
    return samples


def run(budget: Budget) -> list[Row]:
    """Measure the journal's figures.

    Raises:
        CorrectnessError: if a delivery is not answered 200 or its handler does not run once.
    """
    with tempfile.TemporaryDirectory(prefix="census-bench-journal-") as tmp:
        samples = _in_process(budget, Path(tmp))
        samples.update(_end_to_end(budget, Path(tmp)))
    return [
        make_row(GROUP, figure, samples, quick=budget.quick)
        for figure in FIGURES
        if figure.subject in samples
    ]


def main() -> int:
    """Run this group alone and print its table."""
    return run_alone(run, BUDGET)


if __name__ == "__main__":
    sys.exit(main())
