"""census-receiver serve, in-process: its ASGI app driven with hand-built scope/receive/send,
and the arguments it refuses before listening.

serve under uvicorn, with real senders and relays, is in tests/integration/test_cli_serve.py.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from census_receiver import WebhookReceiver
from census_receiver.cli import EXIT_INPUT, main
from census_receiver.cli.console import Console
from census_receiver.cli.relay import Relay
from census_receiver.cli.serve import ServeApp
from census_receiver.dedup import InMemoryDedupStore
from census_receiver.journal import Journal, SQLiteJournal
from census_receiver.testing import make_delivery, sign

from .cli_tools import no_secret_in_env as no_secret_in_env
from .conftest import SECRET

PATH = "/webhooks/census"
CLIENT = "10.1.2.3"  # the address in every request's scope
Message = MutableMapping[str, Any]


class Served:
    """A ServeApp over a plain receiver, its console written to a string."""

    def __init__(
        self,
        relay: Relay | None = None,
        *,
        dedup: bool = False,
        fallback: Any = None,
        allowed_workspaces: list[int] | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.receiver = WebhookReceiver(
            SECRET,
            dedup=InMemoryDedupStore() if dedup else None,
            allowed_workspaces=allowed_workspaces,
            journal=journal,
        )
        self.out = io.StringIO()
        relay = relay if relay is not None else Relay()
        self.receiver.on("*")(relay.handler(SECRET))  # as serve registers it
        self.app = ServeApp(
            self.receiver, Console(self.out), path=PATH, relay=relay, fallback=fallback
        )

    @property
    def console(self) -> str:
        return self.out.getvalue()

    def request(
        self,
        body: bytes = b"",
        headers: Sequence[tuple[bytes, bytes]] = (),
        *,
        method: str = "POST",
        path: str = PATH,
        chunks: Sequence[bytes] | None = None,
        disconnect: bool = False,
    ) -> tuple[int | None, dict[str, str], bytes]:
        """Send one request; the answer's status, headers and body (None: nothing sent)."""
        pieces = list(chunks) if chunks is not None else [body]
        messages: list[Message] = [
            {"type": "http.request", "body": p, "more_body": i < len(pieces) - 1}
            for i, p in enumerate(pieces)
        ]
        if disconnect:
            messages = [*messages[:-1], {"type": "http.disconnect"}]
        sent: list[Message] = []

        async def receive() -> Message:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "headers": list(headers),
            "client": (CLIENT, 50123),
        }
        asyncio.run(self.app(scope, receive, send))
        if not sent:
            return None, {}, b""
        start, answer = sent
        names = {k.decode(): v.decode() for k, v in start["headers"]}
        return start["status"], names, answer["body"]

    def deliver(self, event: str = "sync.failed", **fields: Any) -> tuple[int | None, bytes]:
        d = make_delivery(event, secret=SECRET, **fields)
        headers = [(b"content-type", b"application/json"),
                   (b"x-signature", d.headers["X-Signature"].encode())]  # fmt: skip
        status, _, answer = self.request(d.body, headers)
        return status, answer


@pytest.fixture
def serving() -> Iterator[Callable[..., Served]]:
    """Make ``Served`` apps; their receivers are closed at teardown, pass or fail."""
    made: list[Served] = []

    def make(relay: Relay | None = None, **options: Any) -> Served:
        made.append(Served(relay, **options))
        return made[-1]

    yield make
    for served in made:
        served.receiver.close()


@pytest.fixture
def served(serving: Callable[..., Served]) -> Served:
    return serving()


def test_a_verified_delivery_is_handled_and_shown_with_its_payload(served: Served) -> None:
    assert served.deliver("sync.failed", sync_run_id=5) == (200, b'{"status": "ok"}')
    first, *payload = served.console.splitlines()
    assert first.endswith("verified   sync.failed  workspace=3167 sync=3167956 run=5  -> 200")
    assert json.loads("\n".join(payload))["sync_run_id"] == 5


def test_refusals_are_logged_in_the_journal_with_the_client_address(
    serving: Callable[..., Served], tmp_path: Path
) -> None:
    journal = SQLiteJournal(tmp_path / "journal.db")
    served = serving(journal=journal)
    forged = make_delivery("sync.failed", secret=SECRET, bad_signature=True)
    status, _, _ = served.request(
        forged.body, [(b"x-signature", forged.headers["X-Signature"].encode())]
    )
    assert status == 401
    assert served.request(method="GET")[0] == 405
    rejections = journal.rejections()
    assert [(r.status, r.reason, r.remote) for r in rejections] == [
        (405, "method_not_allowed", CLIENT),
        (401, "invalid_signature", CLIENT),
    ]
    journal.close()


