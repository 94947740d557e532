"""census_receiver.cli: the parser, main(argv), help, version, and how commands plug in.

Each command has its own test file (test_cli_send.py, test_cli_signing.py,
test_cli_serve.py, ...); the ones that open sockets are in
tests/integration/test_cli_*.py.
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest

from census_receiver import __version__, cli
from census_receiver.cli import (
    COMMAND_MODULES,
    EXIT_OK,
    EXIT_USAGE,
    CommandFailed,
    build_parser,
    main,
)
from census_receiver.testing import EVENT_NAMES

# Kept importable from here for the example and README tests that run the command.
from .cli_tools import ROOT as ROOT
from .cli_tools import WAIT as WAIT
from .cli_tools import Serve as Serve
from .cli_tools import cli_env as cli_env
from .cli_tools import no_secret_in_env as no_secret_in_env
from .cli_tools import run_cli as run_cli

if TYPE_CHECKING:
    from census_receiver.cli.common import Subcommands


@pytest.mark.parametrize("command", [[], ["serve"], ["send"], ["sign"], ["verify"]])
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("usage: ")
    assert "--secret" in out if command else "serve,send,sign,verify" not in out


def test_help_runs_through_python_m_and_lists_the_events() -> None:
    done = run_cli("send", "--help")
    assert done.returncode == EXIT_OK
    assert done.stdout.startswith("usage: python")
    assert all(name in done.stdout for name in EVENT_NAMES)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == EXIT_OK
    assert capsys.readouterr().out.strip().endswith(__version__)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["serve", "--port", "http"],
        ["serve", "--port", "70000"],
        ["send"],
        ["send", "sync.failed", "--retry-scale", "-1"],
        ["send", "sync.failed", "--timeout", "0"],
        ["sign", "--bogus"],
    ],
)
def test_bad_arguments_exit_2_with_usage(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == EXIT_USAGE
    assert "usage:" in capsys.readouterr().err


def test_every_sub_command_carries_the_function_that_runs_it() -> None:
    parser = build_parser()
    for argv in (["serve"], ["send", "sync.failed"], ["sign"], ["verify", "--signature", "x"]):
        assert callable(parser.parse_args(argv).run)


def test_a_command_module_plugs_in_by_being_listed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(args: argparse.Namespace, prog: str) -> int:
        if args.fail:
            raise CommandFailed(3, "it failed, as asked")
        print(f"hello from {args.command}")
        return EXIT_OK

    def add_parsers(commands: Subcommands) -> None:
        hello = commands.add_parser("hello", help="say hello")
        hello.add_argument("--fail", action="store_true")
        hello.set_defaults(run=run)

    module = SimpleNamespace(add_parsers=add_parsers)
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*COMMAND_MODULES, module))
    assert main(["hello"]) == EXIT_OK
    assert capsys.readouterr().out == "hello from hello\n"
    assert main(["hello", "--fail"]) == 3
    assert capsys.readouterr().err.endswith(" hello: error: it failed, as asked\n")
