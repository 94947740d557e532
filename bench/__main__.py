"""Run every benchmark group and print one table: ``python3 -m bench``.

Exits 1 when a "must reach" target is missed, 2 when a contender fails its
correctness check (its figures would mean nothing), 0 otherwise. A full run
takes about two minutes on 2 cores.

Options: ``--only verify,asgi`` runs some groups; ``--quick`` runs every code
path and check once with tiny counts (its figures mean nothing); ``--json PATH``
also writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata

from . import asgi, e2e, flask_views, inspector, journal, memory, runs, verify, wsgi
from .harness import Budget, CorrectnessError, Row, print_report, quiet_logs, rows_to_json

#: Each group's run function and its budget for a full run.
GROUPS: dict[str, tuple[Callable[[Budget], list[Row]], Budget]] = {
    "verify": (verify.run, verify.BUDGET),
    "asgi": (asgi.run, asgi.BUDGET),
    "wsgi": (wsgi.run, wsgi.BUDGET),
    "flask": (flask_views.run, flask_views.BUDGET),
    "e2e": (e2e.run, e2e.BUDGET),
    "memory": (memory.run, memory.BUDGET),
    "journal": (journal.run, journal.BUDGET),
    "runs": (runs.run, runs.BUDGET),
    "inspector": (inspector.run, inspector.BUDGET),
}


def machine() -> str:
    """One line naming the machine, Python and the frameworks measured."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = []
    for package in ("starlette", "flask", "werkzeug", "uvicorn", "h11"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return (
        f"{os.cpu_count()} CPUs ({model}), {platform.python_implementation()} "
        f"{platform.python_version()} on {platform.system()}; {', '.join(versions)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the groups; print the table; return the exit status."""
    parser = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__)
    parser.add_argument("--only", help="comma-separated groups: " + ",".join(GROUPS))
    parser.add_argument("--quick", action="store_true", help="tiny counts, checks only")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    names = list(GROUPS) if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    quiet_logs()
    print(f"machine: {machine()}")
    rows: list[Row] = []
    started = time.monotonic()
    for name in names:
        run, full = GROUPS[name]
        budget = Budget.quick_run() if args.quick else full
        group_started = time.monotonic()
        try:
            rows += run(budget)
        except CorrectnessError as error:
            print(f"CORRECTNESS FAILURE in {name}: {error}", file=sys.stderr)
            return 2
        print(f"{name}: {time.monotonic() - group_started:.0f} s", file=sys.stderr, flush=True)
    status = print_report(rows, notes=[f"total: {time.monotonic() - started:.0f} s"])
    if args.json:
        with open(args.json, "w") as out:
            out.write(rows_to_json(rows) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
