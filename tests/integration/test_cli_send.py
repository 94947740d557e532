"""census-receiver send against real local servers on 127.0.0.1, run in-process via main(argv)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from census_receiver import compute_signature
from census_receiver.cli import EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE, main
from tests.cli_tools import Recorder
from tests.cli_tools import no_secret_in_env as no_secret_in_env
from tests.conftest import SECRET


def send(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``census-receiver send ARGV`` in-process: exit status, stdout, stderr."""
    code = main(["send", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that is bound but not listening: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_send_fields_are_parsed_as_json_when_they_parse(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Recorder() as recorder:
        code, _, err = send(
            capsys, "sync.completed", "--url", recorder.url, "--secret", SECRET,
            "--set", "status=emergency", "--set", "sync_id=42", "--set", "workspace_id=null",
            "--set", "extra={\"a\": [1, true]}", "--set", "note=not json",
        )  # fmt: skip
    assert code == EXIT_OK, err
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


def test_send_prints_the_exchange(capsys: pytest.CaptureFixture[str]) -> None:
    with Recorder() as recorder:
        code, out, _ = send(capsys, "sync.started", "--url", recorder.url, "--secret", SECRET)
    assert code == EXIT_OK
    request, signature, body, answer = out.splitlines()
    _, _, sent = recorder.requests[0]
    assert request == f"-> POST {recorder.url}"
    assert signature == f"   X-Signature: {compute_signature(sent, SECRET)}"
    assert body == f"   {sent.decode()}"
    assert answer == '<- 200 OK {"attempt": 1}'


@pytest.mark.parametrize("status", [404, 405])
def test_send_answered_404_or_405_hints_at_the_webhook_path_and_url(
    status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with Recorder(statuses=lambda n: status) as recorder:
        code, out, _ = send(capsys, "sync.failed", "--url", recorder.url, "--secret", SECRET)
    assert code == EXIT_REFUSED
    answer, hint = out.splitlines()[-2:]
    assert answer.startswith(f"<- {status} ")
    assert hint.startswith("   hint: ")
    assert "/relay" in hint and "/webhooks/census" in hint and "--url" in hint


def test_send_to_the_default_path_answered_404_hints_at_a_path_given_to_the_receiver(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Recorder(statuses=lambda n: 404) as recorder:
        url = recorder.url.replace("/relay", "/webhooks/census")
        code, out, _ = send(capsys, "sync.failed", "--url", url, "--secret", SECRET)
    assert code == EXIT_REFUSED
    hint = out.splitlines()[-1]
    assert hint.startswith("   hint: nothing takes a webhook POST at /webhooks/census")
    assert "another path" in hint and "--url" in hint


def test_send_hints_once_across_retries(capsys: pytest.CaptureFixture[str]) -> None:
    with Recorder(statuses=lambda n: 404) as recorder:
        code, out, _ = send(
            capsys, "sync.failed", "--url", recorder.url, "--secret", SECRET,
            "--retry", "--retry-scale", "0",
        )  # fmt: skip
    assert code == EXIT_REFUSED
    assert out.count("hint: ") == 1


@pytest.mark.parametrize("status", [401, 500])
def test_send_gives_no_path_hint_for_other_refusals(
    status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with Recorder(statuses=lambda n: status) as recorder:
        code, out, _ = send(capsys, "sync.failed", "--url", recorder.url, "--secret", SECRET)
    assert code == EXIT_REFUSED
    assert "hint" not in out


# -- --retry -------------------------------------------------------------------------------


def test_send_retry_keeps_going_until_answered_2xx(capsys: pytest.CaptureFixture[str]) -> None:
    with Recorder(statuses=lambda n: 503 if n < 2 else 200) as recorder:
        code, out, _ = send(
            capsys, "sync.failed", "--url", recorder.url, "--secret", SECRET,
            "--retry", "--retry-scale", "0.001",
        )  # fmt: skip
    assert code == EXIT_OK, out
    assert len(recorder.requests) == 3
    assert len({body for _, _, body in recorder.requests}) == 1  # byte-identical retries
    assert "<- attempt 1: 503 Service Unavailable" in out
    assert "retrying in 0.004 s (Census's retry 1 of 5)" in out
    assert "retrying in 0.008 s (Census's retry 2 of 5)" in out
    assert '<- attempt 3: 200 OK {"attempt": 3}' in out


def test_send_retry_gives_up_after_censuss_five_retries(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Recorder(statuses=lambda n: 500) as recorder:
        code, out, _ = send(
            capsys, "sync.failed", "--url", recorder.url, "--secret", SECRET,
            "--retry", "--retry-scale", "0",
        )  # fmt: skip
    assert code == EXIT_REFUSED
    assert len(recorder.requests) == 6
    assert "retry 5 of 5" in out and "<- attempt 6: 500" in out


def test_send_retry_retries_an_unreachable_url(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{closed_port}/webhooks/census"
    code, out, err = send(capsys, "sync.failed", "--url", url, "--secret", SECRET, "--retry",
                          "--retry-scale", "0")  # fmt: skip
    assert code == EXIT_UNREACHABLE
    assert out.count("cannot reach") == 5  # attempts 1-5; the 6th is the error
    assert "cannot reach" in err


def test_send_does_not_follow_redirects(capsys: pytest.CaptureFixture[str]) -> None:
    with Recorder(statuses=lambda n: 307) as recorder:
        code, out, _ = send(capsys, "sync.failed", "--url", recorder.url, "--secret", SECRET)
    assert code == EXIT_REFUSED
    assert "307 Temporary Redirect (to /elsewhere)" in out
    assert len(recorder.requests) == 1


# -- errors --------------------------------------------------------------------------------


def test_send_to_an_unreachable_url_says_so(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{closed_port}/webhooks/census"
    code, _, err = send(capsys, "sync.failed", "--url", url, "--secret", SECRET)
    assert code == EXIT_UNREACHABLE
    assert f"cannot reach {url}" in err and "is the receiver running" in err


def test_send_to_a_receiver_that_never_answers_times_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A listening socket that never accepts: the kernel completes the connection and
    # takes the request, and no answer ever comes.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/webhooks/census"
        code, _, err = send(
            capsys, "sync.failed", "--url", url, "--secret", SECRET, "--timeout", "0.5"
        )
    assert code == EXIT_UNREACHABLE
    assert f"no answer from {url} within 0.5 s" in err
