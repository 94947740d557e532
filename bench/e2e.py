"""End to end over 127.0.0.1: uvicorn serving the middleware app against a route by hand.

Two uvicorn servers (one worker each, see ``bench.serve``) run side by side, plus
one with a sync handler; wrk (Debian's ``wrk``, one thread, 8 connections)
posts the same signed delivery to one, then the next, in rotating order, for
several 1-second rounds. Figures (as ratios, median over rounds):

- requests per CPU-second of the server: the requests wrk completed divided by
  the CPU time the server process used meanwhile (``/proc/<pid>/stat``). With
  one worker kept busy by wrk, this is the rate the server sustains on one
  core, and it does not move when other processes take CPU from the server;
- requests per wall-clock second, as wrk reports them: the same thing on a
  quiet machine, and much noisier on a shared one.

Correctness, in the same run: each server answers a valid delivery 200 and
runs its handler exactly once, a forged one 401 without running it; during each
wrk round every answer is 2xx and the handler count grows by the number of
requests wrk completed (plus at most one per connection still in flight when
wrk stopped).

Run on its own with ``python3 -m bench.e2e``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from census_receiver.testing import DOCUMENTED_EXAMPLES, sign

from .apps import SECRET
from .harness import (
    Budget,
    CorrectnessError,
    Figure,
    Row,
    check,
    make_row,
    run_alone,
)
from .serve import Server

__all__ = ["FIGURES", "WrkResult", "run", "wrk"]

GROUP = "e2e"
#: A full run: 16 rounds of one 1-second wrk run per server.
BUDGET = Budget(rounds=16)
CONNECTIONS = 8

FIGURES = [
    Figure(
        "end to end (uvicorn + wrk): middleware / Starlette by hand, req per server CPU-s",
        "middleware",
        "starlette-by-hand",
        "rate",
        must=1.0,
        aim=1.3,
    ),
    Figure(
        "end to end (uvicorn + wrk): middleware / Starlette by hand, req/s wall clock",
        "middleware wall",
        "starlette-by-hand wall",
        "rate",
    ),
    Figure(
        "end to end (uvicorn + wrk): middleware, sync handler / Starlette by hand, "
        "req per server CPU-s",
        "middleware-sync",
        "starlette-by-hand",
        "rate",
    ),
]


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run reported."""

    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds


def _script(body: bytes, signature: str, directory: Path) -> Path:
    text = body.decode()
    check("]==]" not in text, "the body cannot be quoted for wrk's Lua script")
    script = directory / "census.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = [==[{text}]==]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["X-Signature"] = "{signature}"\n'
    )
    return script


def wrk(url: str, script: Path, seconds: float, connections: int = CONNECTIONS) -> WrkResult:
    """Run wrk (one thread) against ``url`` for ``seconds``; parse its summary.

    Args:
        url: the webhook URL.
        script: the Lua script setting method, body and headers.
        seconds: the run's duration (wrk takes whole seconds, at least 1).
        connections: open connections.

    Returns:
        The request count, duration and error counts.

    Raises:
        RuntimeError: if wrk fails or its output cannot be read.
    """
    duration = max(1, round(seconds))
    completed = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=duration + 30,
        check=False,
    )
    out = completed.stdout
    found = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    if completed.returncode != 0 or found is None:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {out}{completed.stderr}")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0}[found.group(3)]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        requests=int(found.group(1)),
        seconds=float(found.group(2)) * scale,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
    )


def _check_server(server: Server, body: bytes) -> None:
    before = server.count()
    status = server.post(body, sign(body, SECRET))
    check(status == 200, f"{server.app}: a valid delivery got {status}, not 200")
    check(server.count() == before + 1, f"{server.app}: the handler did not run exactly once")
    status = server.post(body, sign(body, b"not the secret"))
    check(status == 401, f"{server.app}: a forged delivery got {status}, not 401")
    check(server.count() == before + 1, f"{server.app}: the handler ran for a forged delivery")


def _load(server: Server, script: Path, seconds: float) -> tuple[WrkResult, float]:
    """One wrk run against ``server``: wrk's result and the server's CPU seconds in it."""
    before = server.count()
    cpu = server.cpu_seconds()
    result = wrk(server.url, script, seconds)
    cpu = server.cpu_seconds() - cpu
    handled = server.count() - before
    check(
        result.non_2xx == 0 and result.socket_errors == 0,
        f"{server.app}: {result.non_2xx} non-2xx answers, {result.socket_errors} socket errors",
    )
    # wrk counts completed answers; requests still in flight when it stopped may
    # have run their handler without being counted: at most one per connection.
    check(
        result.requests <= handled <= result.requests + CONNECTIONS,
        f"{server.app}: {result.requests} answers but the handler ran {handled} times",
    )
    return result, cpu


def run(budget: Budget) -> list[Row]:
    """Measure the end-to-end figures.

    Args:
        budget: ``budget.rounds`` wrk runs of 1 s per server (one in a quick run).

    Returns:
        The rows, in table order.

    Raises:
        CorrectnessError: if a server answers wrongly.
        RuntimeError: if wrk is missing or a server does not start.
    """
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    body = json.dumps(DOCUMENTED_EXAMPLES[5]).encode()  # sync.failed
    # Short runs, many rounds: noise from other processes comes in bursts, and
    # more, shorter pairs let the median step over them.
    seconds = 1.0
    rounds = 1 if budget.quick else max(3, budget.rounds)
    names = ["starlette-by-hand", "middleware", "middleware-sync"]
    servers: list[Server] = []
    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        script = _script(body, sign(body, SECRET), Path(tmp))
        try:
            for name in names:
                servers.append(Server(name))
            for server in servers:
                _check_server(server, body)
                if not budget.quick:
                    _load(server, script, 1.0)  # warm up
            for r in range(rounds):
                for i in range(len(servers)):
                    server = servers[(r + i) % len(servers)]
                    result, cpu = _load(server, script, seconds)
                    # Seconds per request: of server CPU, and of wall clock.
                    samples.setdefault(server.app, []).append(cpu / result.requests)
                    samples.setdefault(f"{server.app} wall", []).append(1 / result.rate)
        finally:
            for server in servers:
                server.stop()
    if len(samples) != 2 * len(names) or not all(samples.values()):
        raise CorrectnessError("a server was never measured")
    if any(value <= 0 for values in samples.values() for value in values):
        raise CorrectnessError("a server used no CPU time: /proc/<pid>/stat is not readable")
    return [make_row(GROUP, figure, samples, quick=budget.quick) for figure in FIGURES]


def main() -> int:
    """Run this group alone and print its table; non-zero if a must was missed."""
    return run_alone(run, BUDGET)


if __name__ == "__main__":
    sys.exit(main())
