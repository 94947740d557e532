"""The inspector over a real SQLite journal, driven as ASGI (by hand) and as WSGI (by hand).

Every request goes through both adapters (``app`` fixture) unless it is about
one of them: credentials (token, cookie, the user's ``auth``), the security
headers, escaping of payload values, replay and its cross-site refusals,
filters and paging, the live stream, mounting below a path, and the timeline's
arithmetic. The browser tests are in ``integration/test_inspector_browser.py``.
"""

from __future__ import annotations

import asyncio
import html
import io
import json
import re
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest

from bench import inspector as bench_inspector
from bench.harness import Budget
from census_receiver import ConfigurationError, Event, WebhookReceiver
from census_receiver.inspector import Inspector, InspectorRequest, WSGIInspector
from census_receiver.inspector.core import InspectorCore
from census_receiver.inspector.pages import duration, highlight_json, size, timeline
from census_receiver.journal import JournalUnavailable, SQLiteJournal
from census_receiver.runs import RunRecord
from census_receiver.testing import make_delivery

from .conftest import SECRET
from .support import WAIT, Channel, Message, body_messages, http_scope

TOKEN = "inspector-test-token-0123456789"
HOST = "127.0.0.1:8000"
ORIGIN = f"http://{HOST}"
CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
BEARER = (("authorization", f"Bearer {TOKEN}"),)
VIEWS = ["/", "/deliveries/1", "/live", "/rejections", "/runs", "/nowhere"]


# -- fixtures: a journal, a receiver with a handler that fails until fixed ----------------


class Flaky:
    """A ``sync.failed`` handler that raises until ``fixed`` is set."""

    def __init__(self) -> None:
        self.fixed = False
        self.calls = 0

    def __call__(self, event: Event) -> None:
        self.calls += 1
        if not self.fixed:
            raise ConnectionError("the ticketing system is down")


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[SQLiteJournal]:
    made = SQLiteJournal(tmp_path / "journal.db", synchronous="off")
    yield made
    made.close()


@pytest.fixture
def flaky() -> Flaky:
    return Flaky()


@pytest.fixture
def recorder(journal: SQLiteJournal, flaky: Flaky) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(SECRET, journal=journal)
    receiver.on("sync.failed")(flaky)
    receiver.on("sync.completed", "sync.success", "sync.triggered", "sync.started")(lambda e: None)
    yield receiver
    receiver.close()


def deliver(receiver: WebhookReceiver, event: str, **fields: Any) -> int:
    """Deliver a signed ``event``; the status answered."""
    delivery = make_delivery(event, secret=SECRET, **fields)
    return receiver.handle(delivery.body, delivery.headers).status


# -- driving the two adapters by hand ---------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)

    def cookies(self) -> list[str]:
        return [v for k, v in self.headers if k.lower() == "set-cookie"]

    @property
    def text(self) -> str:
        return self.body.decode()


class Client(Protocol):
    def __call__(
        self,
        target: str,
        *,
        method: str = "GET",
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        root: str = "",
    ) -> Answer: ...


class EndlessChannel(Channel):
    """A connection that stays open until ``leave()``: for the live stream."""

    def __init__(self) -> None:
        super().__init__(body_messages(b""))
        self.left = asyncio.Event()

    async def receive(self) -> Message:
        message = next(self.pending, None)
        if message is not None:
            return message
        await self.left.wait()
        return {"type": "http.disconnect"}

    def leave(self) -> None:
        self.left.set()


def asgi_client(app: Inspector) -> Client:
    def call(
        target: str,
        *,
        method: str = "GET",
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        root: str = "",
    ) -> Answer:
        path, _, query = target.partition("?")
        scope = http_scope(
            root + path, method=method, headers=[("host", HOST), *headers], root_path=root
        )
        scope["query_string"] = query.encode()
        channel = Channel(body_messages(body))
        asyncio.run(asyncio.wait_for(app(scope, channel.receive, channel.send), WAIT))
        start = channel.sent[0]
        pairs = [(k.decode(), v.decode("latin-1")) for k, v in start["headers"]]
        return Answer(start["status"], pairs, channel.body)

    return call


def environ_for(
    target: str, method: str, headers: Iterable[tuple[str, str]], body: bytes, root: str
) -> dict[str, Any]:
    path, _, query = target.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": root,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": HOST,
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
    for name, value in headers:
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = value
    return environ


def wsgi_client(app: WSGIInspector) -> Client:
    def call(
        target: str,
        *,
        method: str = "GET",
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        root: str = "",
    ) -> Answer:
        started: list[Any] = []

        def start_response(status: str, pairs: list[tuple[str, str]], exc: Any = None) -> Any:
            started.extend([int(status.split()[0]), pairs])

        chunks = app(environ_for(target, method, headers, body, root), start_response)
        iterator = iter(chunks)
        # A live stream never ends by itself: its first chunk is enough here.
        is_stream = ("content-type", "text/event-stream; charset=utf-8") in started[1]
        data = next(iterator, b"") if is_stream else b"".join(iterator)
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        return Answer(started[0], started[1], data)

    return call


