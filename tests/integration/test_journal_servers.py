"""The journal under real servers with several worker processes, and real workers.

tests/integration/journal_app.py is served by gunicorn (sync workers) or
``uvicorn --workers``, each worker on the same journal (a SQLite file, or a
PostgreSQL database); its handler appends a line per call to a file, so calls
are counted across processes. Shown here:

- every event, delivered twice at once to different workers, handled once;
- the outage story: a handler failing for longer than Census's whole retry
  schedule (``census-receiver send --retry`` on a short scale), then fixed:
  ``census-receiver replay --failed`` handles every lost event once, and a late
  Census retry is answered ``duplicate``;
- acknowledge on capture: 500 deliveries answered ``accepted``, drained by two
  ``census-receiver work`` processes, one SIGKILLed in the middle of a handler:
  every event handled exactly once, none left pending.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from census_receiver.journal import Journal, SQLiteJournal
from census_receiver.testing import Delivery, make_delivery

from ..conftest import SECRET
from ..postgres_server import PostgresServer
from .multiworker import ROOT, running

APP = "tests.integration.journal_app"


@pytest.fixture(params=["sqlite", "postgres"])
def journal_at(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where the processes' shared journal lives: a SQLite path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield str(tmp_path / "journal.db")
        return
    import psycopg

    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"journal_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.conninfo, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    parts = psycopg.conninfo.conninfo_to_dict(server.conninfo)
    # As a URL: the processes tell it from a SQLite path by its scheme.
    yield f"postgresql://{parts['user']}@{parts['host']}:{parts['port']}/{name}"


def open_journal(where: str) -> Journal:
    if where.startswith("postgresql://"):
        from census_receiver.journal import PostgresJournal

        return PostgresJournal(where)
    return SQLiteJournal(where)


def environment(where: str, calls: Path, **more: str) -> dict[str, str]:
    return {
        "CENSUS_WEBHOOK_SECRET": SECRET,
        "CENSUS_TEST_JOURNAL": where,
        "CENSUS_TEST_CALLS": str(calls),
        **more,
    }


def calls_of(path: Path, kind: str = "done") -> Counter[int]:
    """How many times each sync run's handler reached ``kind`` (start or done)."""
    if not path.exists():
        return Counter()
    return Counter(
        int(line.split()[1]) for line in path.read_text().splitlines() if line.startswith(kind)
    )


@contextmanager
def serving(
    server: str, journal_at: str, calls: Path, tmp_path: Path, *, connections: int
) -> Iterator[tuple[httpx.Client, ThreadPoolExecutor]]:
    """The journal app under ``server`` with 2 workers, a client and as many threads."""
    target = f"{APP}:{'wsgi_app' if server == 'gunicorn' else 'asgi_app'}"
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=0)
    with (
        running(server, target, env=environment(journal_at, calls), log=tmp_path / "log") as base,
        httpx.Client(
            base_url=base, timeout=15, limits=limits, headers={"Connection": "close"}
        ) as client,
        ThreadPoolExecutor(connections) as pool,
    ):
        yield client, pool


def post_until_acknowledged(client: httpx.Client, d: Delivery, pair: threading.Barrier) -> str:
    """POST like Census: retry on 409 and 503 (after 50 ms, not 4 s) until a 2xx."""
    pair.wait(10)
    for _ in range(200):
        answer = client.post("/webhooks/census", content=d.body, headers=d.headers)
        if answer.is_success:
            return str(answer.json()["status"])
        assert answer.status_code in (409, 503), answer.text
        time.sleep(0.05)
    raise AssertionError("never acknowledged")


