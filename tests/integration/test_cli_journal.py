"""census-receiver work as separate processes on one SQLite journal, and serve's journal.

Workers run as ``python -m census_receiver work --app hooks:receiver`` over a
module written to tmp_path, whose handler can be held (it waits for a file) so
a test can stop or kill a worker in the middle of it. Every wait is bounded by
``WAIT``; every process started is stopped or killed before the test ends.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from census_receiver import WebhookReceiver
from census_receiver.cli import EXIT_OK, main
from census_receiver.journal import SQLiteJournal
from census_receiver.testing import make_delivery
from tests.cli_tools import CLI, ROOT, WAIT, Serve, cli_env
from tests.cli_tools import no_secret_in_env as no_secret_in_env
from tests.conftest import SECRET

APP = """\
import os
import time
from pathlib import Path

from census_receiver import WebhookReceiver
from census_receiver.journal import SQLiteJournal

HERE = Path(__file__).parent
# A lease as long as the test needs: a worker killed mid-handler leaves its delivery
# to another once it expires, and a handler held longer is run again by another.
journal = SQLiteJournal(HERE / "journal.db", lease={lease})
receiver = WebhookReceiver({secret!r}, journal=journal, acknowledge="on_capture")


@receiver.on("sync.failed", "sync.completed")
def note(event):
    with open(HERE / "started.txt", "a") as out:
        out.write(f"{{os.getpid()}}\\n")
    deadline = time.monotonic() + {wait}
    while not (HERE / "release").exists():  # held until the test says
        if time.monotonic() > deadline:
            raise TimeoutError("the test never released the handler")
        time.sleep(0.02)
    with open(HERE / "handled.txt", "a") as out:
        out.write(f"{{event.sync_run_id}}\\n")
"""


class Folder:
    """tmp_path with the app module, its journal, and the files its handler writes."""

    def __init__(self, path: Path, lease: float) -> None:
        self.path = path
        (path / "hooks.py").write_text(APP.format(secret=SECRET, wait=WAIT, lease=lease))
        self.journal = SQLiteJournal(path / "journal.db")
        self.receiver = WebhookReceiver(SECRET, journal=self.journal, acknowledge="on_capture")
        self.workers: list[Worker] = []

    def capture(self, event: str = "sync.failed", **fields: Any) -> int:
        delivery = make_delivery(event, secret=SECRET, **fields)
        assert self.receiver.handle(delivery.body, delivery.headers).reason == "accepted"
        return self.journal.deliveries(limit=1)[0].id

    def lines(self, name: str) -> list[str]:
        path = self.path / name
        return path.read_text().splitlines() if path.exists() else []

    def release(self) -> None:
        (self.path / "release").touch()

    def worker(self, *argv: str) -> Worker:
        """``work`` over the app in a subprocess, once it is ready (its signals set)."""
        worker = Worker(self.path, *argv)
        self.workers.append(worker)
        return worker


class Worker:
    """``census-receiver work`` in a subprocess, its output collected by a thread."""

    def __init__(self, folder: Path, *argv: str) -> None:
        self.process = subprocess.Popen(
            [*CLI, "work", "--app", "hooks:receiver", "--app-dir", str(folder), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=cli_env(),
            cwd=ROOT,
        )
        self.pid = self.process.pid
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        # Its first line comes once SIGTERM and SIGINT are its own to handle.
        wait_until(lambda: bool(self.output) or not self.reader.is_alive(), "work to start")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.rstrip("\n"))

    def finish(self) -> tuple[int, str]:
        """Wait for it to exit: its status and everything it printed."""
        try:
            code = self.process.wait(timeout=WAIT)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=WAIT)
            self.reader.join(timeout=WAIT)
            assert self.process.stdout is not None
            self.process.stdout.close()
        return code, "\n".join(self.output)

    def stop(self) -> tuple[int, str]:
        """SIGTERM, then its exit status and everything it printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.finish()

    def kill(self) -> None:
        self.process.kill()
        self.finish()


@pytest.fixture
def folder(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Folder]:
    """The app's folder; its journal's lease is 60 s unless parametrized (indirect)."""
    made = Folder(tmp_path, lease=getattr(request, "param", 60.0))
    yield made
    for worker in made.workers:
        if worker.process.poll() is None:
            worker.process.kill()
        if not worker.process.stdout or not worker.process.stdout.closed:
            worker.finish()
    made.receiver.close()
    made.journal.close()


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def ran(out: str) -> int:
    """How many deliveries a stopped worker ran, none failing, from its last line."""
    summary = re.search(r"stopped: ran (\d+), failed 0$", out.splitlines()[-1])
    assert summary is not None, out
    return int(summary.group(1))


