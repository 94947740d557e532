"""census-receiver runs, in-process, over an app module in tmp_path with a clock of the test's.

Each test writes a small module (``census_app.py``) whose journal reads its
clock from ``now.txt``, sends Census's events through a receiver of its own on
the same journal file and the same clock, and runs the command with ``--app
census_app:receiver --app-dir TMP``, reading ``capsys``. Time passes by writing
``now.txt``: no test sleeps.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from census_receiver import WebhookReceiver
from census_receiver.cli import EXIT_INPUT, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, main
from census_receiver.cli.runs import duration_text, parse_duration
from census_receiver.journal import JournalUnavailable, SQLiteJournal
from census_receiver.testing import make_delivery

from .cli_tools import no_secret_in_env as no_secret_in_env
from .conftest import SECRET

#: 2026-05-01 12:00:00 UTC, as epoch seconds.
T0 = 1_777_636_800.0

APP = """\
from pathlib import Path

from census_receiver import WebhookReceiver
from census_receiver.journal import SQLiteJournal

HERE = Path(__file__).parent


def now():
    return float((HERE / "now.txt").read_text())


journal = SQLiteJournal(HERE / "journal.db", synchronous="off", clock=now)
receiver = WebhookReceiver({secret!r}, journal=journal)
without_journal = WebhookReceiver({secret!r})
"""


class App:
    """An app module in a folder, its journal, and a receiver of the test's own on it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "census_app.py").write_text(APP.format(secret=SECRET))
        self.at(T0)
        self.journal = SQLiteJournal(folder / "journal.db", synchronous="off", clock=self.clock)
        self.receiver = WebhookReceiver(SECRET, journal=self.journal)

    def clock(self) -> float:
        return self.now

    def at(self, seconds: float) -> None:
        """Set the time of the test's journal and of the app's."""
        self.now = seconds
        (self.folder / "now.txt").write_text(repr(seconds))

    def later(self, seconds: float) -> None:
        self.at(self.now + seconds)

    def send(self, event: str, run: int, **fields: Any) -> None:
        """Census sends ``event`` of sync run ``run``; the receiver handles it."""
        delivery = make_delivery(event, secret=SECRET, sync_run_id=run, **fields)
        assert self.receiver.handle(delivery.body, delivery.headers).ok

    def run(self, *argv: str, attr: str = "receiver") -> int:
        return main(["runs", "--app", f"census_app:{attr}", "--app-dir", str(self.folder), *argv])


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    """The test's app; cleans up what the command loaded."""
    saved_path = list(sys.path)
    sys.modules.pop("census_app", None)
    made = App(tmp_path)
    yield made
    made.receiver.close()
    made.journal.close()
    sys.path[:] = saved_path
    loaded = sys.modules.pop("census_app", None)
    if loaded is not None:
        loaded.journal.close()


def lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().out.splitlines()


def a_finished_run(app: App, run: int = 1001, **fields: Any) -> None:
    """Triggered at the current time, queued 31 s, ran 2 min 5 s, succeeded."""
    app.send("sync.triggered", run, **fields)
    app.later(31)
    app.send("sync.started", run, **fields)
    app.later(125)
    app.send("sync.completed", run, status="ok", **fields)
    app.send("sync.success", run, **fields)


# -- listing runs ----------------------------------------------------------------------------


