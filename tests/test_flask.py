"""Flask: the census_webhook view decorator and the CensusWebhooks extension."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, request
from werkzeug.test import EnvironBuilder, run_wsgi_app

from census_receiver import ConfigurationError, Event, WebhookReceiver
from census_receiver.dedup import InMemoryDedupStore
from census_receiver.flask import CensusWebhooks, census_webhook
from census_receiver.testing import make_delivery
from tests.adapter_contract import (
    LIMIT,
    PATH,
    Probe,
    Req,
    delivery,
    probing,
    wsgi_poster,
)
from tests.conftest import SECRET

ALL_METHODS = ["GET", "POST", "PUT"]


@pytest.fixture
def probe() -> Iterator[Probe]:
    with probing() as p:
        yield p


def decorated_app(receiver: WebhookReceiver, views: list[Event]) -> Flask:
    """An app whose webhook view records its events and returns None."""
    app = Flask(__name__)

    @app.route(PATH, methods=ALL_METHODS)
    @census_webhook(receiver)
    def census(event: Event) -> None:
        views.append(event)

    @app.post("/echo")
    def echo() -> bytes:
        return request.get_data()

    return app


# -- the decorator ---------------------------------------------------------------------


def test_view_return_value_is_the_answer(receiver: WebhookReceiver) -> None:
    app = Flask(__name__)

    @app.post("/hooks/<source>")
    @census_webhook(receiver)
    def census(event: Event, source: str) -> tuple[dict[str, Any], int]:
        return {"source": source, "run": event.sync_run_id}, 202

    d = make_delivery("sync.failed", secret=SECRET, sync_run_id=5)
    response = app.test_client().post("/hooks/eu", data=d.body, headers=d.headers)
    assert (response.status_code, response.get_json()) == (202, {"source": "eu", "run": 5})


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/x-www-form-urlencoded", "text/plain"]
)
def test_view_can_still_read_the_body(receiver: WebhookReceiver, content_type: str) -> None:
    app = Flask(__name__)

    @app.post(PATH)
    @census_webhook(receiver)
    def census(event: Event) -> dict[str, Any]:
        return {"json": request.get_json(force=True)["event"], "size": len(request.get_data())}

    d = make_delivery("sync.failed", secret=SECRET)
    headers = {**d.headers, "Content-Type": content_type}
    response = app.test_client().post(PATH, data=d.body, headers=headers)
    assert response.get_json() == {"json": "sync.failed", "size": len(d.body)}


def test_app_post_route_gets_flasks_own_405(receiver: WebhookReceiver) -> None:
    app = Flask(__name__)

    @app.post(PATH)
    @census_webhook(receiver)
    def census(event: Event) -> None:
        return None

    response = app.test_client().get(PATH)
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]


def test_async_handlers_and_views_work_without_flask_async(receiver: WebhookReceiver) -> None:
    order: list[str] = []

    @receiver.on("sync.failed")
    async def handler(event: Event) -> None:
        await asyncio.sleep(0)
        order.append("handler")

    app = Flask(__name__)

    @app.post(PATH)
    @census_webhook(receiver)
    async def census(event: Event) -> dict[str, str]:
        await asyncio.sleep(0)
        order.append(f"view:{request.path}")
        return {"view": "async"}

    d = make_delivery("sync.failed", secret=SECRET)
    response = app.test_client().post(PATH, data=d.body, headers=d.headers)
    assert (response.status_code, response.get_json()) == (200, {"view": "async"})
    assert order == ["handler", f"view:{PATH}"]


def test_with_dedup_a_failing_view_is_retried_and_a_duplicate_skips_it() -> None:
    receiver = WebhookReceiver(secret=SECRET, dedup=InMemoryDedupStore())
    attempts: list[str] = []
    app = Flask(__name__)

    @app.post(PATH)
    @census_webhook(receiver)
    def census(event: Event) -> None:
        # With dedup the view runs in a worker thread (for the deadline), in the request's context.
        attempts.append(request.path)
        if len(attempts) == 1:
            raise RuntimeError("database unavailable")

    client = app.test_client()
    d = make_delivery("sync.failed", secret=SECRET)
    try:
        assert client.post(PATH, data=d.body, headers=d.headers).status_code == 500
        assert client.post(PATH, data=d.body, headers=d.headers).status_code == 200
        again = client.post(PATH, data=d.body, headers=d.headers)
    finally:
        receiver.close()
    assert (again.status_code, again.get_json()) == (200, {"status": "duplicate"})
    assert attempts == [PATH, PATH]


def test_client_leaving_mid_body_reaches_no_view_and_gets_a_json_400(
    probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    views: list[Event] = []
    app = decorated_app(probe.receiver, views)
    d = make_delivery("sync.failed", secret=SECRET)
    environ = EnvironBuilder(
        path=PATH, method="POST", headers=list(d.headers.items())
    ).get_environ()
    environ["CONTENT_LENGTH"] = str(len(d.body))
    environ["wsgi.input"].write(d.body[:10])  # then the connection ends
    environ["wsgi.input"].seek(0)
    with caplog.at_level(logging.DEBUG, logger="census_receiver"):
        body, status, _ = run_wsgi_app(app, environ, buffered=True)
    assert status.upper() == "400 BAD REQUEST"
    assert b"".join(body) == b'{"error": "the client sent less than its Content-Length"}'
    assert (views, probe.calls) == ([], [])
    assert [r.levelname for r in caplog.records] == ["WARNING"]


def test_other_routes_are_untouched(probe: Probe) -> None:
    client = decorated_app(probe.receiver, []).test_client()
    body = b"x" * (LIMIT * 2)
    assert client.post("/echo", data=body).data == body


# -- the extension ---------------------------------------------------------------------


@pytest.fixture
def app() -> Flask:
    app = Flask(__name__)
    app.config["CENSUS_WEBHOOK_SECRET"] = SECRET
    return app


def close(ext: CensusWebhooks, app: Flask) -> None:
    with app.app_context():
        ext.receiver.close()


def test_extension_builds_its_receiver_from_config(app: Flask) -> None:
    app.config["CENSUS_WEBHOOK_PATH"] = "/census"
    app.config["CENSUS_WEBHOOK_MAX_BODY_SIZE"] = 4096
    ext = CensusWebhooks()
    seen: list[int | None] = []
    ext.on("sync.failed")(lambda event: seen.append(event.sync_run_id))
    ext.init_app(app)
    client = app.test_client()
    d = make_delivery("sync.failed", secret=SECRET, sync_run_id=9)
    try:
        assert client.post("/census", data=d.body, headers=d.headers).status_code == 200
        big = make_delivery("sync.failed", secret=SECRET, padding="x" * 4096)
        assert client.post("/census", data=big.body, headers=big.headers).status_code == 413
        assert client.post(PATH, data=d.body, headers=d.headers).status_code == 404
    finally:
        close(ext, app)
    assert seen == [9]
    assert app.extensions["census_receiver"] is ext


def test_extension_sets_config_defaults_without_overriding(app: Flask) -> None:
    app.config["CENSUS_WEBHOOK_PATH"] = "/mine"
    ext = CensusWebhooks(app)
    close(ext, app)
    assert app.config["CENSUS_WEBHOOK_PATH"] == "/mine"
    assert app.config["CENSUS_WEBHOOK_MAX_BODY_SIZE"] == 1_048_576


def test_extension_reads_the_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CENSUS_WEBHOOK_SECRET", "from-env")
    app = Flask(__name__)
    ext = CensusWebhooks(app)
    d = make_delivery("sync.failed", secret="from-env")
    try:
        answer = app.test_client().post(PATH, data=d.body, headers=d.headers)
    finally:
        close(ext, app)
    assert (answer.status_code, answer.get_json()) == (200, {"status": "ignored"})
    assert app.config["CENSUS_WEBHOOK_SECRET"] is None


def test_extension_without_any_secret_says_where_to_put_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CENSUS_WEBHOOK_SECRET", raising=False)
    with pytest.raises(ConfigurationError, match="CENSUS_WEBHOOK_SECRET"):
        CensusWebhooks(Flask(__name__))


def test_extension_refuses_a_second_registration_on_one_app(app: Flask) -> None:
    ext = CensusWebhooks(app)
    try:
        with pytest.raises(ConfigurationError, match=r"CensusWebhooks\(app\) calls init_app"):
            ext.init_app(app)
        with pytest.raises(ConfigurationError, match="already registered on this app"):
            CensusWebhooks(app)
    finally:
        close(ext, app)


def test_extension_serves_several_apps_each_with_its_config() -> None:
    ext = CensusWebhooks()
    seen: list[str] = []

    @ext.on("sync.failed")
    def before(event: Event) -> None:
        seen.append("before")

    apps = []
    for secret in ("first-secret", "second-secret"):
        app = Flask(__name__)
        app.config["CENSUS_WEBHOOK_SECRET"] = secret
        ext.init_app(app)
        apps.append(app)

    @ext.on("sync.failed")
    def after(event: Event) -> None:
        seen.append("after")

    try:
        for app, secret in zip(apps, ("first-secret", "second-secret"), strict=True):
            good = make_delivery("sync.failed", secret=secret)
            client = app.test_client()
            assert client.post(PATH, data=good.body, headers=good.headers).status_code == 200
            other = make_delivery(
                "sync.failed", secret="second-secret" if app is apps[0] else "first-secret"
            )
            assert client.post(PATH, data=other.body, headers=other.headers).status_code == 401
            with app.app_context():
                assert len(ext.receiver.routes) == 2
    finally:
        for app in apps:
            close(ext, app)
    assert seen == ["before", "after"] * 2


def test_extension_passes_receiver_options_on(app: Flask) -> None:
    ext = CensusWebhooks(app, dedup=InMemoryDedupStore())
    ext.on("*")(lambda event: None)
    client = app.test_client()
    d = make_delivery("sync.failed", secret=SECRET)
    try:
        assert client.post(PATH, data=d.body, headers=d.headers).get_json() == {"status": "ok"}
        again = client.post(PATH, data=d.body, headers=d.headers).get_json()
    finally:
        close(ext, app)
    assert again == {"status": "duplicate"}


def test_extension_on_error_reaches_the_receiver(probe: Probe) -> None:
    app = Flask(__name__)
    ext = CensusWebhooks(app, receiver=probe.receiver)
    failures: list[str] = []
    ext.on_error(lambda exc, event: failures.append(f"{event.event}: {exc}"))
    answer = wsgi_poster(app)(delivery("sync.alert.raised"))
    assert answer.status == 500
    assert failures == ["sync.alert.raised: the handler broke"]


def test_extension_refuses_a_receiver_and_receiver_options(receiver: WebhookReceiver) -> None:
    with pytest.raises(ConfigurationError, match="either receiver"):
        CensusWebhooks(receiver=receiver, dedup=InMemoryDedupStore())


def test_extension_receiver_needs_init_app(app: Flask) -> None:
    ext = CensusWebhooks()
    with app.app_context(), pytest.raises(ConfigurationError, match="call init_app first"):
        ext.receiver  # noqa: B018


def test_given_receiver_is_shared_by_every_app(receiver: WebhookReceiver) -> None:
    ext = CensusWebhooks(receiver=receiver)
    first, second = Flask("first"), Flask("second")
    ext.init_app(first)
    ext.init_app(second)
    with second.app_context():
        assert ext.receiver is receiver
    assert ext.receiver is receiver


def test_extension_answers_405_for_other_methods_itself(app: Flask) -> None:
    ext = CensusWebhooks(app)
    client = app.test_client()
    try:
        answers = [client.open(PATH, method=m) for m in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")]
    finally:
        close(ext, app)
    assert {(a.status_code, a.headers["Allow"]) for a in answers} == {(405, "POST")}


def test_extension_answer_for_a_chunked_body_over_its_limit(app: Flask) -> None:
    app.config["CENSUS_WEBHOOK_MAX_BODY_SIZE"] = 100
    ext = CensusWebhooks(app)
    try:
        answer = wsgi_poster(app)(Req(body=b"x" * 1000, chunked=True))
    finally:
        close(ext, app)
    assert answer.status == 413