@pytest.mark.parametrize("server", ["gunicorn", "uvicorn"])
def test_each_event_delivered_twice_to_workers_on_one_journal_is_handled_once(
    server: str, journal_at: str, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.txt"
    events = 150
    deliveries = [make_delivery("sync.failed", secret=SECRET, sync_run_id=n) for n in range(events)]
    pairs = [threading.Barrier(2) for _ in deliveries]
    with serving(server, journal_at, calls, tmp_path, connections=16) as (client, pool):
        jobs = [
            pool.submit(post_until_acknowledged, client, d, pair)
            for d, pair in zip(deliveries, pairs, strict=True)
            for _ in range(2)
        ]
        answers = Counter(job.result(60) for job in jobs)
    assert answers["ok"] == events and answers["duplicate"] == events, answers
    assert calls_of(calls) == Counter(range(events))  # each exactly once
    journal = open_journal(journal_at)
    try:
        records = journal.deliveries(limit=1000)
        assert len(records) == events and {r.status for r in records} == {"handled"}
        assert all(r.attempts >= 2 for r in records)
    finally:
        journal.close()


def census_receiver(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "census_receiver", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_outage_longer_than_census_retries_then_replay_handles_each_event_once(
    journal_at: str, tmp_path: Path
) -> None:
    calls, down = tmp_path / "calls.txt", tmp_path / "downstream-is-down"
    down.touch()
    env = environment(journal_at, calls, CENSUS_TEST_FAIL_WHILE=str(down))
    runs = range(1, 6)
    with running("uvicorn", f"{APP}:asgi_app", env=env, log=tmp_path / "log") as base:
        url = f"{base}/webhooks/census"

        def census(run: int) -> subprocess.CompletedProcess[str]:
            # Census's schedule (4, 8, 16, 32, 64 s) at 1/200 of its length.
            return census_receiver(
                *("send", "sync.failed", "--url", url, "--set", f"sync_run_id={run}"),
                *("--retry", "--retry-scale", "0.005"),
                env=env,
            )

        with ThreadPoolExecutor(len(runs)) as pool:
            sent = list(pool.map(census, runs))
        for result in sent:  # Census gave up on each: six attempts, all 500
            assert result.returncode == 1, result.stdout + result.stderr
            assert result.stdout.count("500 Internal Server Error") == 6, result.stdout
        assert calls_of(calls, "start") == Counter(dict.fromkeys(runs, 6))
        assert calls_of(calls) == Counter()
        down.unlink()  # the downstream service is back
        replayed = census_receiver("replay", "--app", f"{APP}:receiver", "--failed", env=env)
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert calls_of(calls) == Counter(runs)
        # A late retry (Census's, or a resend) finds the delivery done.
        late = census(1)
        assert late.returncode == 0 and '"duplicate"' in late.stdout, late.stdout
    assert calls_of(calls) == Counter(runs)
    journal = open_journal(journal_at)
    try:
        records = journal.deliveries()
        assert {r.status for r in records} == {"handled"} and len(records) == len(runs)
        assert all(r.attempts == 6 for r in records if r.sync_run_id != 1)
    finally:
        journal.close()


def test_on_capture_500_deliveries_two_workers_one_killed_mid_handler_each_once(
    journal_at: str, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.txt"
    env = environment(
        journal_at, calls, CENSUS_TEST_ACKNOWLEDGE="on_capture", CENSUS_TEST_LEASE="2"
    )
    events = 500
    deliveries = [make_delivery("sync.failed", secret=SECRET, sync_run_id=n) for n in range(events)]
    with (
        running("uvicorn", f"{APP}:asgi_app", env=env, log=tmp_path / "log") as base,
        httpx.Client(base_url=base, timeout=15) as client,
        ThreadPoolExecutor(16) as pool,
    ):
        answers = list(
            pool.map(
                lambda d: client.post("/webhooks/census", content=d.body, headers=d.headers),
                deliveries,
            )
        )
    assert {(a.status_code, a.json()["status"]) for a in answers} == {(200, "accepted")}
    assert calls_of(calls, "start") == Counter()  # nothing ran in the requests
    journal = open_journal(journal_at)
    try:
        first = journal.deliveries(limit=events)[-1]  # the oldest: the first worker takes it
        assert first.sync_run_id is not None
        work = ("work", "--app", f"{APP}:receiver", "--poll", "0.05", "--prune-every", "0")
        base_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
        doomed = subprocess.Popen(
            [sys.executable, "-m", "census_receiver", *work],
            cwd=ROOT,
            env={**base_env, "CENSUS_TEST_HOLD_RUN": str(first.sync_run_id)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        survivor = None
        try:
            deadline = time.monotonic() + 30
            while calls_of(calls, "start")[first.sync_run_id] == 0:  # now mid-handler
                assert time.monotonic() < deadline and doomed.poll() is None
                time.sleep(0.02)
            survivor = subprocess.Popen(
                [sys.executable, "-m", "census_receiver", *work],
                cwd=ROOT,
                env=base_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.2)  # both drain
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(10)
            deadline = time.monotonic() + 60
            while sum(journal.counts().get(s, 0) for s in ("pending", "running")):
                assert time.monotonic() < deadline, journal.counts()
                assert survivor.poll() is None
                time.sleep(0.1)
        finally:
            for process in (doomed, survivor):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(10)
        done = calls_of(calls)
        assert done == Counter(range(events)), [run for run, n in done.items() if n != 1]
        assert journal.counts() == {"handled": events}
    finally:
        journal.close()


#: A successful run's events, in Census's order.
LIFECYCLE: list[tuple[str, dict[str, Any]]] = [
    ("sync.triggered", {}),
    ("sync.started", {}),
    ("sync.completed", {"status": "ok"}),
    ("sync.success", {}),
]


@pytest.mark.parametrize("server", ["gunicorn", "uvicorn"])
def test_a_runs_events_in_every_order_to_two_workers_make_one_run_finished_once(
    server: str, journal_at: str, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.txt"
    orders = list(itertools.permutations(range(len(LIFECYCLE))))
    with serving(server, journal_at, calls, tmp_path, connections=8) as (client, pool):

        def deliver_run(run: int, order: tuple[int, ...]) -> None:
            for index in order:  # each event twice at once: two workers race for it
                name, fields = LIFECYCLE[index]
                d = make_delivery(name, secret=SECRET, sync_run_id=run, **fields)
                pair = threading.Barrier(2)
                copies = [pool.submit(post_until_acknowledged, client, d, pair) for _ in range(2)]
                assert sorted(c.result(30) for c in copies) in (
                    ["duplicate", "ok"],
                    ["duplicate", "ignored"],
                    ["ignored", "ok"],
                )

        with ThreadPoolExecutor(6) as runs:
            list(runs.map(deliver_run, range(1000, 1000 + len(orders)), orders))
    finished = Counter(
        (int(line.split()[1]), line.split()[3])
        for line in calls.read_text().splitlines()
        if line.startswith("finished")
    )
    assert finished == Counter((1000 + i, "succeeded") for i in range(len(orders)))
    journal = open_journal(journal_at)
    try:
        for i in range(len(orders)):
            run = journal.run(1000 + i)
            assert run is not None and (run.status, run.missing) == ("succeeded", ())
            assert run.received == tuple(name for name, _ in LIFECYCLE)
            assert run.queued_seconds is not None and run.duration_seconds is not None
            assert run.started_at is not None and run.finished_at is not None
            # Receive times: a finish that arrived before its start counts as no time.
            between = (run.finished_at - run.started_at).total_seconds()
            assert run.duration_seconds == pytest.approx(max(0.0, between), abs=1e-5)
    finally:
        journal.close()