@pytest.mark.parametrize("folder", [1.0], indirect=True, ids=["lease 1 s"])
def test_a_worker_killed_mid_handler_loses_nothing(folder: Folder) -> None:
    delivery_id = folder.capture()
    first = folder.worker("--poll", "0.05")
    wait_until(lambda: len(folder.lines("started.txt")) == 1, "the first worker to start")
    first.kill()
    folder.release()
    # Its lease (1 s) expires, and the second worker runs the delivery again, to the end.
    second = folder.worker("--poll", "0.05")
    wait_until(lambda: bool(folder.lines("handled.txt")), "the second worker to handle it")
    code, out = second.stop()
    assert code == EXIT_OK, out
    assert out.splitlines()[-1].endswith("stopped: ran 1, failed 0")
    assert "Traceback" not in out
    assert folder.lines("handled.txt") == ["324402082"]  # exactly once
    assert folder.lines("started.txt") == [str(first.pid), str(second.pid)]
    record = folder.journal.get(delivery_id)
    assert record is not None
    assert (record.status, record.tries) == ("handled", 2)
    assert [(a.kind, a.reason) for a in record.history] == [
        ("census", "accepted"),
        ("worker", "handled"),
    ]


def test_sigterm_mid_handler_stops_the_worker_after_that_delivery(folder: Folder) -> None:
    delivery_id = folder.capture()
    other_id = folder.capture("sync.completed")
    worker = folder.worker("--poll", "0.05")
    wait_until(lambda: len(folder.lines("started.txt")) == 1, "the worker to start")
    worker.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)  # the signal arrives while the handler still waits
    assert worker.process.poll() is None
    folder.release()
    code, out = worker.finish()
    assert code == EXIT_OK, out
    assert out.splitlines()[-1].endswith("stopped: ran 1, failed 0")
    assert "Traceback" not in out
    statuses = {r.id: r.status for r in folder.journal.deliveries()}
    assert statuses == {delivery_id: "handled", other_id: "pending"}


def test_several_workers_share_the_journal_each_delivery_handled_once(folder: Folder) -> None:
    runs = [str(run) for run in range(1000, 1030)]
    for run in runs:
        folder.capture("sync.completed", sync_run_id=int(run))
    workers = [folder.worker("--poll", "0.05") for _ in range(3)]
    # All three hold a delivery at the same time, each its own, before any finishes.
    wait_until(lambda: len(folder.lines("started.txt")) == 3, "three held deliveries")
    assert sorted(folder.lines("started.txt")) == sorted(str(w.pid) for w in workers)
    folder.release()
    wait_until(lambda: len(folder.lines("handled.txt")) >= len(runs), "every delivery")
    results = [worker.stop() for worker in workers]
    assert all(code == EXIT_OK for code, _ in results), results
    assert sorted(folder.lines("handled.txt")) == runs  # none twice, none lost
    assert sum(ran(out) for _, out in results) == len(runs)
    assert {r.status for r in folder.journal.deliveries(limit=100)} == {"handled"}


def test_work_once_runs_from_cron_and_exits(folder: Folder) -> None:
    folder.capture("sync.completed")
    folder.release()
    worker = folder.worker("--once")
    code, out = worker.finish()
    assert code == EXIT_OK, out
    assert "census delivery sync.completed " in out and "handled (200)" in out
    assert out.splitlines()[-1].endswith("stopped: ran 1, failed 0")


# -- serve's journal -------------------------------------------------------------------------


def send_to(serve: Serve, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", "sync.failed", "--url", serve.url, "--secret", SECRET]) == EXIT_OK
    capsys.readouterr()


def test_serve_journal_keeps_deliveries_in_the_file_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "census.db"
    serve = Serve("--secret", SECRET, "--journal", str(path))
    try:
        serve.wait_for(rf"^Recording deliveries in {re.escape(str(path))}$")
        serve.wait_for(rf"deliveries --journal {re.escape(str(path))}$")
        send_to(serve, capsys)
        serve.wait_for(r"verified +sync\.failed ")
    finally:
        assert serve.stop() == EXIT_OK
    assert serve.lines[-1] == "stopped"
    assert main(["deliveries", "--journal", str(path), "--json"]) == EXIT_OK
    (record,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (record["event"], record["status"]) == ("sync.failed", "handled")


def test_serve_without_journal_uses_a_temporary_one_removed_at_exit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    serve = Serve("--secret", SECRET)
    try:
        line = serve.wait_for(r"^Recording deliveries in .* \(removed at exit; ")
        path = Path(line.split(" in ", 1)[1].split(" (removed", 1)[0])
        # Without --dedup, a repeat is handled again, as before the journal: two records.
        for count in (1, 2):
            send_to(serve, capsys)
            serve.wait_for(r"verified +sync\.failed .* -> 200$", count=count)
        assert main(["deliveries", "--journal", str(path), "--json"]) == EXIT_OK
        records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [r["status"] for r in records] == ["handled", "handled"]
    finally:
        assert serve.stop() == EXIT_OK
    assert not path.parent.exists()
