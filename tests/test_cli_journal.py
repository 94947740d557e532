"""census-receiver deliveries, replay and work, in-process, over an app module in tmp_path.

Each test writes a small module (``hooks.py``) next to a SQLite journal file,
captures deliveries into that journal through a receiver of its own, and runs
the command with ``--app hooks:receiver --app-dir TMP``, reading ``capsys``.
Workers run with ``--once``; one stops itself with SIGTERM from its handler.
Subprocess workers (SIGKILL mid-handler, several at once) and ``serve --journal``
are in tests/integration/test_cli_journal.py.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from census_receiver import WebhookReceiver
from census_receiver.cli import EXIT_INPUT, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, main
from census_receiver.cli.work import EXIT_STOPPED_AT_ONCE
from census_receiver.journal import JournalUnavailable, SQLiteJournal
from census_receiver.testing import make_delivery

from .cli_tools import no_secret_in_env as no_secret_in_env
from .conftest import SECRET

APP = """\
import os
from pathlib import Path
from types import SimpleNamespace

from census_receiver import WebhookReceiver
from census_receiver.journal import SQLiteJournal

HERE = Path(__file__).parent
journal = SQLiteJournal(HERE / "journal.db", synchronous="off", {options})
receiver = WebhookReceiver({secret!r}, journal=journal, acknowledge={acknowledge!r})


@receiver.on("sync.failed", "sync.completed")
def note(event):
    if (HERE / "broken").exists():
        raise ConnectionError("the ticketing system is down")
    with open(HERE / "handled.txt", "a") as out:
        out.write(f"{{event.sync_run_id}}\\n")
    if (HERE / "stop").exists():  # signal numbers to send this process, mid-handler
        for signum in (HERE / "stop").read_text().split():
            os.kill(os.getpid(), int(signum))


def make_receiver():
    return receiver


def needs_a_name(name):
    return receiver


async def make_later():
    return receiver


holder = SimpleNamespace(receiver=receiver)
plain = 42
without_journal = WebhookReceiver({secret!r})
"""


class App:
    """An app module in a folder, its journal, and a receiver of the test's own on it."""

    def __init__(
        self,
        folder: Path,
        *,
        options: str = "max_tries=1",
        acknowledge: str = "on_capture",
    ) -> None:
        self.folder = folder
        (folder / "hooks.py").write_text(
            APP.format(options=options, secret=SECRET, acknowledge=acknowledge)
        )
        self.journal = SQLiteJournal(folder / "journal.db", synchronous="off")
        self.receiver = WebhookReceiver(SECRET, journal=self.journal, acknowledge="on_capture")

    def capture(self, event: str = "sync.failed", **fields: Any) -> int:
        """Record a delivery as a worker's to run; its journal id."""
        delivery = make_delivery(event, secret=SECRET, **fields)
        assert self.receiver.handle(delivery.body, delivery.headers).reason == "accepted"
        return self.journal.deliveries(limit=1)[0].id

    def handled(self) -> list[str]:
        path = self.folder / "handled.txt"
        return path.read_text().splitlines() if path.exists() else []

    def run(self, *argv: str, attr: str = "receiver") -> int:
        command, *rest = argv
        return main([command, "--app", f"hooks:{attr}", "--app-dir", str(self.folder), *rest])


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., App]]:
    """Makes the test's app (with journal options); cleans up what the commands loaded."""
    saved_path = list(sys.path)
    made: list[App] = []

    def make(**options: str) -> App:
        made.append(App(tmp_path, **options))
        return made[-1]

    sys.modules.pop("hooks", None)  # another test's, or a module of that name elsewhere
    yield make
    for app in made:
        app.receiver.close()
        app.journal.close()
    sys.path[:] = saved_path
    # The next test's hooks.py is another file: import it afresh.
    loaded = sys.modules.pop("hooks", None)
    if loaded is not None and hasattr(loaded, "journal"):
        loaded.journal.close()


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    return make_app()


def lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().out.splitlines()


# -- --app: finding the receiver -----------------------------------------------------------