def test_runs_lists_newest_first_with_utc_times_queue_and_duration(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    a_finished_run(app, 1001)
    app.at(T0 + 3600)
    app.send("sync.triggered", 1002, sync_id=42)
    app.later(2.5)
    app.send("sync.started", 1002, sync_id=42)
    assert app.run() == EXIT_OK
    out = lines(capsys)
    assert out[0].split() == [
        "RUN", "SYNC", "STATUS", "TRIGGERED", "(UTC)", "STARTED", "(UTC)", "FINISHED", "(UTC)",
        "QUEUED", "DURATION", "ALERTS", "MISSING",
    ]  # fmt: skip
    assert out[1].split() == [
        "1002", "42", "started", "2026-05-01", "13:00:00", "2026-05-01", "13:00:02", "-",
        "2.5", "s", "-", "0", "-",
    ]  # fmt: skip
    assert out[2].split() == [
        "1001", "3167956", "succeeded", "2026-05-01", "12:00:00", "2026-05-01", "12:00:31",
        "2026-05-01", "12:02:36", "31", "s", "2", "min", "5", "s", "0", "-",
    ]  # fmt: skip
    assert len(out) == 3


def test_runs_shows_the_alert_count_and_the_missing_events(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    app.send("sync.failed", 1001)
    app.send("sync.alert.raised", 1001)
    assert app.run() == EXIT_OK
    row = lines(capsys)[1].split()
    assert row[2:4] == ["failed", "-"]
    assert row[-2:] == ["1", "triggered,started,completed"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["--sync", "42"], [1002]),
        (["--status", "succeeded"], [1001]),
        (["--status", "started"], [1002]),
        (["--sync", "42", "--status", "succeeded"], []),
    ],
)
def test_runs_filters_by_sync_and_status(
    app: App, filters: list[str], expected: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    a_finished_run(app, 1001)
    app.send("sync.started", 1002, sync_id=42)
    assert app.run(*filters, "--json") == EXIT_OK
    assert [json.loads(line)["sync_run_id"] for line in lines(capsys)] == expected


@pytest.mark.parametrize(
    ("filters", "said"),
    [([], "no runs recorded."), (["--status", "failed"], "no runs recorded that match.")],
)
def test_runs_says_when_there_is_nothing_to_list(
    app: App, filters: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert app.run(*filters) == EXIT_OK
    assert lines(capsys) == [said]


def test_runs_limit_says_how_to_see_more(app: App, capsys: pytest.CaptureFixture[str]) -> None:
    for run in (1, 2, 3):
        app.later(1)
        app.send("sync.triggered", run)
    assert app.run("--limit", "2") == EXIT_OK
    out = lines(capsys)
    assert [row.split()[0] for row in out[1:3]] == ["3", "2"]
    assert out[3] == "(the newest 2: --limit N shows more)"


def test_runs_json_has_every_field_one_object_a_line(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    a_finished_run(app, 1001)
    app.send("sync.alert.resolved", 1001)
    assert app.run("--json") == EXIT_OK
    [line] = lines(capsys)
    record = json.loads(line)
    assert set(record) == {
        "sync_run_id", "sync_id", "workspace_id", "status", "finished", "triggered_at",
        "started_at", "finished_at", "completed_status", "queued_seconds", "duration_seconds",
        "alerts", "missing", "received",
    }  # fmt: skip
    assert record["triggered_at"] == "2026-05-01T12:00:00+00:00"
    assert (record["queued_seconds"], record["duration_seconds"]) == (31.0, 125.0)
    assert (record["status"], record["finished"], record["missing"]) == ("succeeded", True, [])
    assert record["alerts"] == [
        {
            "alert_instance_id": 626248,
            "alert_type": "FailureAlertConfiguration",
            "kind": "resolved",
            "at": "2026-05-01T12:02:36+00:00",
            "message": "Sync Recovered",
        }
    ]
    assert datetime.fromisoformat(record["finished_at"]).utcoffset() == timedelta(0)


# -- --overdue -----------------------------------------------------------------------------


def some_open_runs(app: App) -> None:
    """Run 1 open for 3 h (started), run 2 for 90 min (triggered), run 3 finished."""
    app.send("sync.triggered", 1)
    app.later(60)
    app.send("sync.started", 1)
    app.later(90 * 60)
    app.send("sync.triggered", 2, sync_id=42)
    app.send("sync.failed", 3)
    app.later(90 * 60)


@pytest.mark.parametrize("after", ["2h", "120m", "7200", "7200s", "2H", " 2 h ", "0.0834d"])
def test_overdue_lists_only_the_runs_open_for_longer(
    app: App, after: str, capsys: pytest.CaptureFixture[str]
) -> None:
    some_open_runs(app)
    assert app.run("--overdue", after) == EXIT_OK
    out = lines(capsys)
    assert out[0].split()[-2:] == ["OPEN", "FOR"]
    assert out[1].split()[:3] == ["1", "3167956", "started"]
    assert out[1].split()[-2:] == ["3", "h"]
    assert out[2].startswith("1 run(s) triggered or started over 2 h ago and not finished")
    assert len(out) == 3


def test_overdue_lists_the_oldest_first_and_counts_those_left_out(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    some_open_runs(app)
    assert app.run("--overdue", "15m", "--limit", "1") == EXIT_OK
    out = lines(capsys)
    assert out[1].split()[0] == "1"
    assert out[2] == (
        "2 run(s) triggered or started over 15 min ago and not finished; "
        "the oldest 1 shown, --limit N shows more"
    )


def test_overdue_goes_with_sync_and_status(app: App, capsys: pytest.CaptureFixture[str]) -> None:
    some_open_runs(app)
    assert app.run("--overdue", "1m", "--sync", "42", "--json") == EXIT_OK
    assert [json.loads(line)["sync_run_id"] for line in lines(capsys)] == [2]
    assert app.run("--overdue", "1m", "--status", "started", "--json") == EXIT_OK
    assert [json.loads(line)["sync_run_id"] for line in lines(capsys)] == [1]


def test_overdue_json_adds_how_long_each_run_has_been_open(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    some_open_runs(app)
    assert app.run("--overdue", "1h", "--json") == EXIT_OK
    records = [json.loads(line) for line in lines(capsys)]
    assert [(r["sync_run_id"], r["open_seconds"]) for r in records] == [(1, 10800.0), (2, 5400.0)]


def test_overdue_says_when_no_run_is(app: App, capsys: pytest.CaptureFixture[str]) -> None:
    some_open_runs(app)
    assert app.run("--overdue", "1d") == EXIT_OK
    assert lines(capsys) == ["no runs open for over 1 d."]


@pytest.mark.parametrize("after", ["2x", "-5m", "h", "", "2h30m", "1e3"])
def test_overdue_refuses_what_is_not_a_duration(
    app: App, after: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert app.run(f"--overdue={after}") == EXIT_USAGE
    assert "not a duration" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), ("45", 45), ("1.5h", 5400)],
)
def test_parse_duration_reads_seconds_and_units(value: str, seconds: float) -> None:
    assert parse_duration(value) == timedelta(seconds=seconds)


def test_parse_duration_refuses_one_too_long() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="too long"):
        parse_duration("9" * 20 + "d")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.44, "0.4 s"),
        (31.2, "31 s"),
        (59.6, "1 min"),
        (125, "2 min 5 s"),
        (7200, "2 h"),
        (7500, "2 h 5 min"),
        (100_000, "1 d 3 h"),
    ],
)
def test_duration_text_reads_as_people_say_it(seconds: float | None, text: str) -> None:
    assert duration_text(seconds) == text


