"""The docs run: every ```python block of README.md and docs/*.md, and every command line.

The blocks of one file run in order in one namespace, from the repository root,
with ``__name__ == "docs"`` (so ``if __name__ == "__main__":`` guards what must
not run here, such as serving forever). Code is compiled against the Markdown
file with its own line numbers, so a failure points at the file and line.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from census_receiver import WebhookReceiver
from census_receiver.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[^`\s]*)\s*$")
#: Fence languages that are shown, not run. Anything else (```py, ```python3,
#: ```pycon) would be skipped silently, so it is refused.
SHOWN = {"", "sh", "bash", "console", "text", "json", "toml", "ini", "yaml", "http", "diff"}
COMMANDS = ("census-receiver ", "python3 -m census_receiver ", "python -m census_receiver ")


@dataclass(frozen=True)
class Block:
    path: Path
    lang: str
    line: int  # the 1-based line of the first line of code
    source: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    found = []
    lines = path.read_text(encoding="utf-8").splitlines()
    number = 0
    while number < len(lines):
        opening = FENCE.match(lines[number])
        number += 1
        if not opening:
            continue
        indent, start, body = opening["indent"], number + 1, []
        while number < len(lines) and lines[number].strip() != "```":
            line = lines[number]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            number += 1
        if number == len(lines):
            raise AssertionError(f"{path.relative_to(ROOT)}:{start - 1}: unclosed ``` fence")
        number += 1
        found.append(Block(path, opening["lang"], start, "\n".join(body) + "\n"))
    return found


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", DOCS, ids=_id)
def test_python_blocks_run(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    saved_environ = dict(os.environ)
    # A page may configure logging, as users do; the rest of the suite must not see it.
    ours = logging.getLogger("census_receiver")
    saved_logger = (ours.level, list(ours.handlers), ours.propagate)
    namespace: dict[str, object] = {"__name__": "docs"}
    try:
        for block in blocks(path):
            if block.lang != "python":
                continue
            # Pad so the code's line numbers are the Markdown file's.
            code = compile("\n" * (block.line - 1) + block.source, str(path), "exec")
            try:
                exec(code, namespace)
            except Exception as exc:
                raise AssertionError(f"{block.where}: this python block failed: {exc!r}") from exc
    finally:
        os.environ.clear()
        os.environ.update(saved_environ)
        ours.setLevel(saved_logger[0])
        ours.handlers[:] = saved_logger[1]
        ours.propagate = saved_logger[2]
        for value in namespace.values():
            if isinstance(value, WebhookReceiver):
                value.close()


@pytest.mark.parametrize("path", DOCS, ids=_id)
def test_fences_are_run_or_explicitly_shown(path: Path) -> None:
    for block in blocks(path):
        assert block.lang == "python" or block.lang in SHOWN, (
            f"{block.where}: ```{block.lang} is neither run (```python) nor a shown "
            f"language ({', '.join(sorted(SHOWN - {''}))})"
        )


def command_lines(path: Path) -> list[tuple[str, list[str]]]:
    """Every census-receiver command in the shell blocks, as (where, arguments)."""
    found = []
    for block in blocks(path):
        if block.lang not in ("sh", "bash", "console"):
            continue
        text = block.source.replace("\\\n", " ")
        for number, line in enumerate(text.splitlines()):
            for part in re.split(r"&&|\|\||[|;]", line.split(" #", 1)[0]):
                part = part.strip().removeprefix("$ ")
                part = re.sub(r"^(\w+=\S+\s+)+", "", part)  # VAR=value prefixes
                for command in COMMANDS:
                    if part.startswith(command):
                        args = shlex.split(part[len(command) :])
                        found.append(
                            (f"{block.where.rsplit(':', 1)[0]}:{block.line + number}", args)
                        )
    return found


def test_the_docs_show_commands() -> None:
    assert any(command_lines(path) for path in DOCS)


@pytest.mark.parametrize("path", DOCS, ids=_id)
def test_command_lines_in_the_docs_parse(path: Path) -> None:
    parser = build_parser()
    for where, args in command_lines(path):
        if "--help" in args or "-h" in args or "--version" in args:
            continue
        try:
            parser.parse_args(args)
        except SystemExit:
            raise AssertionError(
                f"{where}: census-receiver {shlex.join(args)} does not parse"
            ) from None


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found = set()
    inside = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
        elif not inside and line.startswith("#"):
            found.add(slug(line.lstrip("#")))
    return found


@pytest.mark.parametrize("path", DOCS, ids=_id)
def test_relative_links_point_at_existing_pages_and_headings(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    for target in LINK.findall(prose):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        page, _, anchor = target.partition("#")
        linked = (path.parent / page).resolve() if page else path
        assert linked.exists(), f"{_id(path)}: the link {target!r} points at no file"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{_id(path)}: no heading for {target!r}"