Maker = Callable[..., Client]


@pytest.fixture(params=["asgi", "wsgi"])
def make_client(request: pytest.FixtureRequest, journal: SQLiteJournal) -> Maker:
    """Build an inspector of the parametrized kind over ``journal``; return its client."""

    def make(**options: Any) -> Client:
        options.setdefault("token", TOKEN)
        if request.param == "asgi":
            return asgi_client(Inspector(journal, **options))
        return wsgi_client(WSGIInspector(journal, **options))

    return make


@pytest.fixture
def client(make_client: Maker, recorder: WebhookReceiver) -> Client:
    return make_client(receiver=recorder)


def session(client: Client) -> str:
    """Log in with ``?token=``, as the URL ``serve`` prints: the cookie to send back."""
    answer = client(f"/?token={TOKEN}")
    return answer.cookies()[0].split(";")[0]


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "no replay form on the page"
    return found.group(1)


def post_replay(
    client: Client, headers: Iterable[tuple[str, str]], body: bytes = b"", delivery_id: int = 1
) -> Answer:
    """POST the replay form of a delivery, as the page's button does."""
    return client(f"/deliveries/{delivery_id}/replay", method="POST", headers=headers, body=body)


# -- construction -----------------------------------------------------------------------------


def test_inspector_refuses_to_be_built_without_credentials(journal: SQLiteJournal) -> None:
    with pytest.raises(ConfigurationError, match="needs credentials"):
        Inspector(journal)
    with pytest.raises(ConfigurationError, match="needs credentials"):
        WSGIInspector(journal)


def test_inspector_refuses_an_empty_token(journal: SQLiteJournal) -> None:
    with pytest.raises(ConfigurationError, match="non-empty"):
        Inspector(journal, token="")


@pytest.mark.parametrize("interval", [0, -1, 61, True, "1"])
def test_inspector_refuses_a_live_interval_out_of_range(
    journal: SQLiteJournal, interval: object
) -> None:
    with pytest.raises(ConfigurationError, match="live_interval"):
        Inspector(journal, token=TOKEN, live_interval=interval)  # type: ignore[arg-type]


def test_inspector_refuses_something_that_is_not_a_journal() -> None:
    with pytest.raises(ConfigurationError, match="must be a Journal"):
        Inspector("census.db", token=TOKEN)  # type: ignore[arg-type]


def test_inspector_refuses_a_receiver_recording_to_another_journal(
    journal: SQLiteJournal, tmp_path: Path
) -> None:
    other = SQLiteJournal(tmp_path / "other.db")
    receiver = WebhookReceiver(SECRET, journal=other)
    try:
        with pytest.raises(ConfigurationError, match="another journal"):
            Inspector(journal, receiver=receiver, token=TOKEN)
    finally:
        receiver.close()
        other.close()


