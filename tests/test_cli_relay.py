"""census_receiver.cli.relay: which --forward URLs serve accepts, and the --exec relay.

Forwarding to a real server is in tests/integration/test_cli_serve.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from census_receiver.cli import EXIT_INPUT, CommandFailed
from census_receiver.cli.relay import Relay, RelayFailed, check_forward, relays_to_itself
from census_receiver.events import parse_event
from census_receiver.testing import make_body


def check(url: str) -> None:
    """Check ``url`` as serve does when it listens on 127.0.0.1:8000/webhooks/census."""
    check_forward(url, host="127.0.0.1", port=8000, path="/webhooks/census")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/webhooks/census",
        "http://localhost:8000/webhooks/census",
        "http://[::1]:8000/webhooks/census",
    ],
)
def test_the_servers_own_url_is_refused(url: str) -> None:
    assert relays_to_itself(url, "127.0.0.1", 8000, "/webhooks/census")
    with pytest.raises(CommandFailed) as info:
        check(url)
    assert info.value.code == EXIT_INPUT
    assert f"--forward {url} is this server's own webhook URL" in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/webhooks/other",  # the app's own route on the same server
        "http://127.0.0.1:8001/webhooks/census",
        "http://example.test:8000/webhooks/census",
        "https://127.0.0.1:8000/webhooks/census",
    ],
)
def test_forward_targets_that_are_not_the_server_itself_are_accepted(url: str) -> None:
    assert not relays_to_itself(url, "127.0.0.1", 8000, "/webhooks/census")
    check(url)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x",
        "file:///etc/passwd",
        "localhost:5000/webhooks/census",  # no scheme
        "127.0.0.1:5000/webhooks/census",
        "http://",
        "http:///webhooks/census",
        "http://127.0.0.1:port/webhooks/census",
        "http://127.0.0.1:70000/webhooks/census",
    ],
)
def test_a_forward_url_that_is_not_http_with_a_host_is_refused(url: str) -> None:
    with pytest.raises(CommandFailed) as info:
        check(url)
    assert info.value.code == EXIT_INPUT
    assert f"--forward {url} is not an http:// or https:// URL with a host" in str(info.value)


def test_a_server_on_every_address_counts_as_local() -> None:
    assert relays_to_itself("http://localhost:8000/hook", "0.0.0.0", 8000, "/hook")
    assert not relays_to_itself("http://example.test:8000/hook", "0.0.0.0", 8000, "/hook")


def exec_relay(*commands: str, timeout: float = 10.0) -> tuple[Relay, bytes, list[str]]:
    return Relay(commands=commands, timeout=timeout), make_body("sync.failed", sync_id=7), []


def relayed(relay: Relay, body: bytes, notes: list[str]) -> None:
    """Relay ``body`` as serve does while handling a request."""
    with relay.handling(body, [], notes):
        relay.handler("s3cret")(parse_event(body))


def test_exec_gets_the_body_on_stdin_and_the_ids_in_the_environment(tmp_path: Path) -> None:
    sink = tmp_path / "seen"
    script = (
        "import os, sys; open(sys.argv[1], 'w').write(os.environ['CENSUS_EVENT'] + ' ' + "
        "os.environ['CENSUS_SYNC_ID'] + ' ' + sys.stdin.read()); print('done')"
    )
    relay, body, notes = exec_relay(f'{sys.executable} -c "{script}" {sink}')
    relayed(relay, body, notes)
    assert sink.read_text() == f"sync.failed 7 {body.decode()}"
    assert notes[0].endswith(": exit 0") and notes[1] == "  done"


def test_exec_that_fails_raises_so_the_delivery_is_answered_500() -> None:
    relay, body, notes = exec_relay("echo first", "exit 3")
    with pytest.raises(RelayFailed, match="exec 'exit 3': exit 3"):
        relayed(relay, body, notes)
    assert notes == ["exec 'echo first': exit 0", "  first", "exec 'exit 3': exit 3"]


def test_exec_that_runs_too_long_is_killed() -> None:
    relay, body, notes = exec_relay("sleep 5", timeout=0.2)
    with pytest.raises(RelayFailed, match="timed out"):
        relayed(relay, body, notes)
    assert notes == ["exec 'sleep 5': killed after 0.2 s"]


def test_a_relay_with_nothing_to_do_succeeds() -> None:
    body = make_body("sync.started")
    relayed(Relay(), body, [])  # raises nothing


def test_a_replayed_delivery_is_relayed_as_its_payload_signed_anew(tmp_path: Path) -> None:
    sink = tmp_path / "seen"
    relay = Relay(commands=[f"cat > {sink}"])
    body = make_body("sync.failed", sync_id=7)
    # No request being handled: a replay from the journal.
    relay.handler("s3cret")(parse_event(body))
    assert json.loads(sink.read_text()) == json.loads(body)
