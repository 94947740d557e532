"""census-receiver send, in-process: its arguments and input errors.

Sending to real servers is in tests/integration/test_cli_send.py.
"""

from __future__ import annotations

import pytest

from census_receiver.cli import EXIT_INPUT, CommandFailed, main
from census_receiver.cli.send import parse_fields

from .cli_tools import no_secret_in_env as no_secret_in_env
from .conftest import SECRET


def test_set_values_are_json_when_they_parse_else_strings() -> None:
    fields = parse_fields(
        ["status=emergency", "sync_id=42", "workspace_id=null", 'extra={"a": [1, true]}',
         "note=not json", " padded =1", "empty="]
    )  # fmt: skip
    assert fields == {
        "status": "emergency",
        "sync_id": 42,
        "workspace_id": None,
        "extra": {"a": [1, True]},
        "note": "not json",
        "padded": 1,
        "empty": "",
    }


def test_a_later_set_of_the_same_key_wins() -> None:
    assert parse_fields(["sync_id=1", "sync_id=2"]) == {"sync_id": 2}


@pytest.mark.parametrize("bad", ["sync_id", "=42", "event=sync.failed"])
def test_parse_fields_refuses_a_malformed_item(bad: str) -> None:
    with pytest.raises(CommandFailed) as info:
        parse_fields([bad])
    assert info.value.code == EXIT_INPUT


def test_send_without_a_secret_says_where_to_get_one(capsys: pytest.CaptureFixture[str]) -> None:
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