def test_inspector_without_jinja2_names_the_extra_to_install(
    journal: SQLiteJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "jinja2", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'census-receiver[inspector]'")):
        Inspector(journal, token=TOKEN)


# -- credentials ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", VIEWS)
def test_every_view_refuses_a_request_without_credentials(
    client: Client, recorder: WebhookReceiver, path: str
) -> None:
    deliver(recorder, "sync.failed", sync_run_id=4242)
    answer = client(path)
    assert answer.status == 401
    assert "4242" not in answer.text and "sync.failed" not in answer.text
    assert answer.header("www-authenticate") == 'Bearer realm="census-inspector"'


@pytest.mark.parametrize("path", VIEWS)
def test_every_view_refuses_a_wrong_token(client: Client, path: str) -> None:
    assert client(path, headers=[("authorization", "Bearer not-the-token")]).status == 401
    assert client(path, headers=[("cookie", "census_inspector=forged")]).status == 401


def test_replay_refuses_a_request_without_credentials(
    client: Client, recorder: WebhookReceiver, flaky: Flaky
) -> None:
    deliver(recorder, "sync.failed")
    flaky.fixed = True
    answer = post_replay(
        client, [("origin", ORIGIN), ("sec-fetch-site", "same-origin")], b"csrf=anything"
    )
    assert answer.status == 401
    assert flaky.calls == 1


def test_bearer_token_lets_a_request_in(client: Client) -> None:
    answer = client("/", headers=BEARER)
    assert answer.status == 200
    assert "<h1>Deliveries" in answer.text


def test_token_in_the_url_sets_a_strict_cookie_and_redirects_to_the_clean_url(
    client: Client,
) -> None:
    answer = client(f"/runs?token={TOKEN}&sync=7")
    assert answer.status == 303
    assert answer.header("location") == "/runs?sync=7"
    (cookie,) = answer.cookies()
    name, _, rest = cookie.partition("=")
    assert name == "census_inspector"
    assert TOKEN not in cookie  # an HMAC of the token, not the token
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= {p.strip() for p in rest.split(";")}
    assert client("/runs?sync=7", headers=[("cookie", cookie.split(";")[0])]).status == 200


def test_wrong_token_in_the_url_sets_no_cookie(client: Client) -> None:
    answer = client("/?token=wrong")
    assert answer.status == 401
    assert answer.cookies() == []


def test_auth_callable_decides_who_comes_in(make_client: Maker, recorder: WebhookReceiver) -> None:
    seen: list[InspectorRequest] = []

    def auth(request: InspectorRequest) -> bool:
        seen.append(request)
        return request.headers.get("x-user") == "ada"

    client = make_client(receiver=recorder, token=None, auth=auth)
    assert client("/runs", headers=[("x-user", "ada")]).status == 200
    assert client("/runs", headers=[("x-user", "eve")]).status == 401
    assert client("/runs").status == 401
    assert seen[0].path == "/runs"
    assert seen[0].raw  # the scope or environ, for the user's own request object
    assert client(f"/?token={TOKEN}").status == 401  # no token configured: none accepted


def test_static_files_need_no_credentials_and_carry_no_data(client: Client) -> None:
    css = client("/static/inspector.css")
    assert css.status == 200
    assert css.header("content-type") == "text/css; charset=utf-8"
    script = client("/static/inspector.js")
    assert script.header("content-type") == "text/javascript; charset=utf-8"
    assert "EventSource" in script.text
    assert client("/static/../core.py").status == 404
    assert client("/static/secret.txt").status == 404


# -- security headers and escaping ------------------------------------------------------------


@pytest.mark.parametrize("path", [*VIEWS, "/static/inspector.css", "/?token=x"])
def test_every_answer_carries_the_security_headers(client: Client, path: str) -> None:
    for headers in ((), BEARER):
        answer = client(path, headers=headers)
        assert answer.header("content-security-policy") == CSP
        assert answer.header("x-content-type-options") == "nosniff"
        assert answer.header("referrer-policy") == "no-referrer"
        if not path.startswith("/static/"):
            assert answer.header("cache-control") == "no-store"


HOSTILE = "<script>document.title='pwned'</script>"


def test_payload_values_are_escaped_on_every_page(
    client: Client, recorder: WebhookReceiver
) -> None:
    deliver(recorder, "sync.alert.raised", message=HOSTILE, sync_run_id=77)
    deliver(recorder, "<img src=x onerror=alert(1)>")
    for path in ["/", "/deliveries/1", "/deliveries/2", "/runs", "/?event=<b>"]:
        answer = client(path, headers=BEARER)
        assert answer.status == 200, path
        assert "<script>document" not in answer.text
        assert "<img src=x" not in answer.text
    assert "&lt;script&gt;document.title=" in client("/deliveries/1", headers=BEARER).text
    assert "&lt;img src=x onerror=alert(1)&gt;" in client("/", headers=BEARER).text


def test_pages_have_no_inline_script_or_style(client: Client, recorder: WebhookReceiver) -> None:
    deliver(recorder, "sync.failed")
    deliver(recorder, "sync.triggered", sync_run_id=5)
    for path in ["/", "/deliveries/1", "/runs", "/rejections", "/nowhere"]:
        html = client(path, headers=BEARER).text
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert re.search(r'\bsrc="[^"]+"', tag), tag
        assert all(
            not body.strip() for body in re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S)
        )
        assert " style=" not in html and "<style" not in html
        assert re.findall(r"\son[a-z]+=", html) == []


# -- the views --------------------------------------------------------------------------------


def test_delivery_page_shows_ids_payload_answer_attempts_and_traceback(
    client: Client, recorder: WebhookReceiver
) -> None:
    assert deliver(recorder, "sync.failed", sync_id=31, sync_run_id=3141) == 500
    html = client("/deliveries/1", headers=BEARER).text
    assert "Delivery #1" in html
    assert ">3141</a>" in html and ">31</a>" in html and "3167" in html
    assert '<span class="k">&quot;sync_run_id&quot;</span>: <span class="n">3141</span>' in html
    assert "handler_error" in html and "500" in html
    assert "ConnectionError" in html and "Traceback (most recent call last)" in html
    assert "the ticketing system is down" in html
    assert "census" in re.search(r"<h2>Attempts</h2>.*?</table>", html, re.S).group(0)  # type: ignore[union-attr]
    assert 'id="replay"' in html


def test_delivery_page_of_an_unknown_id_is_404(client: Client) -> None:
    answer = client("/deliveries/99", headers=BEARER)
    assert answer.status == 404
    assert "no delivery #99" in answer.text