def test_app_names_a_receiver_by_module_and_attribute(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    app.capture()
    assert app.run("deliveries") == EXIT_OK
    assert "sync.failed" in capsys.readouterr().out


@pytest.mark.parametrize("attr", ["make_receiver", "holder.receiver"])
def test_app_may_name_a_factory_or_a_dotted_path(
    app: App, attr: str, capsys: pytest.CaptureFixture[str]
) -> None:
    app.capture()
    assert app.run("deliveries", attr=attr) == EXIT_OK
    assert "sync.failed" in capsys.readouterr().out


def test_app_module_not_found_says_where_it_looked(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["deliveries", "--app", "nohooks:receiver", "--app-dir", str(app.folder)])
    assert code == EXIT_INPUT
    err = capsys.readouterr().err
    assert "no module named 'nohooks'" in err
    assert str(app.folder) in err and "--app-dir DIR" in err


def test_app_attribute_missing_names_the_receivers_the_module_has(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    assert app.run("deliveries", attr="reciever") == EXIT_INPUT
    err = capsys.readouterr().err
    assert "hooks has no attribute 'reciever'" in err
    assert "did you mean --app hooks:receiver, --app hooks:without_journal?" in err


@pytest.mark.parametrize(
    ("attr", "said"),
    [
        ("plain", "hooks:plain is a int, not a WebhookReceiver nor a function returning one"),
        ("WebhookReceiver", "is the class WebhookReceiver, not a WebhookReceiver"),
        ("needs_a_name", "hooks:needs_a_name is a function that takes arguments"),
        ("make_later", "hooks:make_later is an async function"),
    ],
)
def test_app_that_is_not_a_receiver_is_refused_with_the_fix(
    app: App, attr: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert app.run("deliveries", attr=attr) == EXIT_INPUT
    assert said in capsys.readouterr().err


def test_app_receiver_without_a_journal_says_how_to_give_it_one(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    assert app.run("deliveries", attr="without_journal") == EXIT_INPUT
    err = capsys.readouterr().err
    assert "hooks:without_journal has no journal" in err
    assert "journal=SQLiteJournal(path)" in err


def test_app_module_that_fails_to_import_shows_its_traceback(
    tmp_path: Path, app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "hooks.py").write_text("import json\njson.loads('{')\n")
    assert app.run("deliveries") == EXIT_INPUT
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "importing hooks failed: JSONDecodeError: " in err


def test_app_module_refused_by_the_receiver_shows_our_message_only(
    tmp_path: Path, app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "hooks.py").write_text(
        "from census_receiver import WebhookReceiver\nreceiver = WebhookReceiver()\n"
    )
    assert app.run("deliveries") == EXIT_INPUT
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "importing hooks failed: no webhook secret: pass secret=... or set" in err


@pytest.mark.parametrize("value", ["hooks", "hooks:", ":receiver", "a:b:c"])
def test_app_not_of_the_form_module_attr_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["deliveries", "--app", value]) == EXIT_USAGE
    assert "must be MODULE:ATTR" in capsys.readouterr().err


# -- deliveries ------------------------------------------------------------------------------


def test_deliveries_lists_newest_first_with_ids_status_and_counts(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    first = app.capture("sync.failed")
    second = app.capture("sync.completed")
    assert app.run("deliveries") == EXIT_OK
    out = lines(capsys)
    assert out[0].split() == [
        "ID", "RECEIVED", "(UTC)", "EVENT", "WORKSPACE", "SYNC", "RUN",
        "STATUS", "ATTEMPTS", "TRIES", "LAST", "ERROR",
    ]  # fmt: skip
    assert [row.split()[0] for row in out[1:3]] == [str(second), str(first)]
    assert out[1].split()[3:11] == [
        "sync.completed", "3167", "3167956", "324399613", "pending", "1", "0", "-",
    ]  # fmt: skip
    assert out[-1] == "in the journal: 2 pending"


def test_deliveries_shows_the_last_error_type_of_a_failed_one(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    app.capture()
    (app.folder / "broken").touch()
    assert app.run("work", "--once") == EXIT_OK
    capsys.readouterr()
    assert app.run("deliveries", "--status", "failed") == EXIT_OK
    row = lines(capsys)[1].split()
    assert row[7:] == ["failed", "1", "1", "ConnectionError"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["--event", "sync.completed"], ["sync.completed"]),
        (["--sync", "7"], ["sync.failed"]),
        (["--run", "324399613"], ["sync.completed"]),
        (["--status", "pending", "--event", "sync.failed"], ["sync.failed", "sync.failed"]),
        (["--status", "handled"], []),
    ],
)
def test_deliveries_filters(
    app: App, filters: list[str], expected: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    app.capture("sync.failed")
    app.capture("sync.completed")
    app.capture("sync.failed", sync_id=7)
    assert app.run("deliveries", *filters, "--json") == EXIT_OK
    assert [json.loads(line)["event"] for line in lines(capsys)] == expected


def test_deliveries_says_when_nothing_matches(app: App, capsys: pytest.CaptureFixture[str]) -> None:
    assert app.run("deliveries", "--status", "failed") == EXIT_OK
    assert lines(capsys) == ["no deliveries recorded that match.", "in the journal: nothing yet"]


def test_deliveries_json_has_every_field_one_object_a_line(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    app.capture("sync.failed")
    app.capture("sync.completed")
    assert app.run("deliveries", "--json") == EXIT_OK
    records = [json.loads(line) for line in lines(capsys)]
    assert [r["event"] for r in records] == ["sync.completed", "sync.failed"]
    record = records[1]
    assert set(record) == {
        "id", "key", "event", "workspace_id", "sync_id", "sync_run_id", "alert_instance_id",
        "body", "body_base64", "status", "attempts", "tries", "received_at", "updated_at",
        "answer_status", "answer_reason", "error", "next_attempt_at",
    }  # fmt: skip
    assert json.loads(record["body"])["event"] == "sync.failed"
    assert record["body_base64"] is None
    assert datetime.fromisoformat(record["received_at"]).utcoffset() is not None
    assert record["status"] == "pending" and record["error"] is None


def test_deliveries_limit_says_how_to_see_the_next_page(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [app.capture("sync.failed", sync_run_id=run) for run in (1, 2, 3)]
    assert app.run("deliveries", "--limit", "2") == EXIT_OK
    out = lines(capsys)
    assert [row.split()[0] for row in out[1:3]] == [str(ids[2]), str(ids[1])]
    assert f"--before {ids[1]} shows the next page" in out[3]
    assert app.run("deliveries", "--limit", "2", "--before", str(ids[1]), "--json") == EXIT_OK
    assert [json.loads(line)["id"] for line in lines(capsys)] == [ids[0]]


def test_deliveries_show_prints_payload_history_and_traceback(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    delivery_id = app.capture()
    (app.folder / "broken").touch()
    assert app.run("work", "--once") == EXIT_OK
    capsys.readouterr()
    assert app.run("deliveries", "--show", str(delivery_id)) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith(f"delivery #{delivery_id}: sync.failed, failed\n")
    assert '    "event": "sync.failed"' in out
    assert "census  200 accepted" in out
    assert out.count("worker  500 handler_error") == 1
    assert "last handler error: ConnectionError: the ticketing system is down" in out
    assert "Traceback (most recent call last)" in out and 'hooks.py", line' in out


def test_deliveries_show_json_includes_the_history(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    delivery_id = app.capture()
    assert app.run("deliveries", "--show", str(delivery_id), "--json") == EXIT_OK
    record = json.loads(capsys.readouterr().out)
    assert [(a["kind"], a["status"], a["reason"]) for a in record["history"]] == [
        ("census", 200, "accepted")
    ]


def test_deliveries_show_of_an_unknown_id_exits_3(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    assert app.run("deliveries", "--show", "404") == EXIT_INPUT
    assert "no delivery #404 in the journal" in capsys.readouterr().err


def test_deliveries_show_escapes_control_characters_of_the_payload(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    delivery_id = app.capture("sync.failed", note="\x1b]0;pwned\x07\x9b")
    assert app.run("deliveries", "--show", str(delivery_id)) == EXIT_OK
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out


def test_deliveries_rejections_lists_refused_requests_without_bodies(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    forged = make_delivery("sync.failed", secret=SECRET, bad_signature=True)
    assert app.receiver.handle(forged.body, forged.headers).status == 401
    app.journal.rejections()  # written with the journal's next transaction
    assert app.run("deliveries", "--rejections") == EXIT_OK
    out = lines(capsys)
    assert out[0].split() == ["AT", "(UTC)", "STATUS", "REASON", "REMOTE", "SIZE"]
    assert out[1].split()[2:] == ["401", "invalid_signature", "-", str(len(forged.body))]
    assert app.run("deliveries", "--rejections", "--json") == EXIT_OK
    (rejection,) = [json.loads(line) for line in lines(capsys)]
    assert rejection["reason"] == "invalid_signature" and "body" not in rejection


def test_deliveries_reads_a_journal_file_without_an_app(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    app.capture()
    assert main(["deliveries", "--journal", str(app.folder / "journal.db"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["event"] == "sync.failed"


def test_deliveries_of_a_journal_file_that_does_not_exist_creates_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nothing.db"
    assert main(["deliveries", "--journal", str(missing)]) == EXIT_INPUT
    assert f"no journal file at {missing}" in capsys.readouterr().err
    assert not missing.exists()


def test_deliveries_needs_an_app_or_a_journal_file_not_both(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["deliveries"]) == EXIT_USAGE
    assert main(["deliveries", "--app", "a:b", "--journal", "x.db"]) == EXIT_USAGE
    assert "not allowed with argument" in capsys.readouterr().err


# -- replay ----------------------------------------------------------------------------------


def test_replay_runs_the_handlers_again_and_exits_0(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    delivery_id = app.capture()
    assert app.run("replay", str(delivery_id)) == EXIT_OK
    assert lines(capsys) == [
        f"#{delivery_id} sync.failed workspace=3167 sync=3167956 run=324402082: 200 handled"
    ]
    assert app.handled() == ["324402082"]


def test_replay_of_a_handled_delivery_is_a_success_that_says_so(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    delivery_id = app.capture()
    assert app.run("replay", str(delivery_id)) == EXIT_OK
    capsys.readouterr()
    assert app.run("replay", str(delivery_id)) == EXIT_OK
    (line,) = lines(capsys)
    assert line.endswith(": 200 duplicate: already handled before, not run again (--force runs it)")
    assert app.handled() == ["324402082"]
    assert app.run("replay", str(delivery_id), "--force") == EXIT_OK
    assert app.handled() == ["324402082", "324402082"]


def test_replay_of_a_failing_delivery_exits_1_with_the_error(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    ok_id = app.capture("sync.completed")
    app.run("replay", str(ok_id))
    failing_id = app.capture("sync.failed")
    (app.folder / "broken").touch()
    assert app.run("replay", str(failing_id), str(ok_id)) == EXIT_REFUSED
    assert lines(capsys)[-3:] == [
        f"#{failing_id} sync.failed workspace=3167 sync=3167956 run=324402082: "
        "500 handler_error: ConnectionError: the ticketing system is down",
        f"#{ok_id} sync.completed workspace=3167 sync=3167956 run=324399613: "
        "200 duplicate: already handled before, not run again (--force runs it)",
        "replayed 2: 1 succeeded, 1 did not",
    ]


def test_replay_of_an_unknown_id_exits_3_and_replays_nothing(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    delivery_id = app.capture()
    assert app.run("replay", str(delivery_id), "404") == EXIT_INPUT
    err = capsys.readouterr().err
    assert "no delivery #404 in the journal" in err and "nothing was replayed" in err
    assert app.handled() == []


def test_replay_failed_runs_every_failed_delivery_in_id_order(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [app.capture("sync.failed", sync_run_id=run) for run in (11, 12, 13)]
    app.capture("sync.completed")  # pending, not failed
    (app.folder / "broken").touch()
    for delivery_id in ids:
        app.run("replay", str(delivery_id))
    (app.folder / "broken").unlink()
    capsys.readouterr()
    assert app.run("replay", "--failed", "--limit", "2") == EXIT_OK
    assert [line.split()[0] for line in lines(capsys)[:2]] == [f"#{ids[0]}", f"#{ids[1]}"]
    assert app.handled() == ["11", "12"]
    assert app.run("replay", "--failed") == EXIT_OK
    assert app.handled() == ["11", "12", "13"]
    assert app.run("replay", "--failed") == EXIT_OK
    assert lines(capsys)[-1] == "no failed deliveries to replay."


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        ([], "give the ids of the deliveries to replay, or --failed"),
        (["1", "--failed"], "give the ids of the deliveries to replay, or --failed"),
        (["1", "--limit", "2"], "--limit goes with --failed"),
    ],
)
def test_replay_needs_ids_or_failed(
    app: App, argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert app.run("replay", *argv) == EXIT_USAGE
    assert said in capsys.readouterr().err


# -- work ------------------------------------------------------------------------------------


def test_work_once_runs_what_is_due_and_logs_each_run(
    app: App, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "census_receiver")
    app.capture("sync.failed")
    app.capture("sync.completed")
    assert app.run("work", "--once") == EXIT_OK
    out = lines(capsys)
    assert "census-receiver work: running the due deliveries of hooks:receiver" in out[0]
    assert "up to 1 tries" in out[1] and "records kept 30 days" in out[1]
    assert out[-1].endswith("  stopped: ran 2, failed 0")
    assert sorted(app.handled()) == ["324399613", "324402082"]
    runs = [r.getMessage() for r in caplog.records if "from the journal" in r.getMessage()]
    assert len(runs) == 2 and all(": handled (200)" in run for run in runs)
    assert {r.status for r in app.journal.deliveries()} == {"handled"}


def test_work_retries_a_failure_then_ends_it_failed(
    make_app: Callable[..., App], capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_app(options="max_tries=2, backoff=0.01")
    delivery_id = app.capture()
    (app.folder / "broken").touch()
    assert app.run("work", "--once") == EXIT_OK
    assert lines(capsys)[-1].endswith("stopped: ran 1, failed 1")
    record = app.journal.get(delivery_id)
    assert record is not None and record.next_attempt_at is not None
    assert (record.status, record.tries) == ("pending", 1)
    time.sleep(0.05)  # past the 10 ms backoff
    assert app.run("work", "--once") == EXIT_OK
    assert lines(capsys)[-1].endswith("stopped: ran 1, failed 1")
    record = app.journal.get(delivery_id)
    assert record is not None
    assert (record.status, record.tries) == ("failed", 2)
    assert app.run("work", "--once") == EXIT_OK
    assert lines(capsys)[-1].endswith("stopped: ran 0, failed 0")


def test_work_prunes_old_records_at_start(
    make_app: Callable[..., App], capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_app(options="retention=0.01")
    app.capture()
    assert app.run("work", "--once", "--prune-every", "0") == EXIT_OK
    time.sleep(0.05)  # past the 10 ms retention
    assert app.run("work", "--once") == EXIT_OK
    assert "pruned 1 deliveries older than 0.01 s" in capsys.readouterr().out
    assert app.journal.deliveries() == []


def test_work_says_when_the_receiver_runs_its_handlers_on_arrival(
    make_app: Callable[..., App], capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_app(acknowledge="after_handlers")
    assert app.run("work", "--once") == EXIT_OK
    assert "build it with acknowledge='on_capture'" in capsys.readouterr().out


def test_work_stops_after_the_current_delivery_on_sigterm(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    # The handler sends SIGTERM to this process while it runs the first delivery.
    first = app.capture("sync.failed")
    second = app.capture("sync.completed")
    (app.folder / "stop").write_text(str(int(signal.SIGTERM)))
    before = signal.getsignal(signal.SIGTERM)
    # Bounded: were the stop lost, Ctrl-C would end the loop and the asserts fail.
    guard = threading.Timer(20, signal.raise_signal, (signal.SIGINT,))
    guard.start()
    try:
        assert app.run("work", "--poll", "0.05") == EXIT_OK
    finally:
        guard.cancel()
    assert lines(capsys)[-1].endswith("stopped: ran 1, failed 0")
    assert app.handled() == ["324402082"]
    statuses = {r.id: r.status for r in app.journal.deliveries()}
    assert statuses == {first: "handled", second: "pending"}
    assert signal.getsignal(signal.SIGTERM) is before


def test_work_stops_at_once_on_a_second_signal(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    app.capture()
    (app.folder / "stop").write_text(f"{int(signal.SIGINT)} {int(signal.SIGINT)}")
    assert app.run("work", "--once") == EXIT_STOPPED_AT_ONCE
    out = capsys.readouterr().out
    assert "stopped at once: ran 0, failed 0; the delivery cut short is tried again" in out
    (record,) = app.journal.deliveries()
    assert (record.status, record.answer_reason) == ("failed", "interrupted")


def test_work_once_with_the_journal_unavailable_exits_4(
    app: App, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unavailable(self: WebhookReceiver, limit: int = 100) -> int:
        raise JournalUnavailable("the journal's database failed (OperationalError: locked)")

    monkeypatch.setattr(WebhookReceiver, "run_pending", unavailable)
    assert app.run("work", "--once", "--prune-every", "0") == 4
    assert "the journal's database failed" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--poll", "0"], ["--poll", "x"], ["--prune-every", "-1"]])
def test_work_refuses_bad_durations(
    app: App, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert app.run("work", *argv) == EXIT_USAGE


def test_every_journal_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("deliveries", "replay", "work"):
        assert main([command, "--help"]) == EXIT_OK
        assert "--app MODULE:ATTR" in capsys.readouterr().out
