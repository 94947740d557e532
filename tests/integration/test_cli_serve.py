"""census-receiver serve as a user runs it: a real process under uvicorn on 127.0.0.1.

``serve`` runs as a subprocess on a free port; ``send`` talks to it through
``main(argv)`` in this process, and the relays reach real local servers.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from census_receiver import compute_signature
from census_receiver.cli import EXIT_INPUT, EXIT_LISTEN, EXIT_OK, EXIT_REFUSED, main
from census_receiver.testing import DOCUMENTED_EXAMPLES, make_body
from tests.cli_tools import WAIT, Recorder, Serve, cli_env, run_cli
from tests.cli_tools import no_secret_in_env as no_secret_in_env
from tests.conftest import SECRET


@pytest.fixture(scope="module")
def server() -> Iterator[Serve]:
    serve = Serve("--secret", SECRET, "--secret", "an-older-secret")
    yield serve
    assert serve.stop() == EXIT_OK
    assert serve.lines[-1] == "stopped"


def send(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``census-receiver send ARGV`` in-process: exit status, stdout, stderr."""
    code = main(["send", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("example", DOCUMENTED_EXAMPLES, ids=lambda p: f"{p['event']}")
def test_send_of_every_documented_event_is_shown_verified(
    server: Serve, example: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    name = str(example["event"])
    sets = [f"--set={k}={json.dumps(v)}" for k, v in example.items() if k != "event"]
    code, out, err = send(capsys, name, "--url", server.url, "--secret", SECRET, *sets)
    assert code == EXIT_OK, out + err
    assert '<- 200 OK {"status": "ok"}' in out
    run = example["sync_run_id"]
    line = server.wait_for(rf"verified +{re.escape(name)} +workspace=3167 sync=3167956 run={run} ")
    assert line.endswith("-> 200")
    assert json.loads(server.payload_after(line)) == example


def test_send_with_a_second_secret_is_verified(
    server: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = send(
        capsys, "sync.success", "--url", server.url, "--secret", "an-older-secret",
        "--set", "sync_run_id=111",
    )  # fmt: skip
    assert code == EXIT_OK, err
    server.wait_for(r"verified +sync\.success .* run=111 +-> 200$")


def test_forged_delivery_is_shown_rejected_with_its_reason(
    server: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = send(
        capsys, "sync.failed", "--url", server.url, "--secret", SECRET, "--bad-signature",
        "--set", "sync_run_id=666",
    )  # fmt: skip
    assert code == EXIT_REFUSED
    assert "<- 401 Unauthorized" in out
    line = server.wait_for(r"rejected +401 invalid_signature: ")
    assert "does not match the body" in line
    after = server.output.split(line, 1)[1]
    assert "unverified body, not handled:" in after and '"sync_run_id": 666' in after


def test_signed_but_malformed_payload_is_shown_verified_and_refused(
    server: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = send(
        capsys, "sync.failed", "--url", server.url, "--secret", SECRET,
        "--set", 'workspace_id="W-42"',
    )  # fmt: skip
    assert code == EXIT_REFUSED
    assert "<- 400 Bad Request" in out
    line = server.wait_for(r"rejected +400 malformed_payload: ")
    after = server.output.split(line, 1)[1]
    assert after.startswith("\n    verified body, refused:\n") and '"W-42"' in after


def test_send_to_a_wrong_path_of_serve_is_told_where_webhooks_go(
    server: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = server.url.replace("/webhooks/census", "/webhook")
    code, out, _ = send(capsys, "sync.failed", "--url", wrong, "--secret", SECRET)
    assert code == EXIT_REFUSED
    assert "<- 404 Not Found" in out
    assert "hint: " in out and "/webhooks/census" in out.split("hint: ", 1)[1]


def test_get_on_the_webhook_path_is_shown_rejected(server: Serve) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(server.url, timeout=WAIT)
    assert info.value.code == 405
    info.value.close()
    server.wait_for(r"rejected +405 method_not_allowed: use POST")


def test_undocumented_event_is_sent_with_a_note_and_verified(
    server: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = send(capsys, "sync.paused", "--url", server.url, "--secret", SECRET)
    assert code == EXIT_OK
    assert "'sync.paused' is not a documented event" in err
    server.wait_for(r"verified +sync\.paused ")


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


def test_serve_reads_the_secret_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    serve = Serve("--path", "/census", env=cli_env(CENSUS_WEBHOOK_SECRET="from-the-env"))
    try:
        assert serve.url.endswith("/census")
        assert "generated" not in serve.output
        command = serve.wait_for(r" send sync\.completed ")
        assert "--secret" not in command
        monkeypatch.setenv("CENSUS_WEBHOOK_SECRET", "from-the-env")
        code, _, err = send(capsys, "sync.started", "--url", serve.url)
        assert code == EXIT_OK, err
        serve.wait_for(r"verified +sync\.started ")
    finally:
        assert serve.stop() == EXIT_OK


def test_serve_forward_and_exec_deliver_each_verified_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
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
                code, out, err = send(capsys, name, "--url", serve.url, "--secret", SECRET)
                assert code == EXIT_OK, out + err
                sent.append(make_body(name))
                serve.wait_for(rf"verified +{re.escape(name)} ")
            forged = send(capsys, "sync.started", "--url", serve.url, "--bad-signature")
            assert forged[0] == EXIT_REFUSED
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


def test_serve_answers_500_when_a_relay_fails_so_census_retries(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Recorder(statuses=lambda n: 502) as recorder:
        serve = Serve("--secret", SECRET, "--forward", recorder.url, "--exec", "exit 3")
        try:
            code, out, _ = send(capsys, "sync.failed", "--url", serve.url, "--secret", SECRET)
            assert code == EXIT_REFUSED
            assert "<- 500 Internal Server Error" in out
            line = serve.wait_for(r"verified +sync\.failed .* -> 500 \(a relay failed")
            assert "Census would retry" in line
            serve.wait_for(r"forwarded to .*: 502 Bad Gateway")
            serve.wait_for(r"exec 'exit 3': exit 3")
        finally:
            assert serve.stop() == EXIT_OK
    assert len(recorder.requests) == 1


def test_serve_forward_to_an_unreachable_url_answers_500(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"http://127.0.0.1:{closed_port}/hooks"
    serve = Serve("--secret", SECRET, "--forward", target)
    try:
        code, _, _ = send(capsys, "sync.failed", "--url", serve.url, "--secret", SECRET)
        assert code == EXIT_REFUSED
        serve.wait_for(r"verified +sync\.failed .* -> 500 \(a relay failed")
        serve.wait_for(rf"forwarded to {re.escape(target)}: failed: cannot reach")
    finally:
        assert serve.stop() == EXIT_OK


def test_serve_dedup_shows_a_repeat_as_duplicate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = tmp_path / "runs"
    serve = Serve("--secret", SECRET, "--dedup", "--exec", f"cat >> {sink}; echo >> {sink}")
    try:
        for expected in ('{"status": "ok"}', '{"status": "duplicate"}'):
            code, out, _ = send(capsys, "sync.failed", "--url", serve.url, "--secret", SECRET)
            assert code == EXIT_OK
            assert out.rstrip().endswith(expected)
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


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that is bound but not listening: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another socket listens on."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        yield taken.getsockname()[1]


def test_serve_refuses_a_port_in_use(taken_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", str(taken_port), "--secret", SECRET]) == EXIT_LISTEN
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{taken_port}" in err and "pick another --port" in err


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/webhooks/census",
        "http://localhost:{port}/webhooks/census",
        "http://[::1]:{port}/webhooks/census",
    ],
)
def test_serve_refuses_to_forward_to_itself(
    url: str, taken_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # The port is taken: if the forward were not refused first, serve would stop at
    # the port (exit 5) rather than start.
    target = url.format(port=taken_port)
    argv = ["serve", "--port", str(taken_port), "--secret", SECRET, "--forward", target]
    assert main(argv) == EXIT_INPUT
    assert f"--forward {target} is this server's own webhook URL" in capsys.readouterr().err


@pytest.mark.parametrize("url", ["ftp://x", "localhost:5000/hooks", "http:///hooks"])
def test_serve_refuses_a_forward_url_that_is_not_http_with_a_host(
    url: str, taken_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # The port is taken: if the URL were not refused first, serve would stop at the
    # port (exit 5) rather than start and fail every delivery.
    argv = ["serve", "--port", str(taken_port), "--secret", SECRET, "--forward", url]
    assert main(argv) == EXIT_INPUT
    err = capsys.readouterr().err
    assert f"--forward {url} is not an http:// or https:// URL with a host" in err