def test_list_shows_newest_first_with_status_and_counts(
    client: Client, recorder: WebhookReceiver
) -> None:
    deliver(recorder, "sync.triggered", sync_run_id=1)
    deliver(recorder, "sync.failed", sync_run_id=2)
    html = client("/", headers=BEARER).text
    assert html.index('id="d-2"') < html.index('id="d-1"')
    assert '<span class="badge failed">failed</span>' in html
    assert "1 handled" in html and "1 failed" in html


def test_list_filters_by_status_event_sync_and_run(
    client: Client, recorder: WebhookReceiver
) -> None:
    deliver(recorder, "sync.triggered", sync_id=10, sync_run_id=100)
    deliver(recorder, "sync.failed", sync_id=10, sync_run_id=101)
    deliver(recorder, "sync.triggered", sync_id=20, sync_run_id=200)

    def ids(query: str) -> list[str]:
        answer = client(f"/?{query}", headers=BEARER)
        assert answer.status == 200
        return re.findall(r'<tr id="d-(\d+)"', answer.text)

    assert ids("status=failed") == ["2"]
    assert ids("event=sync.triggered") == ["3", "1"]
    assert ids("sync=10") == ["2", "1"]
    assert ids("run=200") == ["3"]
    assert ids("sync=10&event=sync.triggered") == ["1"]
    assert ids("status=&event=&sync=") == ["3", "2", "1"]


@pytest.mark.parametrize("query", ["status=lost", "sync=ten", "run=-1", "before=1e3"])
def test_list_refuses_a_malformed_filter_with_400(client: Client, query: str) -> None:
    answer = client(f"/?{query}", headers=BEARER)
    assert answer.status == 400


def test_list_pages_by_id_with_an_older_link(client: Client, journal: SQLiteJournal) -> None:
    fill(journal, 120)
    first = client("/", headers=BEARER).text
    assert len(re.findall(r'<tr id="d-', first)) == 50
    older = re.search(r'class="older" href="([^"]+)"', first)
    assert older is not None
    assert older.group(1) == "/?before=71"
    second = client("/?before=71", headers=BEARER).text
    ids = re.findall(r'<tr id="d-(\d+)"', second)
    assert ids[0] == "70" and ids[-1] == "21"
    assert "data-live" not in second  # only the newest page is live
    assert 'data-live="/live?after=120"' in first


def test_rejections_page_shows_time_reason_address_and_size(
    client: Client, recorder: WebhookReceiver
) -> None:
    forged = make_delivery("sync.failed", secret=SECRET, bad_signature=True)
    recorder.triage(forged.body, forged.headers, remote="192.0.2.44")
    html = client("/rejections", headers=BEARER).text
    assert "invalid_signature" in html and "192.0.2.44" in html
    assert f"{len(forged.body)} B" in html


def test_runs_page_draws_each_run_with_its_health(
    client: Client, recorder: WebhookReceiver
) -> None:
    deliver(recorder, "sync.triggered", sync_id=9, sync_run_id=901)
    deliver(recorder, "sync.started", sync_id=9, sync_run_id=901)
    deliver(recorder, "sync.completed", sync_id=9, sync_run_id=901, status="ok")
    deliver(recorder, "sync.success", sync_id=9, sync_run_id=901)
    deliver(recorder, "sync.triggered", sync_id=9, sync_run_id=902)
    deliver(recorder, "sync.alert.raised", sync_id=9, sync_run_id=902, message="Sync Failed")
    html = client("/runs", headers=BEARER).text
    assert 'id="sync-9"' in html and 'id="run-901"' in html and 'id="run-902"' in html
    assert re.search(r'class="seg work succeeded w-\d+"', html)
    assert "Sync Failed (raised)" in html
    assert "Finished runs</dt><dd>1<" in html
    only = client("/runs?sync=9", headers=BEARER).text
    assert 'id="run-901"' in only
    assert "No run recorded" in client("/runs?sync=8", headers=BEARER).text


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/deliveries/\u00b2", 404),
        ("/deliveries/" + "9" * 30, 404),
        ("/deliveries/-1", 404),
        ("/?sync=" + "9" * 30, 400),
        ("/?before=\u00b2", 400),
        ("/runs?sync=\u0663", 400),
        ("/live?after=" + "9" * 19, 400),
    ],
)
def test_ids_that_are_not_plain_numbers_are_refused_not_crashed_on(
    client: Client, target: str, status: int
) -> None:
    path, _, query = target.partition("?")  # servers hand over the path decoded, not the query
    quoted = f"{path}?{urllib.parse.quote(query, safe='=')}" if query else path
    assert client(quoted, headers=BEARER).status == status


