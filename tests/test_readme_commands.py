"""The README's first command, on a fresh virtualenv: it installs, serves, and its send works.

This is what a new user does first, so it is tested as they would do it: the
install part of the command is read from README.md and run by the shell in a new
virtualenv (no system site-packages) from the repository root, fetching the
``serve`` extra from the package index; then its ``serve`` part is started, and
the ``send`` command that ``serve`` prints is pasted back into a shell.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from census_receiver.cli import EXIT_OK

from .test_cli import ROOT, Serve
from .test_docs import blocks

INSTALL_TIMEOUT = 240.0  # seconds; the package index is the slow part


def readme_first_command() -> str:
    first = next(b for b in blocks(ROOT / "README.md") if b.lang in ("sh", "bash"))
    return first.source.strip()


def test_the_readme_starts_with_install_then_serve() -> None:
    install, serve = readme_first_command().split(" && ")
    assert install.startswith("python3 -m pip install ") and "[serve]" in install
    assert serve == "python3 -m census_receiver serve"


def test_readme_first_command_serves_and_its_send_command_is_verified(tmp_path: Path) -> None:
    install, serve_command = readme_first_command().split(" && ")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "CENSUS_WEBHOOK_SECRET", "PIP_USER")
    }
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    installed = subprocess.run(
        ["sh", "-c", install],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]

    # Installed into the venv, importable from anywhere, with the serve extra and the script.
    probe = subprocess.run(
        ["python3", "-c", "import census_receiver, jinja2, uvicorn, sys; print(sys.prefix)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()).resolve() == venv.resolve()
    assert (venv / "bin" / "census-receiver").exists()

    serve = Serve(command=["sh", "-c", f"exec {serve_command} --port 0"], env=env)
    try:
        serve.wait_for(r"generated one")
        pasted = serve.wait_for(r" send sync\.completed ").strip()
        assert pasted.startswith("python3 -m census_receiver send ")
        assert re.search(rf"--url {re.escape(serve.url)} --secret [0-9a-f]{{40}}$", pasted)
        sent = subprocess.run(
            ["sh", "-c", pasted], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert sent.returncode == EXIT_OK, sent.stdout + sent.stderr
        assert '<- 200 OK {"status": "ok"}' in sent.stdout
        serve.wait_for(r"verified +sync\.completed +workspace=3167 sync=3167956 run=324399613")
    finally:
        assert serve.stop() == EXIT_OK