def test_a_forged_delivery_is_refused_and_its_body_shown_unverified(served: Served) -> None:
    d = make_delivery("sync.failed", secret=SECRET, bad_signature=True, sync_run_id=666)
    status, _, _ = served.request(d.body, [(b"x-signature", d.headers["X-Signature"].encode())])
    assert status == 401
    assert "rejected   401 invalid_signature: " in served.console
    assert "    unverified body, not handled:" in served.console
    assert '"sync_run_id": 666' in served.console


def test_a_signed_but_malformed_payload_is_shown_verified_and_refused(served: Served) -> None:
    body = b'{"event": "sync.failed", "workspace_id": "not a number"}'
    status, _, _ = served.request(body, [(b"x-signature", sign(body, SECRET).encode())])
    assert status == 400
    assert "rejected   400 malformed_payload: " in served.console
    assert "    verified body, refused:" in served.console
    assert "unverified" not in served.console
    assert '"workspace_id": "not a number"' in served.console


def test_a_signed_payload_from_a_workspace_not_allowed_is_shown_verified_and_refused(
    serving: Callable[..., Served],
) -> None:
    s = serving(allowed_workspaces=[1])
    assert s.deliver("sync.failed", workspace_id=2)[0] == 403
    assert "rejected   403 workspace_not_allowed: " in s.console
    assert "    verified body, refused:" in s.console


def test_a_get_is_answered_405_without_reading_the_body(served: Served) -> None:
    status, headers, _ = served.request(method="GET", disconnect=True)
    assert (status, headers["allow"]) == (405, "POST")
    assert "rejected   405 method_not_allowed: use POST" in served.console


def test_a_declared_length_over_the_limit_is_answered_413_unread(served: Served) -> None:
    big = str(served.receiver.max_body_size + 1).encode()
    status, _, _ = served.request(headers=[(b"content-length", big)], disconnect=True)
    assert status == 413
    assert "rejected   413 payload_too_large" in served.console


def test_a_body_in_several_messages_is_read_whole(served: Served) -> None:
    d = make_delivery("sync.started", secret=SECRET)
    chunks = [d.body[:10], d.body[10:30], d.body[30:]]
    status, _, _ = served.request(
        headers=[(b"x-signature", d.headers["X-Signature"].encode())], chunks=chunks
    )
    assert status == 200
    assert "verified   sync.started " in served.console


def test_a_client_that_leaves_mid_body_is_not_answered(served: Served) -> None:
    d = make_delivery("sync.started", secret=SECRET)
    status, _, _ = served.request(chunks=[d.body[:10], d.body[10:]], disconnect=True)
    assert status is None
    assert served.console == ""


def test_other_paths_are_404_and_do_not_name_the_webhook_path(served: Served) -> None:
    status, _, body = served.request(b"{}", path="/elsewhere")
    assert status == 404
    assert PATH not in body.decode()
    assert served.console == ""


def test_other_paths_go_to_the_fallback_app(serving: Callable[..., Served]) -> None:
    seen: list[str] = []

    async def fallback(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"page"})

    s = serving(fallback=fallback)
    assert s.request(method="GET", path="/")[::2] == (200, b"page")
    assert s.deliver()[0] == 200
    assert seen == ["/"]


def test_a_failed_relay_answers_500_and_is_not_remembered_with_dedup(
    serving: Callable[..., Served], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    s = serving(Relay(commands=[f"echo run >> {runs}; exit 3"]), dedup=True)
    for _ in range(2):
        status, _ = s.deliver("sync.failed")
        assert status == 500
    assert runs.read_text() == "run\nrun\n"  # the retry ran the relay again
    assert s.console.count("-> 500 (a relay failed; Census would retry)") == 2
    assert "exec 'echo run >> " in s.console and "exit 3" in s.console


def test_dedup_answers_a_repeat_without_relaying_it_again(
    serving: Callable[..., Served], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    s = serving(Relay(commands=[f"echo run >> {runs}"]), dedup=True)
    assert s.deliver()[1] == b'{"status": "ok"}'
    assert s.deliver()[1] == b'{"status": "duplicate"}'
    assert runs.read_text() == "run\n"
    assert "duplicate  sync.failed " in s.console and "(already handled)" in s.console


def test_serve_refuses_a_relative_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--path", "webhooks", "--secret", SECRET]) == EXIT_INPUT
    assert "--path must start with '/'" in capsys.readouterr().err


def test_a_signature_header_repeated_is_refused(served: Served) -> None:
    body = b"{}"
    header = (b"x-signature", sign(body, SECRET).encode())
    status, _, _ = served.request(body, [header, header])
    assert status == 401
    assert "appears more than once" in served.console