# -- --health ------------------------------------------------------------------------------


def test_health_sums_up_each_sync_most_recently_active_first(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    a_finished_run(app, 1)
    app.later(60)
    app.send("sync.triggered", 2)
    app.later(10)
    app.send("sync.started", 2)
    app.later(600)
    app.send("sync.failed", 2)
    app.later(60)
    app.send("sync.triggered", 3)
    app.later(1)
    app.send("sync.triggered", 4, sync_id=42)
    assert app.run("--health") == EXIT_OK
    out = lines(capsys)
    assert out[0].split() == [
        "SYNC", "RUNS", "SUCCESS", "MEDIAN", "P95", "LAST", "SUCCESS", "(UTC)",
        "LAST", "FAILURE", "(UTC)", "OPEN",
    ]  # fmt: skip
    assert out[1].split() == ["42", "0", "-", "-", "-", "-", "-", "1"]
    assert out[2].split() == [
        "3167956", "2", "50%", "6", "min", "2", "s", "10", "min",
        "2026-05-01", "12:02:36", "2026-05-01", "12:13:46", "1",
    ]  # fmt: skip
    assert out[3].startswith("(each sync's latest 1,000 runs: RUNS counts the finished ones")


def test_health_of_one_sync(app: App, capsys: pytest.CaptureFixture[str]) -> None:
    a_finished_run(app, 1)
    app.send("sync.failed", 2, sync_id=42)
    assert app.run("--health", "--sync", "42", "--json") == EXIT_OK
    [line] = lines(capsys)
    assert json.loads(line) == {
        "sync_id": 42,
        "runs": 1,
        "succeeded": 0,
        "failed": 1,
        "success_rate": 0.0,
        "median_duration": None,
        "p95_duration": None,
        "last_success": None,
        "last_failure": "2026-05-01T12:02:36+00:00",
        "open_runs": 0,
    }


def test_health_says_when_a_sync_has_no_runs(app: App, capsys: pytest.CaptureFixture[str]) -> None:
    a_finished_run(app, 1)
    assert app.run("--health", "--sync", "7") == EXIT_OK
    assert lines(capsys) == ["no runs of sync 7 recorded."]
    assert app.run("--health", "--sync", "7", "--json") == EXIT_OK
    assert json.loads(capsys.readouterr().out)["runs"] == 0


def test_health_success_rate_shows_a_tenth_of_a_percent(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    for run in (1, 2):
        a_finished_run(app, run)
    app.send("sync.failed", 3)
    assert app.run("--health") == EXIT_OK
    assert lines(capsys)[1].split()[1:3] == ["3", "66.7%"]


# -- --show --------------------------------------------------------------------------------


def test_show_prints_one_run_with_its_events_and_alerts(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    app.send("sync.started", 1001)
    app.later(5)
    app.send("sync.completed", 1001, status="emergency")
    app.send("sync.alert.raised", 1001)
    assert app.run("--show", "1001") == EXIT_OK
    assert lines(capsys) == [
        "run 1001 of sync 3167956 (workspace 3167): failed",
        "  triggered (UTC):  -",
        "  started (UTC):    2026-05-01 12:00:00",
        "  finished (UTC):   2026-05-01 12:00:05",
        "  queued:           -",
        "  duration:         5.0 s",
        "  completed status: emergency",
        "  events received:  sync.started, sync.completed",
        "  missing events:   sync.triggered, sync.failed",
        "alerts:",
        "  2026-05-01 12:00:05  raised   #626248 FailureAlertConfiguration: Sync Failed",
    ]


def test_show_json_is_the_run_record(app: App, capsys: pytest.CaptureFixture[str]) -> None:
    a_finished_run(app, 1001)
    assert app.run("--show", "1001", "--json") == EXIT_OK
    record = json.loads(capsys.readouterr().out)
    assert (record["sync_run_id"], record["alerts"]) == (1001, [])


def test_show_an_unknown_run_exits_3_and_says_how_to_list_them(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    assert app.run("--show", "5") == EXIT_INPUT
    err = capsys.readouterr().err
    assert "no run 5 in the journal" in err
    assert "runs --app census_app:receiver" in err


# -- sources, options and failures -----------------------------------------------------------


def test_journal_file_is_read_without_any_app(app: App, capsys: pytest.CaptureFixture[str]) -> None:
    a_finished_run(app, 1001)
    assert main(["runs", "--journal", str(app.folder / "journal.db"), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["status"] == "succeeded"


def test_journal_file_missing_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "--journal", str(tmp_path / "nothing.db")]) == EXIT_INPUT
    assert "no journal file at" in capsys.readouterr().err
    assert not (tmp_path / "nothing.db").exists()


def test_an_app_and_a_journal_file_are_one_or_the_other(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    assert app.run("--journal", str(app.folder / "journal.db")) == EXIT_USAGE
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["runs"]) == EXIT_USAGE


def test_an_app_without_a_journal_exits_3(app: App, capsys: pytest.CaptureFixture[str]) -> None:
    assert app.run(attr="without_journal") == EXIT_INPUT
    assert "census_app:without_journal has no journal" in capsys.readouterr().err


def test_an_app_that_cannot_be_imported_exits_3(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["runs", "--app", "no_such_app:receiver", "--app-dir", str(app.folder)])
    assert code == EXIT_INPUT
    assert "no module named 'no_such_app'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--health", "--status", "failed"], "--status filters the list of runs"),
        (["--show", "1", "--status", "failed"], "--status filters the list of runs"),
        (["--show", "1", "--sync", "4"], "--show names one run: it goes without --sync"),
        (["--health", "--overdue", "2h"], "not allowed with argument"),
        (["--limit", "0"], "must be 1 or more"),
    ],
)
def test_options_that_do_not_go_together_are_usage_errors(
    app: App, argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert app.run(*argv) == EXIT_USAGE
    assert said in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "method"),
    [([], "runs"), (["--overdue", "2h"], "overdue_runs"), (["--health"], "syncs")],
)
def test_the_database_failing_exits_4(
    app: App,
    argv: list[str],
    method: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def unavailable(self: SQLiteJournal, *args: object, **kwargs: object) -> Any:
        raise JournalUnavailable("the journal's database failed (OperationalError: locked)")

    monkeypatch.setattr(SQLiteJournal, method, unavailable)
    assert app.run(*argv) == EXIT_UNREACHABLE
    assert "check that the database is up and reachable" in capsys.readouterr().err


def test_runs_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "--help"]) == EXIT_OK
    out = capsys.readouterr().out
    assert all(option in out for option in ("--overdue DURATION", "--health", "--show ID"))


def test_the_app_module_is_found_with_a_factory_too(
    app: App, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with (tmp_path / "census_app.py").open("a") as module:
        module.write("\n\ndef make():\n    return receiver\n")
    a_finished_run(app, 1001)
    assert app.run("--json", attr="make") == EXIT_OK
    assert json.loads(capsys.readouterr().out)["sync_run_id"] == 1001
