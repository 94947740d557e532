"""Peak memory of a uvicorn server with the middleware, as a ratio to the same server idle.

Each scenario starts a fresh server (``bench.serve``, one uvicorn worker, a
Starlette app with ``CensusWebhookMiddleware`` and the default 1 MiB limit),
reads its peak resident memory (``VmHWM`` in ``/proc/<pid>/status``) once it
answers, sends the load, then reads the peak again:

- 10,000 signed deliveries over keep-alive connections: every answer must be
  200 and the handler must have run exactly 10,000 times;
- one 100 MB body, declared with Content-Length: must be answered 413;
- one 100 MB body, chunked (no Content-Length): must be answered 413 (or the
  connection closed on it) without running the handler. A server that held the
  body in memory would show about idle + 100 MB here.

The same chunked body sent to the Starlette route written by hand shows what
reading it whole costs.

Run on its own with ``python3 -m bench.memory``, or from code::

    from bench.memory import deliveries_peak, large_body_peak
    idle, peak = large_body_peak("middleware", chunked=True)
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import sys
import threading

from census_receiver.testing import DOCUMENTED_EXAMPLES, sign

from .apps import PATH, SECRET
from .harness import (
    Budget,
    Row,
    check,
    run_alone,
)
from .serve import Server

__all__ = ["deliveries_peak", "large_body_peak", "run", "send_deliveries", "send_large_body"]

GROUP = "memory"
#: A full run: each scenario once (rounds are not used).
BUDGET = Budget(rounds=1)
MB = 1_000_000
LARGE_BODY = 100 * MB
_CHUNK = 1 << 20


def send_deliveries(port: int, count: int, connections: int = 4) -> dict[int, int]:
    """POST ``count`` signed deliveries over ``connections`` keep-alive connections.

    Args:
        port: the server's port on 127.0.0.1.
        count: how many deliveries in all.
        connections: how many connections (one thread each) share them.

    Returns:
        status -> how many answers had it.
    """
    body = json.dumps(DOCUMENTED_EXAMPLES[5]).encode()
    headers = {"Content-Type": "application/json", "X-Signature": sign(body, SECRET)}
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def client(n: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        seen: dict[int, int] = {}
        try:
            for _ in range(n):
                connection.request("POST", PATH, body=body, headers=headers)
                answer = connection.getresponse()
                answer.read()
                seen[answer.status] = seen.get(answer.status, 0) + 1
        finally:
            connection.close()
            with lock:
                for status, k in seen.items():
                    statuses[status] = statuses.get(status, 0) + k

    shares = [count // connections + (i < count % connections) for i in range(connections)]
    threads = [threading.Thread(target=client, args=(n,)) for n in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def send_large_body(port: int, size: int = LARGE_BODY, *, chunked: bool) -> int | None:
    """Stream a ``size``-byte body to the webhook, stopping as soon as an answer comes.

    Args:
        port: the server's port on 127.0.0.1.
        size: the body size in bytes.
        chunked: send it with ``Transfer-Encoding: chunked`` instead of a
            Content-Length.

    Returns:
        The answer's status, or ``None`` if the server closed the connection
        without one.
    """
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nX-Signature: {sign(b'x', SECRET)}\r\n"
        f"{framing}\r\n\r\n"
    ).encode()
    chunk = b"x" * _CHUNK
    piece = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(head)
            sent = 0
            while sent < size:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:  # answered early: stop sending, as a real client does
                    break
                sock.sendall(piece)
                sent += len(chunk)
            if chunked and sent >= size:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        return _read_status(sock)


def _read_status(sock: socket.socket) -> int | None:
    data = b""
    try:
        while b"\r\n" not in data:
            got = sock.recv(65536)
            if not got:
                break
            data += got
    except (ConnectionResetError, TimeoutError):
        return None
    if not data.startswith(b"HTTP/1.1 "):
        return None
    return int(data[9:12])


def deliveries_peak(app: str = "middleware", count: int = 10_000) -> tuple[int, int]:
    """Idle and loaded peak RSS (bytes) of a fresh server receiving ``count`` deliveries.

    Raises:
        CorrectnessError: unless every answer is 200 and the handler ran ``count`` times.
    """
    with Server(app) as server:
        idle = server.peak_rss()
        before = server.count()
        statuses = send_deliveries(server.port, count)
        check(statuses == {200: count}, f"{app}: {count} deliveries were answered {statuses}")
        handled = server.count() - before
        check(handled == count, f"{app}: {count} deliveries ran the handler {handled} times")
        return idle, server.peak_rss()


def large_body_peak(
    app: str = "middleware", *, chunked: bool, size: int = LARGE_BODY
) -> tuple[int, int, int | None]:
    """Idle and loaded peak RSS (bytes) of a fresh server sent one ``size``-byte body.

    Returns:
        (idle peak, peak after the body, the answer's status or None).

    Raises:
        CorrectnessError: if the handler ran, or the answer was other than 413
            for the middleware app.
    """
    with Server(app) as server:
        idle = server.peak_rss()
        before = server.count()
        status = send_large_body(server.port, size, chunked=chunked)
        peak = server.peak_rss()
        if app.startswith("middleware"):
            check(status in (413, None), f"{app}: a {size}-byte body got {status}, not 413")
            check(server.count() == before, f"{app}: the handler ran for a refused body")
        return idle, peak, status


def _row(
    title: str, idle: int, peak: int, *, must: float | None, quick: bool, note: str = ""
) -> Row:
    ratio = peak / idle
    verdict = "info" if must is None else ("pass" if ratio <= must else "FAIL")
    verdict = "ran" if quick else verdict
    return Row(
        group=GROUP,
        title=title,
        kind="time",  # lower is better
        subject="peak RSS",
        baseline="idle peak RSS",
        subject_median=peak / MB,
        subject_min=peak / MB,
        subject_max=peak / MB,
        baseline_median=idle / MB,
        ratio=ratio,
        ratio_min=ratio,
        ratio_max=ratio,
        rounds=1,
        unit="MB",
        must=must,
        aim=None,
        verdict=verdict,
        note=note,
    )


def run(budget: Budget) -> list[Row]:
    """Measure the memory figures (each scenario once, on a fresh server).

    Args:
        budget: a quick budget sends 200 deliveries and 8 MB bodies instead.

    Returns:
        The rows, in table order.

    Raises:
        CorrectnessError: if a server answers wrongly.
    """
    count = 200 if budget.quick else 10_000
    size = 8 * MB if budget.quick else LARGE_BODY
    idle, peak = deliveries_peak(count=count)
    rows = [
        _row(f"peak RSS / idle, {count:,} deliveries", idle, peak, must=None, quick=budget.quick)
    ]
    for chunked in (False, True):
        idle, peak, status = large_body_peak(chunked=chunked, size=size)
        framing = "chunked" if chunked else "Content-Length"
        rows.append(
            _row(
                f"peak RSS / idle, one {size // MB} MB body refused ({framing})",
                idle,
                peak,
                must=1.5,
                quick=budget.quick,
                note=f"answered {status}" if status else "connection closed without an answer",
            )
        )
    idle, peak, status = large_body_peak("starlette-by-hand", chunked=True, size=size)
    rows.append(
        _row(
            f"for comparison: Starlette by hand reading the {size // MB} MB body (chunked)",
            idle,
            peak,
            must=None,
            quick=budget.quick,
            note=f"answered {status}",
        )
    )
    return rows


def main() -> int:
    """Run this group alone and print its table; non-zero if a bound was exceeded."""
    return run_alone(run, BUDGET)


if __name__ == "__main__":
    sys.exit(main())
