"""How the journal commands (``deliveries``, ``runs``) show records: tables, facts, JSON.

Table cells are verified payload text shown on a terminal, so each is one short
line with control characters escaped (``cell``); times are UTC (``time_cell``).
``--json`` (``add_json_argument``) prints records as plain JSON data
(``json_data``), one object per line, times in ISO 8601.
A listing piped into ``head`` ends quietly (``piped_output``). Only the
standard library is used here.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from ..answers import printable

__all__ = [
    "add_json_argument",
    "cell",
    "json_data",
    "piped_output",
    "print_facts",
    "print_table",
    "time_cell",
]


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--json``: print records with ``json_data`` rather than as a table.

    Args:
        parser: the sub-command's parser.
    """
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per line, every field (times in ISO 8601)",
    )


def cell(value: object, limit: int = 40) -> str:
    """A table cell: verified payload text, on one short escaped line.

    Args:
        value: the value to show.
        limit: the most characters shown (more are cut, with ``...``).

    Returns:
        The text; ``-`` for ``None`` or an empty string.
    """
    return "-" if value is None or value == "" else printable(value, limit)


def time_cell(value: datetime | None) -> str:
    """A time in UTC, to the second: ``2024-05-01 12:00:03``.

    Args:
        value: a timezone-aware time, or ``None``.

    Returns:
        The text; ``-`` for ``None``.
    """
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print ``header`` and ``rows`` in columns as wide as their widest cell.

    Args:
        header: the column names.
        rows: the rows, each with one cell per column.
    """
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        cells = (text.ljust(width) for text, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())


def print_facts(facts: Sequence[tuple[str, str]]) -> None:
    """Print one record's facts, a ``name:`` and its value a line, values aligned.

    Args:
        facts: ``(name, value)`` pairs, in order.
    """
    for name, value in facts:
        print(f"  {name + ':':<18}{value}")


def json_data(value: object) -> Any:
    """``value`` as plain JSON data: a record's fields as a dict, times in ISO 8601.

    Args:
        value: a record (a dataclass instance), or one of its values.

    Returns:
        Data ready for ``json.dumps``: dataclasses become dicts, tuples lists,
        ``datetime`` ISO 8601 text; ``bytes`` (a body) become ``None``, for the
        caller to show as it chooses.
    """
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [json_data(item) for item in value]
    if isinstance(value, bytes):
        return None
    return value


@contextmanager
def piped_output() -> Iterator[None]:
    """Within the block, output into a pipe that closes (``| head``) ends quietly.

    Stdout is flushed at the end of the block, so a closed pipe is met here.
    """
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        # Piped into head (or a pager that quit): what was read is all that was wanted.
        # Later writes to the closed pipe, at exit too, go nowhere instead of failing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
