"""Generate census_receiver/sequence.py, the sync twin of census_receiver/sequence_async.py.

As httpcore does with its unasync script: the async original is rewritten line
by line with a few substitutions, and the result is committed, so the package
runs plain code and readers see plain code. ``python -m tests.unasync``
rewrites the twin; ``python -m tests.unasync --check`` (and the test suite)
fails while it is stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

__all__ = ["ORIGINAL", "TWIN", "generate", "main"]

PACKAGE = Path(__file__).resolve().parent.parent / "census_receiver"
ORIGINAL = PACKAGE / "sequence_async.py"
TWIN = PACKAGE / "sequence.py"

#: (pattern, replacement), applied in order to every line of the original.
SUBS: list[tuple[str, str]] = [
    (r"\basync def (\w+)_async\(", r"def \1("),
    # A handler awaited in place when async, else call_async: the sync call does both.
    (
        r"\bawait \((\w+)\.handler\(d\.event\) if \1\.is_async else steps\.call_async\(d, \1\)\)",
        r"steps.call(d, \1)",
    ),
    (r"\bawait steps\.(\w+)_async\(", r"steps.\1("),
    (r"__all__ = \[\"run_delivery_async\"\]", '__all__ = ["run_delivery"]'),
]

HEADER = '''"""The run of one verified delivery, for a sync caller: the twin of sequence_async.py.

GENERATED from census_receiver/sequence_async.py by ``python -m tests.unasync``;
do not edit: edit the original, whose docstring explains the sequence, and
regenerate.
"""
'''


def generate(original: str) -> str:
    """The sync twin's source, from the async original's.

    Raises:
        ValueError: if an ``async`` or ``await`` survives the substitutions (a
            construct they do not cover was added to the original).
    """
    body = original.split('"""', 2)[2].lstrip("\n")  # without the original's docstring
    lines = []
    for line in body.splitlines(keepends=True):
        if line.lstrip().startswith("# async path:"):  # a comment on the async form only
            continue
        for pattern, replacement in SUBS:
            line = re.sub(pattern, replacement, line)
        if re.search(r"\b(async|await)\b", line.split("#", 1)[0]):
            raise ValueError(f"unasync has no rule for: {line.strip()}")
        lines.append(line)
    return HEADER + "\n" + "".join(lines)


def main(argv: list[str]) -> int:
    """Rewrite the twin, or with ``--check`` say whether it is current (exit 1 if not)."""
    expected = generate(ORIGINAL.read_text())
    if "--check" in argv:
        if TWIN.read_text() != expected:
            print(f"{TWIN} is stale: run python -m tests.unasync", file=sys.stderr)
            return 1
        return 0
    TWIN.write_text(expected)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
