"""census-receiver sign and verify, run in-process through main(argv)."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

import pytest

from census_receiver import WebhookReceiver
from census_receiver.cli import EXIT_INPUT, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, main
from census_receiver.testing import make_body

from .cli_tools import no_secret_in_env as no_secret_in_env
from .conftest import SECRET

PIN_BODY = (
    b'{"workspace_id": 3167, "sync_id": 3167956, "sync_run_id": 324399613, '
    b'"event": "sync.triggered"}'
)
# Made outside our code: printf '%s' "$PIN_BODY" |
#   openssl dgst -sha256 -hmac whsec_census_test -binary | base64
PIN_SIGNATURE = "KKWPa2wF/AlxBP1+M1mZfM0wWa4Iee9ASjuKSr0eoMM="
# The fingerprint of SECRET, made outside our code: the first 8 hex digits of
#   sha256(b"census-receiver/fingerprint\0" + b"whsec_census_test".ljust(64, b"\0"))
SECRET_FINGERPRINT = "56c724db"


@pytest.fixture
def body_file(tmp_path: Path) -> Path:
    path = tmp_path / "body.json"
    path.write_bytes(PIN_BODY)
    return path


def feed_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_sign_matches_a_signature_made_by_openssl(
    body_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sign", str(body_file), "--secret", SECRET]) == EXIT_OK
    assert capsys.readouterr().out == PIN_SIGNATURE + "\n"


def test_sign_reads_stdin_and_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CENSUS_WEBHOOK_SECRET", SECRET)
    feed_stdin(monkeypatch, PIN_BODY)
    assert main(["sign"]) == EXIT_OK
    assert capsys.readouterr().out.strip() == PIN_SIGNATURE


def test_sign_reads_stdin_for_a_dash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    feed_stdin(monkeypatch, PIN_BODY)
    assert main(["sign", "-", "--secret", SECRET]) == EXIT_OK
    assert capsys.readouterr().out.strip() == PIN_SIGNATURE


def test_sign_then_verify_round_trips_through_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    body = make_body("sync.alert.raised")
    feed_stdin(monkeypatch, body)
    assert main(["sign", "--secret", "s3cret"]) == EXIT_OK
    signature = capsys.readouterr().out.strip()
    feed_stdin(monkeypatch, body)
    argv = ["verify", "--signature", signature, "--secret", "other", "--secret", "s3cret"]
    assert main(argv) == EXIT_OK
    assert capsys.readouterr().out.startswith("verified (secret #2 ")


def test_verify_of_the_pinned_signature(
    body_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(body_file), "--signature", PIN_SIGNATURE, "--secret", SECRET]) == 0
    assert capsys.readouterr().out.startswith("verified (secret #1 ")


def test_verify_names_the_secret_by_number_and_fingerprint(
    body_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["verify", str(body_file), "--signature", PIN_SIGNATURE, "--secret", "other",
            "--secret", SECRET]  # fmt: skip
    assert main(argv) == EXIT_OK
    assert capsys.readouterr().out == f"verified (secret #2 [{SECRET_FINGERPRINT}] of 2)\n"


def test_verify_names_the_secret_as_the_receivers_log_does(
    body_file: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    receiver = WebhookReceiver(["other", SECRET])
    with caplog.at_level(logging.INFO, logger="census_receiver"):
        outcome = receiver.handle(PIN_BODY, {"X-Signature": PIN_SIGNATURE})
    receiver.close()
    assert outcome.ok
    argv = ["verify", str(body_file), "--signature", PIN_SIGNATURE, "--secret", "other",
            "--secret", SECRET]  # fmt: skip
    assert main(argv) == EXIT_OK
    label = capsys.readouterr().out.split("(", 1)[1].split(" of ", 1)[0]
    assert label == f"secret #2 [{SECRET_FINGERPRINT}]"
    assert label in caplog.text


def test_verify_fails_on_a_changed_body(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    feed_stdin(monkeypatch, PIN_BODY + b" ")
    assert main(["verify", "--signature", PIN_SIGNATURE, "--secret", SECRET]) == EXIT_REFUSED
    out = capsys.readouterr().out
    assert "not verified: the signature does not match the body for the secret" in out


def test_verify_fails_on_a_malformed_signature(
    body_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(body_file), "--signature", "abc", "--secret", SECRET]) == 1
    assert capsys.readouterr().out.startswith(
        "not verified: the X-Signature header is not a base64"
    )


def test_verify_fails_for_every_wrong_secret(
    body_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "verify",
        str(body_file),
        "--signature",
        PIN_SIGNATURE,
        "--secret",
        "a",
        "--secret",
        "b",
    ]
    assert main(argv) == EXIT_REFUSED
    assert "for any of the 2 secrets" in capsys.readouterr().out


def test_verify_needs_the_signature(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--secret", SECRET]) == EXIT_USAGE
    assert "the following arguments are required: --signature" in capsys.readouterr().err


def test_sign_of_a_missing_file_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.json"
    assert main(["sign", str(missing), "--secret", SECRET]) == EXIT_INPUT
    assert f"cannot read {missing}: No such file or directory" in capsys.readouterr().err


def test_sign_and_verify_without_a_secret_fail_with_a_hint(
    body_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sign", str(body_file)]) == EXIT_INPUT
    assert main(["verify", str(body_file), "--signature", PIN_SIGNATURE]) == EXIT_INPUT
    assert main(["sign", str(body_file), "--secret", ""]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert err.count("pass --secret S or set CENSUS_WEBHOOK_SECRET") == 2
    assert "--secret must not be empty" in err
