"""The census-receiver command, run as a user runs it: real processes, real servers.

``serve`` runs as a subprocess on a free port of 127.0.0.1; ``send`` talks to it
as a subprocess too. Argument and input errors are checked in-process through
``main(argv)``, which is what the console script calls.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from census_receiver import __version__, compute_signature
from census_receiver.cli import (
    EXIT_INPUT,
    EXIT_LISTEN,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    main,
)
from census_receiver.testing import DOCUMENTED_EXAMPLES, EVENT_NAMES, make_body

from .conftest import SECRET

ROOT = Path(__file__).resolve().parent.parent
WAIT = 20.0  # seconds: the bound on every wait for a process or a line
PIN_BODY = (
    b'{"workspace_id": 3167, "sync_id": 3167956, "sync_run_id": 324399613, '
    b'"event": "sync.triggered"}'
)
# Made outside our code: printf '%s' "$PIN_BODY" |
#   openssl dgst -sha256 -hmac whsec_census_test -binary | base64
PIN_SIGNATURE = "KKWPa2wF/AlxBP1+M1mZfM0wWa4Iee9ASjuKSr0eoMM="
CLI = [sys.executable, "-m", "census_receiver"]


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CENSUS_WEBHOOK_SECRET"}
    env.update(extra)
    return env


def run_cli(
    *args: str, input: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*CLI, *args],
        input=input.decode() if input is not None else None,
        capture_output=True,
        text=True,
        env=env or cli_env(),
        cwd=ROOT,
        timeout=WAIT,
    )
    return done


class Serve:
    """``census-receiver serve`` in a subprocess, its output collected line by line."""

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, command: list[str] | None = None
    ) -> None:
        self.process = subprocess.Popen(
            command or [*CLI, "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env or cli_env(),
            cwd=ROOT,
        )
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        listening = self.wait_for(r"^Listening on (http://\S+)")
        match = re.search(r"http://\S+", listening)
        assert match is not None
        self.url = match.group(0)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    @property
    def output(self) -> str:
        with self.changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, count: int = 1) -> str:
        """The ``count``-th line matching ``pattern``, waiting for it (bounded)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + WAIT
        with self.changed:
            while True:
                found = [line for line in self.lines if regex.search(line)]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self.reader.is_alive()):
                    raise AssertionError(f"no line matching {pattern!r} in:\n{self.output}")
                self.changed.wait(min(left, 0.5))

    def payload_after(self, line: str) -> str:
        """The pretty-printed payload shown under ``line``, once it is complete."""
        deadline = time.monotonic() + WAIT
        with self.changed:
            start = self.lines.index(line) + 1
            while "    }" not in self.lines[start:]:
                left = deadline - time.monotonic()
                assert left > 0, f"no payload under {line!r} in:\n{self.output}"
                self.changed.wait(min(left, 0.5))
            return "\n".join(self.lines[start : self.lines.index("    }", start) + 1])

    def stop(self) -> int:
        """Ctrl-C, then the exit status (killing the process if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=WAIT)
            raise
        finally:
            self.reader.join(timeout=WAIT)
            assert self.process.stdout is not None
            self.process.stdout.close()
        return code


@pytest.fixture(scope="module")
def server() -> Iterator[Serve]:
    serve = Serve("--secret", SECRET, "--secret", "an-older-secret")
    yield serve
    assert serve.stop() == EXIT_OK
    assert serve.lines[-1] == "stopped"


class Recorder(http.server.ThreadingHTTPServer):
    """A local HTTP server that records POSTs and answers from a script of statuses."""

    def __init__(self, statuses: Callable[[int], int] = lambda n: 200) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.statuses = statuses
        self.arrived = threading.Condition()
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/relay"

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(timeout=WAIT)

    def wait_for(self, count: int) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.requests) >= count, timeout=WAIT)


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    server: Recorder

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with self.server.arrived:
            number = len(self.server.requests)
            self.server.requests.append((self.path, dict(self.headers.items()), body))
            self.server.arrived.notify_all()
        status = self.server.statuses(number)
        answer = json.dumps({"attempt": number + 1}).encode()
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that is bound but not listening: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# -- serve and send, end to end -------------------------------------------------------


@pytest.mark.parametrize("example", DOCUMENTED_EXAMPLES, ids=lambda p: f"{p['event']}")
def test_send_of_every_documented_event_is_shown_verified(
    server: Serve, example: dict[str, object]
) -> None:
    name = str(example["event"])
    sets = [f"--set={k}={json.dumps(v)}" for k, v in example.items() if k != "event"]
    done = run_cli("send", name, "--url", server.url, "--secret", SECRET, *sets)
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    assert '<- 200 OK {"status": "ok"}' in done.stdout
    run = example["sync_run_id"]
    line = server.wait_for(rf"verified +{re.escape(name)} +workspace=3167 sync=3167956 run={run} ")
    assert line.endswith("-> 200")
    assert json.loads(server.payload_after(line)) == example


def test_send_with_a_second_secret_is_verified(server: Serve) -> None:
    done = run_cli(
        "send", "sync.success", "--url", server.url, "--secret", "an-older-secret",
        "--set", "sync_run_id=111",
    )  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    server.wait_for(r"verified +sync\.success .* run=111 +-> 200$")


def test_forged_delivery_is_shown_rejected_with_its_reason(server: Serve) -> None:
    done = run_cli(
        "send", "sync.failed", "--url", server.url, "--secret", SECRET, "--bad-signature",
        "--set", "sync_run_id=666",
    )  # fmt: skip
    assert done.returncode == EXIT_REFUSED
    assert "<- 401 Unauthorized" in done.stdout
    line = server.wait_for(r"rejected +401 invalid_signature: ")
    assert "does not match the body" in line
    after = server.output.split(line, 1)[1]
    assert "unverified body, not handled:" in after and '"sync_run_id": 666' in after


def test_get_on_the_webhook_path_is_shown_rejected(server: Serve) -> None:
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(server.url, timeout=WAIT)
    assert info.value.code == 405
    info.value.close()
    server.wait_for(r"rejected +405 method_not_allowed: use POST")


def test_undocumented_event_is_sent_with_a_note_and_verified(server: Serve) -> None:
    done = run_cli("send", "sync.paused", "--url", server.url, "--secret", SECRET)
    assert done.returncode == EXIT_OK
    assert "'sync.paused' is not a documented event" in done.stderr
    server.wait_for(r"verified +sync\.paused ")


def test_send_fields_are_parsed_as_json_when_they_parse() -> None:
    with Recorder() as recorder:
        done = run_cli(
            "send", "sync.completed", "--url", recorder.url, "--secret", SECRET,
            "--set", "status=emergency", "--set", "sync_id=42", "--set", "workspace_id=null",
            "--set", "extra={\"a\": [1, true]}", "--set", "note=not json",
        )  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    _, headers, body = recorder.requests[0]
    assert json.loads(body) == {
        "sync_id": 42,
        "sync_run_id": 324399613,
        "status": "emergency",
        "extra": {"a": [1, True]},
        "note": "not json",
        "event": "sync.completed",
    }
    assert headers["X-Signature"] == compute_signature(body, SECRET)
    assert headers["Content-Type"] == "application/json"


def test_serve_without_secret_prints_one_and_a_send_command_that_works() -> None:
    serve = Serve()
    try:
        serve.wait_for(r"generated one")
        command = serve.wait_for(r" send sync\.completed ").strip()
        # The printed interpreter is one this shell would run: this very Python.
        prefix = command.split(" -m census_receiver send ", 1)[0]
        found = shutil.which(shlex.split(prefix)[0])
        assert found is not None
        assert Path(found).resolve() == Path(sys.executable).resolve()
        args = command.split(" send ", 1)[1].split()
        done = run_cli("send", *args)
        assert done.returncode == EXIT_OK, done.stdout + done.stderr
        serve.wait_for(r"verified +sync\.completed ")
    finally:
        assert serve.stop() == EXIT_OK


def test_serve_reads_the_secret_from_the_environment() -> None:
    env = cli_env(CENSUS_WEBHOOK_SECRET="from-the-env")
    serve = Serve("--path", "/census", env=env)
    try:
        assert serve.url.endswith("/census")
        assert "generated" not in serve.output
        command = serve.wait_for(r" send sync\.completed ")
        assert "--secret" not in command
        done = run_cli("send", "sync.started", "--url", serve.url, env=env)
        assert done.returncode == EXIT_OK, done.stderr
        serve.wait_for(r"verified +sync\.started ")
    finally:
        assert serve.stop() == EXIT_OK


def test_serve_forward_and_exec_deliver_each_verified_event(tmp_path: Path) -> None:
    sink = tmp_path / "events.jsonl"
    append = (
        f"{sys.executable} -c \"import os, sys; open(sys.argv[1], 'a').write("
        f"os.environ['CENSUS_EVENT'] + ' ' + sys.stdin.read() + chr(10)); print('appended')\" "
        f"{sink}"
    )
    with Recorder() as recorder:
        serve = Serve("--secret", SECRET, "--forward", recorder.url, "--exec", append)
        try:
            sent = []
            for name in ("sync.failed", "sync.alert.resolved"):
                done = run_cli("send", name, "--url", serve.url, "--secret", SECRET)
                assert done.returncode == EXIT_OK, done.stdout + done.stderr
                sent.append(make_body(name))
                serve.wait_for(rf"verified +{re.escape(name)} ")
            forged = run_cli("send", "sync.started", "--url", serve.url, "--bad-signature")
            assert forged.returncode == EXIT_REFUSED
            serve.wait_for(r"rejected +401")
            serve.wait_for(r"forwarded to http://127\.0\.0\.1:\d+/relay: 200 OK", count=2)
            serve.wait_for(r"exec .*: exit 0", count=2)
            serve.wait_for(r"^\s+appended$", count=2)
        finally:
            assert serve.stop() == EXIT_OK
    # Relayed byte for byte, with the signature Census would have sent; the forgery not at all.
    assert [(path, body) for path, _, body in recorder.requests] == [("/relay", b) for b in sent]
    for _, headers, body in recorder.requests:
        assert headers["X-Signature"] == compute_signature(body, SECRET)
    rows = sink.read_text().splitlines()
    assert rows == [f"sync.failed {sent[0].decode()}", f"sync.alert.resolved {sent[1].decode()}"]


def test_serve_answers_500_when_a_relay_fails_so_census_retries(tmp_path: Path) -> None:
    with Recorder(statuses=lambda n: 502) as recorder:
        serve = Serve("--secret", SECRET, "--forward", recorder.url, "--exec", "exit 3")
        try:
            done = run_cli("send", "sync.failed", "--url", serve.url, "--secret", SECRET)
            assert done.returncode == EXIT_REFUSED
            assert "<- 500 Internal Server Error" in done.stdout
            line = serve.wait_for(r"verified +sync\.failed .* -> 500 \(a relay failed")
            assert "Census would retry" in line
            serve.wait_for(r"forwarded to .*: 502 Bad Gateway")
            serve.wait_for(r"exec 'exit 3': exit 3")
        finally:
            assert serve.stop() == EXIT_OK
    assert len(recorder.requests) == 1


def test_serve_dedup_shows_a_repeat_as_duplicate(tmp_path: Path) -> None:
    sink = tmp_path / "runs"
    serve = Serve("--secret", SECRET, "--dedup", "--exec", f"cat >> {sink}; echo >> {sink}")
    try:
        for expected in ('{"status": "ok"}', '{"status": "duplicate"}'):
            done = run_cli("send", "sync.failed", "--url", serve.url, "--secret", SECRET)
            assert done.returncode == EXIT_OK
            assert done.stdout.rstrip().endswith(expected)
        serve.wait_for(r"duplicate +sync\.failed .* -> 200 \(already handled\)")
    finally:
        assert serve.stop() == EXIT_OK
    assert sink.read_text().count("sync.failed") == 1


def test_serve_stops_cleanly_on_sigterm() -> None:
    serve = Serve("--secret", SECRET)
    serve.process.send_signal(signal.SIGTERM)
    assert serve.process.wait(timeout=WAIT) == EXIT_OK
    assert serve.stop() == EXIT_OK
    assert serve.lines[-1] == "stopped"


def test_serve_refuses_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code = main(["serve", "--port", str(port), "--secret", SECRET])
    assert code == EXIT_LISTEN
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "pick another --port" in err


def test_serve_refuses_a_relative_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--path", "webhooks", "--secret", SECRET]) == EXIT_INPUT
    assert "--path must start with '/'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/webhooks/census",
        "http://localhost:{port}/webhooks/census",
        "http://[::1]:{port}/webhooks/census",
    ],
)
def test_serve_refuses_to_forward_to_itself(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # no server is started: refused before listening
    target = url.format(port=port)
    argv = ["serve", "--port", str(port), "--secret", SECRET, "--forward", target]
    assert main(argv) == EXIT_INPUT
    assert f"--forward {target} is this server's own webhook URL" in capsys.readouterr().err


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/webhooks/other",  # the app's own route on the same server
        "http://127.0.0.1:{other}/webhooks/census",
        "http://example.test:{port}/webhooks/census",
    ],
)
def test_forward_targets_that_are_not_the_server_itself_are_accepted(url: str) -> None:
    from census_receiver.cli import _relays_to_itself

    target = url.format(port=8000, other=8001)
    assert not _relays_to_itself(target, "127.0.0.1", 8000, "/webhooks/census")
    assert _relays_to_itself(
        "http://127.0.0.1:8000/webhooks/census", "127.0.0.1", 8000, "/webhooks/census"
    )


# -- send --retry ---------------------------------------------------------------------


def test_send_retry_keeps_going_until_answered_2xx() -> None:
    with Recorder(statuses=lambda n: 503 if n < 2 else 200) as recorder:
        done = run_cli(
            "send", "sync.failed", "--url", recorder.url, "--secret", SECRET,
            "--retry", "--retry-scale", "0.001",
        )  # fmt: skip
    assert done.returncode == EXIT_OK, done.stdout
    assert len(recorder.requests) == 3
    assert len({body for _, _, body in recorder.requests}) == 1  # byte-identical retries
    out = done.stdout
    assert "<- attempt 1: 503 Service Unavailable" in out
    assert "retrying in 0.004 s (Census's retry 1 of 5)" in out
    assert "retrying in 0.008 s (Census's retry 2 of 5)" in out
    assert '<- attempt 3: 200 OK {"attempt": 3}' in out


def test_send_retry_gives_up_after_censuss_five_retries() -> None:
    with Recorder(statuses=lambda n: 500) as recorder:
        done = run_cli(
            "send", "sync.failed", "--url", recorder.url, "--secret", SECRET,
            "--retry", "--retry-scale", "0",
        )  # fmt: skip
    assert done.returncode == EXIT_REFUSED
    assert len(recorder.requests) == 6
    assert "retry 5 of 5" in done.stdout and "<- attempt 6: 500" in done.stdout


def test_send_retry_retries_an_unreachable_url(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/webhooks/census"
    done = run_cli("send", "sync.failed", "--url", url, "--secret", SECRET, "--retry",
                   "--retry-scale", "0")  # fmt: skip
    assert done.returncode == EXIT_UNREACHABLE
    assert done.stdout.count("cannot reach") == 5  # attempts 1-5; the 6th is the error
    assert "cannot reach" in done.stderr


def test_send_does_not_follow_redirects() -> None:
    with Recorder(statuses=lambda n: 307) as recorder:
        done = run_cli("send", "sync.failed", "--url", recorder.url, "--secret", SECRET)
    assert done.returncode == EXIT_REFUSED
    assert "307 Temporary Redirect (to /elsewhere)" in done.stdout
    assert len(recorder.requests) == 1


# -- send: errors ---------------------------------------------------------------------


def test_send_to_an_unreachable_url_says_so(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/webhooks/census"
    done = run_cli("send", "sync.failed", "--url", url, "--secret", SECRET)
    assert done.returncode == EXIT_UNREACHABLE
    assert f"cannot reach {url}" in done.stderr and "is the receiver running" in done.stderr


def test_send_to_a_receiver_that_never_answers_times_out() -> None:
    # A listening socket that never accepts: the kernel completes the connection and
    # takes the request, and no answer ever comes.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/webhooks/census"
        done = run_cli("send", "sync.failed", "--url", url, "--secret", SECRET, "--timeout", "0.5")
    assert done.returncode == EXIT_UNREACHABLE
    assert f"no answer from {url} within 0.5 s" in done.stderr


def test_send_without_a_secret_says_where_to_get_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CENSUS_WEBHOOK_SECRET", raising=False)
    assert main(["send", "sync.failed"]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "no secret to sign with" in err and "CENSUS_WEBHOOK_SECRET" in err


@pytest.mark.parametrize("bad", ["sync_id", "=42", "event=sync.failed"])
def test_send_refuses_a_malformed_set(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", "sync.failed", "--secret", SECRET, "--set", bad]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "error:" in err and ("KEY=VALUE" in err or "as EVENT" in err)


def test_send_refuses_a_url_that_is_not_http(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", "sync.failed", "--secret", SECRET, "--url", "ftp://x/y"]) == EXIT_INPUT
    assert "not an http:// or https:// URL" in capsys.readouterr().err


# -- sign and verify ------------------------------------------------------------------


def test_sign_matches_a_signature_made_by_openssl(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(PIN_BODY)
    done = run_cli("sign", str(body), "--secret", SECRET)
    assert (done.returncode, done.stdout) == (EXIT_OK, PIN_SIGNATURE + "\n")


def test_sign_reads_stdin_and_the_environment() -> None:
    env = cli_env(CENSUS_WEBHOOK_SECRET=SECRET)
    done = run_cli("sign", input=PIN_BODY, env=env)
    assert (done.returncode, done.stdout.strip()) == (EXIT_OK, PIN_SIGNATURE)


def test_sign_then_verify_round_trips_through_stdin() -> None:
    body = make_body("sync.alert.raised")
    signed = run_cli("sign", "--secret", "s3cret", input=body)
    assert signed.returncode == EXIT_OK
    checked = run_cli(
        "verify", "--signature", signed.stdout.strip(), "--secret", "other", "--secret", "s3cret",
        input=body,
    )  # fmt: skip
    assert (checked.returncode, checked.stdout) == (EXIT_OK, "verified (secret #2 of 2)\n")


def test_verify_fails_on_a_changed_body() -> None:
    done = run_cli("verify", "--signature", PIN_SIGNATURE, "--secret", SECRET,
                   input=PIN_BODY + b" ")  # fmt: skip
    assert done.returncode == EXIT_REFUSED
    assert "not verified: the signature does not match the body for the secret" in done.stdout


def test_verify_fails_on_a_malformed_signature(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(PIN_BODY)
    done = run_cli("verify", str(body), "--signature", "abc", "--secret", SECRET)
    assert done.returncode == EXIT_REFUSED
    assert done.stdout.startswith("not verified: the X-Signature header is not a base64")


def test_verify_fails_for_every_wrong_secret(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:  # fmt: skip
    body = tmp_path / "body.json"
    body.write_bytes(PIN_BODY)
    code = main(["verify", str(body), "--signature", PIN_SIGNATURE, "--secret", "a",
                 "--secret", "b"])  # fmt: skip
    assert code == EXIT_REFUSED
    assert "for any of the 2 secrets" in capsys.readouterr().out


def test_verify_needs_the_signature(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--secret", SECRET]) == EXIT_USAGE
    assert "the following arguments are required: --signature" in capsys.readouterr().err


def test_sign_of_a_missing_file_says_so(capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:  # fmt: skip
    missing = tmp_path / "nope.json"
    assert main(["sign", str(missing), "--secret", SECRET]) == EXIT_INPUT
    assert f"cannot read {missing}: No such file or directory" in capsys.readouterr().err


def test_sign_and_verify_without_a_secret_fail_with_a_hint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CENSUS_WEBHOOK_SECRET", raising=False)
    body = tmp_path / "body.json"
    body.write_bytes(PIN_BODY)
    assert main(["sign", str(body)]) == EXIT_INPUT
    assert main(["verify", str(body), "--signature", PIN_SIGNATURE]) == EXIT_INPUT
    assert main(["sign", str(body), "--secret", ""]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert err.count("pass --secret S or set CENSUS_WEBHOOK_SECRET") == 2
    assert "--secret must not be empty" in err


# -- arguments, help, version ---------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["serve"], ["send"], ["sign"], ["verify"]])
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("usage: ")
    assert "--secret" in out if command else "serve,send,sign,verify" not in out


def test_help_runs_through_python_m_and_lists_the_events() -> None:
    done = run_cli("send", "--help")
    assert done.returncode == EXIT_OK
    assert done.stdout.startswith("usage: python")
    assert all(name in done.stdout for name in EVENT_NAMES)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == EXIT_OK
    assert capsys.readouterr().out.strip().endswith(__version__)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["serve", "--port", "http"],
        ["serve", "--port", "70000"],
        ["send"],
        ["send", "sync.failed", "--retry-scale", "-1"],
        ["send", "sync.failed", "--timeout", "0"],
        ["sign", "--bogus"],
    ],
)
def test_bad_arguments_exit_2_with_usage(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == EXIT_USAGE
    assert "usage:" in capsys.readouterr().err