def test_import_loads_no_template_engine_until_an_inspector_is_built() -> None:
    code = (
        "import sys, json\n"
        "import census_receiver.inspector\n"
        "print(json.dumps(sorted(m for m in ('jinja2', 'markupsafe') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_head_answers_headers_only_and_other_methods_are_refused(client: Client) -> None:
    head = client("/", method="HEAD", headers=BEARER)
    assert head.status == 200 and head.body == b""
    put = client("/", method="PUT", headers=BEARER)
    assert put.status == 405 and put.header("allow") == "GET, HEAD, POST"
    post = client("/runs", method="POST", headers=BEARER)
    assert post.status == 405 and post.header("allow") == "GET, HEAD"


def test_journal_failure_is_answered_503(journal: SQLiteJournal, recorder: WebhookReceiver) -> None:
    class Broken(SQLiteJournal):
        def deliveries(self, **filters: Any) -> Any:
            raise JournalUnavailable("database is locked")

    broken = Broken(journal.path)
    try:
        client = asgi_client(Inspector(broken, token=TOKEN))
        answer = client("/", headers=BEARER)
        assert answer.status == 503
        assert "cannot be read" in answer.text
    finally:
        broken.close()


# -- replay and cross-site requests -----------------------------------------------------------


def replay_form(client: Client, cookie: str, delivery_id: int = 1) -> str:
    return csrf_of(client(f"/deliveries/{delivery_id}", headers=[("cookie", cookie)]).text)


SAME_ORIGIN = [("origin", ORIGIN), ("sec-fetch-site", "same-origin")]


def test_replay_from_the_page_runs_the_handlers_again(
    client: Client, recorder: WebhookReceiver, flaky: Flaky, journal: SQLiteJournal
) -> None:
    deliver(recorder, "sync.failed")
    flaky.fixed = True
    cookie = session(client)
    csrf = replay_form(client, cookie)
    answer = post_replay(client, [("cookie", cookie), *SAME_ORIGIN], f"csrf={csrf}".encode())
    assert answer.status == 303
    assert answer.header("location") == "/deliveries/1?replayed=1"
    assert flaky.calls == 2
    record = journal.get(1)
    assert record is not None and record.status == "handled"
    page = client("/deliveries/1?replayed=1", headers=[("cookie", cookie)]).text
    assert "answered 200 (handled)" in page
    assert 'id="replay"' not in page  # handled now: no button


@pytest.mark.parametrize(
    "headers",
    [
        [("sec-fetch-site", "cross-site")],
        [("sec-fetch-site", "same-site")],
        [("origin", "http://attacker.invalid")],
        [("origin", "null")],
        [("origin", "http://127.0.0.1:8001")],
        [("sec-fetch-site", "cross-site"), ("origin", ORIGIN)],
        [("sec-fetch-site", "none")],
    ],
    ids=[
        "cross-site",
        "same-site",
        "other-origin",
        "opaque-origin",
        "other-port",
        "cross-site-claiming-origin",
        "typed-in",
    ],
)
def test_replay_refuses_a_cross_site_post(
    client: Client, recorder: WebhookReceiver, flaky: Flaky, headers: list[tuple[str, str]]
) -> None:
    deliver(recorder, "sync.failed")
    flaky.fixed = True
    cookie = session(client)
    csrf = replay_form(client, cookie)
    answer = post_replay(client, [("cookie", cookie), *headers], f"csrf={csrf}".encode())
    assert answer.status == 403
    assert flaky.calls == 1


@pytest.mark.parametrize(
    "body", [b"", b"csrf=", b"csrf=0123abcd", b"\xff\xfe", b"csrf=" + b"a" * 5000]
)
def test_replay_refuses_a_missing_or_wrong_csrf_token(
    client: Client, recorder: WebhookReceiver, flaky: Flaky, body: bytes
) -> None:
    deliver(recorder, "sync.failed")
    cookie = session(client)
    answer = post_replay(client, [("cookie", cookie), *SAME_ORIGIN], body)
    assert answer.status == 403
    assert flaky.calls == 1


def test_replay_accepts_a_same_origin_browser_whose_origin_is_null(
    client: Client, recorder: WebhookReceiver, flaky: Flaky
) -> None:
    # The pages' no-referrer policy makes browsers send "Origin: null" even to their own origin.
    deliver(recorder, "sync.failed")
    flaky.fixed = True
    cookie = session(client)
    answer = post_replay(
        client,
        [("cookie", cookie), ("sec-fetch-site", "same-origin"), ("origin", "null")],
        f"csrf={replay_form(client, cookie)}".encode(),
    )
    assert answer.status == 303
    assert flaky.calls == 2


def test_replay_with_auth_only_uses_a_double_submit_cookie(
    make_client: Maker, recorder: WebhookReceiver, flaky: Flaky
) -> None:
    deliver(recorder, "sync.failed")
    flaky.fixed = True
    client = make_client(receiver=recorder, token=None, auth=lambda request: True)
    page = client("/deliveries/1")
    (set_cookie,) = page.cookies()
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    cookie = set_cookie.split(";")[0]
    csrf = csrf_of(page.text)
    assert cookie == f"census_inspector_csrf={csrf}"
    stale = post_replay(client, SAME_ORIGIN, f"csrf={csrf}".encode())
    assert stale.status == 403  # the value without its cookie
    done = post_replay(client, [("cookie", cookie), *SAME_ORIGIN], f"csrf={csrf}".encode())
    assert done.status == 303
    assert flaky.calls == 2


def test_replay_without_a_receiver_is_off(make_client: Maker, recorder: WebhookReceiver) -> None:
    deliver(recorder, "sync.failed")
    client = make_client()
    assert 'id="replay"' not in client("/deliveries/1", headers=BEARER).text
    answer = post_replay(client, [*BEARER, *SAME_ORIGIN])
    assert answer.status == 404


def test_replay_of_an_unknown_delivery_is_404(client: Client) -> None:
    answer = post_replay(
        client, [*BEARER, *SAME_ORIGIN], b"csrf=" + token_csrf().encode(), delivery_id=5
    )
    assert answer.status == 404


def token_csrf() -> str:
    import hashlib
    import hmac

    return hmac.new(TOKEN.encode(), b"census-inspector csrf", hashlib.sha256).hexdigest()


def test_replay_accepts_a_bearer_client_without_browser_headers(
    client: Client, recorder: WebhookReceiver, flaky: Flaky
) -> None:
    deliver(recorder, "sync.failed")
    flaky.fixed = True
    answer = post_replay(client, BEARER, f"csrf={token_csrf()}".encode())
    assert answer.status == 303
    assert flaky.calls == 2


# -- mounting ---------------------------------------------------------------------------------


def test_links_and_cookies_follow_the_mount_point(client: Client) -> None:
    bare = client("", headers=BEARER, root="/inspector")
    assert bare.status == 303 and bare.header("location") == "/inspector/"
    login = client(f"/?token={TOKEN}", root="/inspector")
    assert login.header("location") == "/inspector/"
    assert "Path=/inspector;" in login.cookies()[0]
    html = client("/", headers=BEARER, root="/inspector").text
    assert 'href="/inspector/runs"' in html
    assert 'src="/inspector/static/inspector.js?v=' in html
    assert 'data-live="/inspector/live?after=0"' in html


def test_asgi_app_accepts_the_rest_of_the_path_as_older_starlette_gave_it(
    journal: SQLiteJournal,
) -> None:
    app = Inspector(journal, token=TOKEN)
    scope = http_scope("/runs", method="GET", headers=[*BEARER, ("host", HOST)], root_path="/x")
    channel = Channel(body_messages(b""))
    asyncio.run(app(scope, channel.receive, channel.send))
    assert channel.status == 200
    assert 'href="/x/runs"' in channel.body.decode()


def test_asgi_app_closes_websockets_and_answers_lifespan(journal: SQLiteJournal) -> None:
    app = Inspector(journal, token=TOKEN)
    channel = Channel()
    asyncio.run(app({"type": "websocket", "path": "/"}, channel.receive, channel.send))
    assert channel.sent == [{"type": "websocket.close", "code": 1000}]
    life = Channel([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    asyncio.run(app({"type": "lifespan"}, life.receive, life.send))
    assert [m["type"] for m in life.sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert app.closed


# -- the live list ----------------------------------------------------------------------------


def live_stream(journal: SQLiteJournal, query: str) -> Any:
    core = InspectorCore(journal, token=TOKEN, live_interval=0.01)
    response = core.handle(InspectorRequest("GET", "/live", query=query, headers=dict(BEARER)))
    assert response.status == 200
    assert response.stream is not None
    return response.stream


def test_live_stream_sends_each_new_delivery_once_as_an_escaped_row(
    journal: SQLiteJournal, recorder: WebhookReceiver
) -> None:
    deliver(recorder, "sync.triggered", sync_run_id=1)
    stream = live_stream(journal, "after=1")
    assert stream.start() == b"retry: 1000\n\n"
    assert stream.poll() == b""
    deliver(recorder, "sync.alert.raised", event_note=HOSTILE, sync_run_id=2)
    deliver(recorder, "<i>odd</i>", sync_run_id=3)
    sent = stream.poll().decode()
    events = sent.split("\n\n")
    assert events[0].startswith('event: delivery\nid: 3\ndata: <tr id="d-2"')
    assert events[1].startswith('event: delivery\nid: 3\ndata: <tr id="d-3"')
    assert "&lt;i&gt;odd&lt;/i&gt;" in events[1] and "<i>" not in sent
    assert events[2].startswith("event: counts\ndata: ")
    assert stream.poll() == b""


def test_live_stream_keeps_to_the_filters(
    journal: SQLiteJournal, recorder: WebhookReceiver
) -> None:
    stream = live_stream(journal, "after=0&status=failed")
    stream.poll()
    deliver(recorder, "sync.triggered")
    deliver(recorder, "sync.failed")
    sent = stream.poll().decode()
    assert 'id="d-2"' in sent and 'id="d-1"' not in sent


def test_live_stream_resumes_from_last_event_id(
    journal: SQLiteJournal, recorder: WebhookReceiver
) -> None:
    for run in (1, 2, 3):
        deliver(recorder, "sync.triggered", sync_run_id=run)
    core = InspectorCore(journal, token=TOKEN)
    headers = {**dict(BEARER), "last-event-id": "2"}
    response = core.handle(InspectorRequest("GET", "/live", query="after=0", headers=headers))
    assert response.stream is not None
    sent = response.stream.poll().decode()
    assert 'id="d-3"' in sent and 'id="d-2"' not in sent


def test_live_stream_updates_a_row_when_its_status_settles(
    journal: SQLiteJournal, flaky: Flaky
) -> None:
    capturing = WebhookReceiver(SECRET, journal=journal, acknowledge="on_capture")
    capturing.on("sync.failed")(flaky)
    try:
        deliver(capturing, "sync.failed")
        stream = live_stream(journal, "after=1&pending=1")  # as the page gives it
        assert stream.poll() == b""  # shown as pending already
        flaky.fixed = True
        assert capturing.run_pending() == 1
        sent = stream.poll().decode()
        assert 'id="d-1"' in sent and "badge handled" in sent
        assert stream.poll() == b""
    finally:
        capturing.close()


def test_a_row_that_settles_before_the_stream_connects_is_sent_on_its_first_poll(
    client: Client, journal: SQLiteJournal, flaky: Flaky
) -> None:
    capturing = WebhookReceiver(SECRET, journal=journal, acknowledge="on_capture")
    capturing.on("sync.failed")(flaky)
    try:
        deliver(capturing, "sync.failed")
        deliver(capturing, "sync.triggered", sync_run_id=2)
        page = client("/", headers=BEARER).text
        live = html.unescape(page.split('data-live="', 1)[1].split('"', 1)[0])
        assert live == "/live?after=2&pending=2%2C1"  # both rows, as they were shown
        flaky.fixed = True
        assert capturing.run_pending() == 2  # both settle before the browser connects
        stream = live_stream(journal, live.split("?", 1)[1])
        sent = stream.poll().decode()
        assert 'id="d-1"' in sent and 'id="d-2"' in sent and "badge pending" not in sent
        assert stream.poll() == b""
    finally:
        capturing.close()


@pytest.mark.parametrize("query", ["after=0&pending=x", "after=0&running=1,,2"])
def test_live_stream_refuses_malformed_unsettled_ids(client: Client, query: str) -> None:
    assert client(f"/live?{query}", headers=BEARER).status == 400


def test_live_stream_sends_a_heartbeat_when_quiet_and_ends_on_close(
    journal: SQLiteJournal,
) -> None:
    stream = live_stream(journal, "after=0")
    stream.heartbeat = 0.0
    assert stream.poll() == b": keep-alive\n\n"
    assert not stream.finished
    stream.core.close()
    assert stream.finished


def test_asgi_live_stream_pushes_rows_until_the_client_leaves(
    journal: SQLiteJournal, recorder: WebhookReceiver
) -> None:
    app = Inspector(journal, token=TOKEN, live_interval=0.01)
    scope = http_scope("/live", method="GET", headers=[*BEARER, ("host", HOST)])
    scope["query_string"] = b"after=0"

    async def scenario() -> EndlessChannel:
        channel = EndlessChannel()
        task = asyncio.ensure_future(app(scope, channel.receive, channel.send))
        await wait_async(lambda: len(channel.sent) >= 2)
        assert channel.sent[0]["status"] == 200
        await asyncio.to_thread(deliver, recorder, "sync.triggered")
        await wait_async(lambda: b"d-1" in channel.body)
        channel.leave()
        await asyncio.wait_for(task, WAIT)
        return channel

    channel = asyncio.run(scenario())
    assert dict(channel.sent[0]["headers"])[b"content-type"] == b"text/event-stream; charset=utf-8"


def test_asgi_live_stream_ends_when_the_inspector_closes(journal: SQLiteJournal) -> None:
    app = Inspector(journal, token=TOKEN, live_interval=0.01)
    scope = http_scope("/live", method="GET", headers=[*BEARER, ("host", HOST)])

    async def scenario() -> EndlessChannel:
        channel = EndlessChannel()
        task = asyncio.ensure_future(app(scope, channel.receive, channel.send))
        await wait_async(lambda: len(channel.sent) >= 2)
        app.close()
        await asyncio.wait_for(task, WAIT)
        return channel

    channel = asyncio.run(scenario())
    assert channel.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


def test_wsgi_live_stream_yields_rows_and_ends_on_close(
    journal: SQLiteJournal, recorder: WebhookReceiver
) -> None:
    app = WSGIInspector(journal, token=TOKEN, live_interval=0.01)
    environ = environ_for("/live?after=0", "GET", BEARER, b"", "")
    chunks = iter(app(environ, lambda status, headers, exc=None: lambda data: None))
    assert next(chunks) == b"retry: 1000\n\n"
    deliver(recorder, "sync.triggered")
    got = b""
    while b"d-1" not in got:
        got += next(chunks)
    done = threading.Event()

    def drain() -> None:
        for _ in chunks:
            pass
        done.set()

    threading.Thread(target=drain, daemon=True).start()
    app.close()
    assert done.wait(WAIT)


async def wait_async(predicate: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.005)


# -- pieces: the timeline's widths, formatting, highlighting ----------------------------------


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def run_record(
    run_id: int, status: str, queued: float | None, ran: float | None, *, started: bool = True
) -> RunRecord:
    triggered = T0
    started_at = T0 + timedelta(seconds=queued or 0) if started else None
    finished = (
        started_at + timedelta(seconds=ran or 0)
        if started_at is not None and status in ("succeeded", "failed")
        else None
    )
    return RunRecord(
        sync_run_id=run_id,
        sync_id=1,
        workspace_id=1,
        status=status,
        triggered_at=triggered,
        started_at=started_at,
        finished_at=finished,
        completed_status=None,
        queued_seconds=queued,
        duration_seconds=ran if finished else None,
    )


def test_timeline_makes_the_longest_finished_run_full_width() -> None:
    bars = timeline(
        [run_record(1, "succeeded", 10, 90), run_record(2, "failed", 5, 20)], T0.timestamp()
    )
    assert [(b.queue, b.work) for b in bars] == [(10, 90), (5, 20)]
    assert not any(b.open for b in bars)


def test_timeline_draws_an_open_run_to_now_but_never_past_full_width() -> None:
    now = (T0 + timedelta(hours=5)).timestamp()
    bars = timeline([run_record(1, "started", 10, None), run_record(2, "succeeded", 10, 90)], now)
    assert bars[0].open and bars[0].queue + bars[0].work == 100
    assert bars[0].ran == pytest.approx(5 * 3600 - 10)
    queued = timeline([run_record(3, "triggered", None, None, started=False)], T0.timestamp() + 30)
    assert queued[0].queue == 100 and queued[0].queued == pytest.approx(30)


def test_timeline_gives_a_tiny_segment_one_percent_and_none_zero() -> None:
    bars = timeline(
        [run_record(1, "succeeded", 0.01, 1000), run_record(2, "succeeded", None, None)], 0
    )
    assert (bars[0].queue, bars[0].work) == (1, 99)
    assert (bars[1].queue, bars[1].work) == (0, 0)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "\u2013"),
        (0.42, "0.4 s"),
        (12.4, "12 s"),
        (184, "3 min 4 s"),
        (7500, "2 h 5 min"),
        (259_200, "3 d"),  # a stuck run: days, as the command line says
    ],
)
def test_duration_is_shown_in_the_largest_sensible_units(seconds: float | None, shown: str) -> None:
    assert duration(seconds) == shown


def test_size_is_shown_in_binary_units() -> None:
    assert [size(n) for n in (512, 1536, 3 * 1024 * 1024)] == ["512 B", "1.5 KiB", "3.0 MiB"]


def test_highlighted_json_escapes_keys_and_strings() -> None:
    shown = highlight_json({"<k>": ["<v>", 1, None, True], "e": {}})
    assert "&lt;k&gt;" in shown and "&lt;v&gt;" in shown and "<k>" not in shown
    assert '<span class="l">null</span>' in shown and "&quot;e&quot;</span>: {}" in shown


def fill(journal: SQLiteJournal, count: int) -> None:
    """Insert ``count`` deliveries straight into the journal's table (as the benchmark does)."""
    bench_inspector.fill_journal(journal, count)


def test_benchmark_checks_every_page_on_a_full_journal() -> None:
    rows = bench_inspector.run(Budget.quick_run())
    assert [row.title for row in rows] == [figure.title for figure in bench_inspector.FIGURES]
    assert {row.verdict for row in rows} == {"ran"}


def test_query_parameters_are_parsed_once_per_name() -> None:
    request = InspectorRequest("GET", "/", query=urllib.parse.urlencode({"a": "1 2"}))
    assert request.param("a") == "1 2"
    assert request.param("b") is None
    assert InspectorRequest("GET", "/", headers={"cookie": "x=1; y=2"}).cookie("y") == "2"
