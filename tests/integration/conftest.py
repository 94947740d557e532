"""Real servers on 127.0.0.1 for the integration tests, and clients that talk to them.

uvicorn runs in a thread of the test process (as in httpx's own tests), so tests
can share objects with the app; Werkzeug's server too; gunicorn runs as a
subprocess on a listening socket made here (``fd://``), so no port is guessed.
Everything is bounded by ``WAIT`` and stopped at teardown.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from werkzeug.serving import make_server

from census_receiver.testing import make_delivery
from tests.adapter_contract import PATH, WAIT, wait_for
from tests.conftest import SECRET

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    """A running server: where it listens, and what the test may need to look at."""

    host: str
    port: int
    handle: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@pytest.fixture
def uvicorn_server() -> Iterator[Callable[[Any], Served]]:
    """Start an ASGI app under uvicorn (h11) in a thread; stopped at teardown."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: Any) -> Served:
        # log_config=None keeps uvicorn's loggers propagating, so caplog sees them.
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, lifespan="off", log_config=None, http="h11"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
        thread.start()
        servers.append((server, thread))
        wait_for(lambda: server.started or not thread.is_alive())
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        return Served("127.0.0.1", port, server)

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(WAIT)
        assert not thread.is_alive(), "uvicorn did not stop"


@pytest.fixture(scope="module")
def werkzeug_server() -> Iterator[Callable[[Any], Served]]:
    """Start a WSGI app under Werkzeug's threaded server in a thread; stopped at teardown."""
    servers: list[tuple[Any, threading.Thread]] = []

    def start(app: Any) -> Served:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        serve = functools.partial(server.serve_forever, poll_interval=0.05)
        thread = threading.Thread(target=serve, name="werkzeug", daemon=True)
        thread.start()
        servers.append((server, thread))
        return Served("127.0.0.1", server.port, server)

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


@pytest.fixture(scope="module")
def gunicorn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Served]]:
    """Run ``gunicorn APP`` (one gthread worker, 16 threads); ``handle`` is its error log."""
    procs: list[subprocess.Popen[bytes]] = []
    tmp_path = tmp_path_factory.mktemp("gunicorn")

    def start(target: str) -> Served:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(256)
        listener.set_inheritable(True)
        port = listener.getsockname()[1]
        log = tmp_path / "gunicorn-error.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CENSUS_WEBHOOK_SECRET": SECRET}
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn"),
                *("--workers", "1", "--worker-class", "gthread", "--threads", "16"),
                *("--bind", f"fd://{listener.fileno()}", "--error-logfile", str(log)),
                *("--log-level", "info", "--graceful-timeout", "5", "--chdir", str(ROOT)),
                target,
            ],
            pass_fds=[listener.fileno()],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        listener.close()  # the child has its own copy
        procs.append(proc)
        served = Served("127.0.0.1", port, log)
        wait_for(lambda: _answers(served) or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, log.read_text() if log.exists() else "gunicorn exited"
        return served

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(WAIT)


def _answers(served: Served) -> bool:
    try:
        return httpx.get(f"{served.url}/", timeout=1).status_code < 500
    except httpx.TransportError:
        return False


# -- clients ---------------------------------------------------------------------------


def deliver_many(url: str, run_ids: range, *, forged: bool = False) -> list[int]:
    """POST one signed (or forged) delivery per sync_run_id, 100 in flight; the statuses.

    Threads rather than asyncio: a client event loop sharing the process (and the
    GIL) with uvicorn's loop spends most of its time waiting for the switch interval.
    """
    deliveries = [
        make_delivery("sync.failed", secret=SECRET, bad_signature=forged, sync_run_id=n)
        for n in run_ids
    ]
    # "Connection: close": a pool shared by threads may hand out an idle keep-alive
    # connection that another thread is closing (encode/httpcore#1110).
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
    with (
        httpx.Client(
            base_url=url, timeout=WAIT * 3, limits=limits, headers={"Connection": "close"}
        ) as client,
        ThreadPoolExecutor(100) as pool,
    ):
        posts = [
            pool.submit(client.post, PATH, content=d.body, headers=d.headers) for d in deliveries
        ]
        return [p.result(WAIT * 3).status_code for p in posts]


def chunked(body: bytes, size: int = 1000) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def request_bytes(body: bytes, *, signature: str | None = None, chunk: bool = False) -> bytes:
    """A raw HTTP/1.1 POST to the webhook path, keep-alive."""
    head = [f"POST {PATH} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if signature is not None:
        head.append(f"X-Signature: {signature}")
    head.append("Transfer-Encoding: chunked" if chunk else f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + (chunked(body) if chunk else body)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one response with a Content-Length from a keep-alive socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, f"connection closed before a response: {data!r}"
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        piece = sock.recv(65536)
        assert piece, "connection closed mid-response"
        rest += piece
    return int(lines[0].split()[1]), headers, rest[:length]


@contextlib.contextmanager
def connection(served: Served) -> Iterator[socket.socket]:
    with socket.create_connection((served.host, served.port), timeout=WAIT) as sock:
        yield sock


def valid_request(run_id: int) -> bytes:
    d = make_delivery("sync.failed", secret=SECRET, sync_run_id=run_id)
    return request_bytes(d.body, signature=d.headers["X-Signature"])
