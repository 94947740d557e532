"""census_receiver.pytest_plugin, driven through pytester as a user's test session would."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORKS = {"starlette", "fastapi", "flask", "werkzeug", "httpx", "uvicorn", "redis", "anyio"}


def _installed_entry_point() -> bool:
    try:
        dist = distribution("census-receiver")
    except PackageNotFoundError:
        return False
    return any(ep.group == "pytest11" for ep in dist.entry_points)


# Installed (pip install -e .), pytest loads the plugin through its entry point, as it
# will for users; from a plain checkout, name it on the command line instead.
PLUGIN_ARGS: tuple[str, ...] = (
    () if _installed_entry_point() else ("-p", "census_receiver.pytest_plugin")
)

STARLETTE_APP = """
from starlette.applications import Starlette
from starlette.testclient import TestClient

from census_receiver.starlette import CensusWebhookMiddleware


def make_client(receiver, path="/webhooks/census"):
    return TestClient(CensusWebhookMiddleware(Starlette(), receiver=receiver, path=path))
"""


# The inner sessions run in this process, under this session's warning filters; a
# plugin installed beside us (pytest-asyncio warns about its unset options) must not
# turn their configuration into an error.
QUIET = ("-p", "no:cacheprovider", "-p", "no:asyncio")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*QUIET, *PLUGIN_ARGS, *args)


def test_pyproject_registers_the_plugin_and_the_command() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {
        "census_receiver": "census_receiver.pytest_plugin"
    }
    assert project["scripts"] == {"census-receiver": "census_receiver.cli:main"}


def test_plugin_is_loaded_through_its_entry_point_without_any_import(
    pytester: pytest.Pytester,
) -> None:
    if PLUGIN_ARGS:
        pytest.skip("the package is not installed: pip install -e . to test its entry point")
    pytester.makepyfile(
        """
        def test_fixture_is_there(census_secret):
            assert census_secret == "census-receiver-test-secret"
        """
    )
    result = pytester.runpytest(*QUIET)
    result.assert_outcomes(passed=1)
    blocked = pytester.runpytest(*QUIET, "-p", "no:census_receiver")
    blocked.assert_outcomes(errors=1)
    blocked.stdout.fnmatch_lines(["*fixture 'census_secret' not found*"])


def test_census_post_delivers_through_a_starlette_test_client(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        STARLETTE_APP
        + """

def test_failed_sync_reaches_the_handler(census_receiver, census_post):
    seen = []
    census_receiver.on("sync.failed")(seen.append)
    with make_client(census_receiver) as client:
        response = census_post(client, "sync.failed", sync_id=42)
    assert response.status_code == 200
    assert [(e.event, e.sync_id) for e in seen] == [("sync.failed", 42)]


def test_bad_signature_is_refused(census_receiver, census_post):
    census_receiver.on("*")(pytest_fail_if_called)
    with make_client(census_receiver) as client:
        response = census_post(client, "sync.failed", bad_signature=True)
    assert response.status_code == 401


def pytest_fail_if_called(event):
    raise AssertionError("a forged delivery reached a handler")
"""
    )
    run(pytester).assert_outcomes(passed=2)


def test_census_post_delivers_through_a_flask_test_client(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from flask import Flask

        from census_receiver.wsgi import CensusWebhookMiddleware


        def test_alert_reaches_the_handler(census_receiver, census_post):
            seen = []
            census_receiver.on("sync.alert.*")(seen.append)
            app = Flask(__name__)
            app.wsgi_app = CensusWebhookMiddleware(app.wsgi_app, receiver=census_receiver)
            response = census_post(app.test_client(), "sync.alert.raised", message="Disk full")
            assert response.status_code == 200
            assert response.get_json() == {"status": "ok"}
            assert [e.message for e in seen] == ["Disk full"]
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_overridden_secret_and_path_are_used(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def census_secret():
            return "the-apps-own-secret"

        @pytest.fixture
        def census_path():
            return "/hooks/census"
        """
    )
    pytester.makepyfile(
        STARLETTE_APP
        + """

from census_receiver import WebhookReceiver, compute_signature


def test_signed_with_the_overridden_secret(census_delivery):
    delivery = census_delivery("sync.started", sync_run_id=7)
    assert delivery.headers["X-Signature"] == compute_signature(
        delivery.body, "the-apps-own-secret"
    )
    assert delivery.payload["sync_run_id"] == 7


def test_posted_to_the_overridden_path(census_post):
    receiver = WebhookReceiver("the-apps-own-secret")
    with make_client(receiver, path="/hooks/census") as client:
        assert census_post(client, "sync.started").status_code == 200
        assert census_post(client, "sync.started", path="/elsewhere").status_code == 404
    receiver.close()
"""
    )
    run(pytester).assert_outcomes(passed=2)


def test_census_env_sets_the_secret_variable_for_the_test_only(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        """
        import os

        from census_receiver import WebhookReceiver


        def test_receiver_reads_the_environment(census_env, census_delivery):
            assert os.environ["CENSUS_WEBHOOK_SECRET"] == census_env
            delivery = census_delivery("sync.success")
            assert WebhookReceiver().handle(delivery.body, delivery.headers).status == 200


        def test_variable_is_gone_afterwards():
            assert "CENSUS_WEBHOOK_SECRET" not in os.environ
        """
    )
    monkeypatch.delenv("CENSUS_WEBHOOK_SECRET", raising=False)
    run(pytester).assert_outcomes(passed=2)


def test_census_receiver_fixture_is_closed_after_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import threading

        from census_receiver import WebhookReceiver


        def census_threads():
            return [t for t in threading.enumerate() if t.name.startswith("census-receiver")]


        def test_async_handler_starts_a_loop_thread(census_receiver, census_delivery):
            async def handler(event):
                pass

            census_receiver.on("*")(handler)
            delivery = census_delivery("sync.failed")
            outcome = census_receiver.handle(delivery.body, delivery.headers)
            assert (outcome.status, type(census_receiver)) == (200, WebhookReceiver)
            assert census_threads()


        def test_its_threads_are_stopped():
            assert not census_threads()
        """
    )
    run(pytester).assert_outcomes(passed=2)


def test_fixtures_are_documented_in_pytest_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = run(pytester, "--fixtures")
    for name in ("census_secret", "census_env", "census_receiver", "census_path"):
        result.stdout.fnmatch_lines([f"{name}*"])
    result.stdout.fnmatch_lines(["census_post*", "*Post signed deliveries to your app*"])
    result.stdout.fnmatch_lines(["census_delivery*", "*A factory of deliveries signed*"])


def test_importing_the_plugin_loads_no_framework() -> None:
    code = (
        "import json, sys\n"
        "import census_receiver.pytest_plugin\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert "census_receiver" in loaded
    assert not loaded & FRAMEWORKS
    assert "census_receiver.testing" not in json.loads(done.stdout)


def test_the_examples_of_docs_testing_md_pass_under_pytest(pytester: pytest.Pytester) -> None:
    from .test_docs import blocks

    code = [b.source for b in blocks(ROOT / "docs" / "testing.md") if b.lang == "python"]
    source = "\n\n".join(code)
    tests = len(re.findall(r"^def test_", source, re.MULTILINE))
    assert tests >= 7
    pytester.makepyfile(test_docs_testing=source)
    run(pytester, "-W", "error").assert_outcomes(passed=tests)
