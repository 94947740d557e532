"""The ASGI adapters on the oldest supported Starlette and FastAPI, not only the newest.

A virtualenv under pytest's tmp dir sees the system's packages, with the oldest
Starlette/FastAPI pair of the ``starlette``/``fastapi`` extras (and the anyio,
pydantic and httpx of their time) installed over them; tests/test_starlette.py,
tests/test_fastapi.py and the contract suite (tests/test_contract.py) then run
in it. Needs PyPI (or pip's cache).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Keep in step with the lower bounds of the extras in pyproject.toml.
OLDEST = {"starlette": "0.27.0", "fastapi": "0.100.0"}
#: What was current alongside them (mid-2023): newer anyio and pydantic deprecate
#: APIs these versions use, and httpx 0.28 dropped an argument their TestClient passes.
OF_THEIR_TIME = ["anyio==3.7.1", "pydantic==2.0.3", "httpx==0.24.1"]


def run(*args: str | Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST"))}
    return subprocess.run(
        [str(a) for a in args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_asgi_adapter_tests_pass_on_the_oldest_supported_starlette_and_fastapi(
    tmp_path: Path,
) -> None:
    venv = tmp_path / "oldest"
    made = run(
        sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", venv, timeout=60
    )
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    pins = [f"{name}=={version}" for name, version in OLDEST.items()]
    installed = run(
        *(sys.executable, "-m", "pip", "--python", python, "install"),
        *("--quiet", "--disable-pip-version-check", "--no-input", *pins, *OF_THEIR_TIME),
        timeout=300,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    show = "import starlette, fastapi; print(starlette.__version__, fastapi.__version__)"
    versions = run(python, "-c", show, timeout=60)
    assert versions.stdout.split() == list(OLDEST.values())

    tests = run(
        *(python, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
        *("tests/test_starlette.py", "tests/test_fastapi.py", "tests/test_contract.py"),
        timeout=300,
    )
    summary = tests.stdout.strip().splitlines()[-1] if tests.stdout.strip() else ""
    assert tests.returncode == 0, tests.stdout[-5000:] + tests.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary, summary
