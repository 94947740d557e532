"""The census-receiver command as a user runs it, and a server that records what it is sent.

``run_cli`` runs the command in a subprocess, ``Serve`` keeps ``serve`` running in
one and collects its output line by line, and ``Recorder`` is a local HTTP
server on 127.0.0.1 that answers from a script of statuses. Defining them opens
nothing; only the tests that use them do.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WAIT = 20.0  # seconds: the bound on every wait for a process or a line
CLI = [sys.executable, "-m", "census_receiver"]


@pytest.fixture(autouse=True)
def no_secret_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process commands see no ``CENSUS_WEBHOOK_SECRET`` unless a test sets one."""
    monkeypatch.delenv("CENSUS_WEBHOOK_SECRET", raising=False)


def cli_env(**extra: str) -> dict[str, str]:
    """This process's environment without ``CENSUS_WEBHOOK_SECRET``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "CENSUS_WEBHOOK_SECRET"}
    env.update(extra)
    return env


def run_cli(
    *args: str, input: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m census_receiver ARGS`` to completion (bounded by ``WAIT``)."""
    return subprocess.run(
        [*CLI, *args],
        input=input.decode() if input is not None else None,
        capture_output=True,
        text=True,
        env=env or cli_env(),
        cwd=ROOT,
        timeout=WAIT,
    )


class Serve:
    """``census-receiver serve`` in a subprocess, its output collected line by line."""

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, command: list[str] | None = None
    ) -> None:
        self.process = subprocess.Popen(
            command or [*CLI, "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env or cli_env(),
            cwd=ROOT,
        )
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        listening = self.wait_for(r"^Listening on (http://\S+)")
        match = re.search(r"http://\S+", listening)
        assert match is not None
        self.url = match.group(0)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    @property
    def output(self) -> str:
        with self.changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, count: int = 1) -> str:
        """The ``count``-th line matching ``pattern``, waiting for it (bounded)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + WAIT
        with self.changed:
            while True:
                found = [line for line in self.lines if regex.search(line)]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self.reader.is_alive()):
                    raise AssertionError(f"no line matching {pattern!r} in:\n{self.output}")
                self.changed.wait(min(left, 0.5))

    def payload_after(self, line: str) -> str:
        """The pretty-printed payload shown under ``line``, once it is complete."""
        deadline = time.monotonic() + WAIT
        with self.changed:
            start = self.lines.index(line) + 1
            while "    }" not in self.lines[start:]:
                left = deadline - time.monotonic()
                assert left > 0, f"no payload under {line!r} in:\n{self.output}"
                self.changed.wait(min(left, 0.5))
            return "\n".join(self.lines[start : self.lines.index("    }", start) + 1])

    def stop(self) -> int:
        """Ctrl-C, then the exit status (killing the process if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=WAIT)
            raise
        finally:
            self.reader.join(timeout=WAIT)
            assert self.process.stdout is not None
            self.process.stdout.close()
        return code


class Recorder(http.server.ThreadingHTTPServer):
    """A local HTTP server that records POSTs and answers from a script of statuses."""

    def __init__(self, statuses: Callable[[int], int] = lambda n: 200) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.statuses = statuses
        self.arrived = threading.Condition()
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/relay"

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(timeout=WAIT)

    def wait_for(self, count: int) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.requests) >= count, timeout=WAIT)


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    server: Recorder

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with self.server.arrived:
            number = len(self.server.requests)
            self.server.requests.append((self.path, dict(self.headers.items()), body))
            self.server.arrived.notify_all()
        status = self.server.statuses(number)
        answer = json.dumps({"attempt": number + 1}).encode()
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass
