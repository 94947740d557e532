"""Every app in examples/ answers Census as documented, through its framework's test client.

The examples read their secret from CENSUS_WEBHOOK_SECRET; the ``census_env``
fixture of census_receiver's pytest plugin sets it to ``census_secret``, and
``census_post`` signs deliveries with the same secret.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from starlette.testclient import TestClient
from werkzeug.test import Client

from census_receiver.cli import EXIT_OK
from census_receiver.pytest_plugin import CensusPoster

from .test_cli import WAIT, Serve, cli_env, run_cli

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NAMES = ["starlette_app", "fastapi_app", "flask_app", "wsgi_app"]

Load = Callable[[str], ModuleType]


@pytest.fixture
def load(census_env: str) -> Iterator[Load]:
    """Import an example afresh, with CENSUS_WEBHOOK_SECRET set; its receiver closed after."""
    loaded: list[ModuleType] = []

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        loaded.append(module)
        return module

    yield load
    for module in loaded:
        module.receiver.close()


def test_starlette_example(
    load: Load, census_post: CensusPoster, capsys: pytest.CaptureFixture[str]
) -> None:
    client = TestClient(load("starlette_app").app)
    answer = census_post(client, "sync.failed", sync_id=42, sync_run_id=7)
    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})
    assert (
        census_post(client, "sync.completed", status="emergency", sync_run_id=8).status_code == 200
    )
    assert census_post(client, "sync.completed", status="ok").json() == {"status": "ignored"}
    assert census_post(client, "sync.failed", bad_signature=True).status_code == 401
    assert client.get("/").text == "the rest of your app"
    printed = capsys.readouterr().out.splitlines()
    assert printed == ["sync 42 failed in run 7", "run 8 ended in an emergency"]


def test_fastapi_example(
    load: Load, census_post: CensusPoster, capsys: pytest.CaptureFixture[str]
) -> None:
    client = TestClient(load("fastapi_app").app)
    answer = census_post(client, "sync.failed", sync_id=42, sync_run_id=7)
    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})
    routed = census_post(client, "sync.started", path="/census/events")
    assert routed.json() == {"status": "ok", "event": "sync.started"}
    forged = census_post(client, "sync.failed", path="/census/events", bad_signature=True)
    assert (forged.status_code, list(forged.json())) == (401, ["detail"])
    assert client.get("/").json() == {"app": "the rest of your API"}
    assert capsys.readouterr().out.splitlines() == ["sync 42 failed in run 7"]


def test_flask_example(
    load: Load, census_post: CensusPoster, capsys: pytest.CaptureFixture[str]
) -> None:
    client = load("flask_app").app.test_client()
    answer = census_post(client, "sync.failed", sync_id=42, sync_run_id=7)
    assert (answer.status_code, answer.get_json()) == (200, {"status": "ok"})
    assert census_post(client, "sync.success").get_json() == {"status": "ok", "note": "nice"}
    assert census_post(client, "sync.failed", bad_signature=True).status_code == 401
    assert client.get("/").text == "the rest of your app"
    assert capsys.readouterr().out.splitlines() == ["sync 42 failed in run 7"]


def test_wsgi_example(
    load: Load, census_post: CensusPoster, capsys: pytest.CaptureFixture[str]
) -> None:
    client = Client(load("wsgi_app").app)
    answer = census_post(client, "sync.failed", sync_id=42, sync_run_id=7)
    assert (answer.status_code, answer.json) == (200, {"status": "ok"})
    assert census_post(client, "sync.failed", bad_signature=True).status_code == 401
    assert client.get("/").text == "the rest of your app"
    assert capsys.readouterr().out.splitlines() == ["sync 42 failed in run 7"]


@pytest.mark.parametrize("name", NAMES)
def test_example_run_without_a_secret_says_what_to_set(name: str) -> None:
    # As a user would run it, minus the secret: it stops before serving, saying why.
    env = {k: v for k, v in os.environ.items() if k != "CENSUS_WEBHOOK_SECRET"}
    env["PYTHONPATH"] = str(EXAMPLES.parent)
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "CENSUS_WEBHOOK_SECRET" in result.stderr.splitlines()[-1]


@pytest.fixture
def interruptible() -> Iterator[None]:
    """Ctrl-C reaches the child, as in a terminal, even when this run ignores SIGINT.

    A test run started in the background ignores SIGINT, and a child would inherit
    that; a handler of ours is reset to the default when the child starts.
    """
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


class Example(Serve):
    """An example run as a user runs it; killed if it never says where it listens."""

    def __init__(self, name: str, port: int, env: dict[str, str]) -> None:
        command = [sys.executable, str(EXAMPLES / f"{name}.py"), "--port", str(port)]
        try:
            super().__init__(env=env, command=command)
        except BaseException:
            self.process.kill()
            self.process.wait(timeout=WAIT)
            raise


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_listening(port: int) -> None:
    deadline = time.monotonic() + WAIT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.usefixtures("interruptible")
@pytest.mark.parametrize("name", NAMES)
def test_example_run_says_where_it_listens_and_stops_cleanly_on_ctrl_c(
    name: str, census_secret: str
) -> None:
    # As a user runs it: the URL on 127.0.0.1, a send command that works when pasted
    # into a terminal with the same secret, and Ctrl-C ending it without a traceback.
    port = free_port()
    env = cli_env(CENSUS_WEBHOOK_SECRET=census_secret, PYTHONPATH=str(EXAMPLES.parent))
    example = Example(name, port, env)
    try:
        assert example.url == f"http://127.0.0.1:{port}/webhooks/census"
        command = example.wait_for(r"^    census-receiver send ").split()
        assert command[:3] == ["census-receiver", "send", "sync.failed"]
        wait_until_listening(port)
        sent = run_cli(*command[1:], env=env)
        assert sent.returncode == EXIT_OK, sent.stdout + sent.stderr
    finally:
        code = example.stop()
    assert code == EXIT_OK, example.output
    assert "Traceback" not in example.output
    assert "sync 3167956 failed in run 324402082" in example.lines
    assert example.lines[-1] == "stopped"
