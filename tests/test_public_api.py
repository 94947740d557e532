"""The public surface: __all__ complete and sorted, and a framework-free import."""

from __future__ import annotations

import json
import subprocess
import sys

import census_receiver


def test_all_is_sorted_and_complete() -> None:
    exported = census_receiver.__all__
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n))
    public = {
        name
        for name, value in vars(census_receiver).items()
        if not name.startswith("_") and not isinstance(value, type(sys)) and name != "annotations"
    }
    assert public | {"__version__"} == set(exported)


def test_design_names_are_importable() -> None:
    from census_receiver import (  # noqa: F401
        Event,
        SyncAlertRaised,
        SyncAlertResolved,
        SyncCompleted,
        SyncFailed,
        SyncStarted,
        SyncSuccess,
        SyncTriggered,
        WebhookReceiver,
        compute_signature,
    )


def test_version_is_a_string() -> None:
    assert isinstance(census_receiver.__version__, str) and census_receiver.__version__


def test_import_loads_no_third_party_module() -> None:
    code = (
        "import sys, json\n"
        "before = set(sys.modules)\n"
        "import census_receiver, census_receiver.dedup, census_receiver.testing\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(json.dumps(sorted(new - set(sys.stdlib_module_names) - {'census_receiver'})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_py_typed_marker_ships() -> None:
    from importlib.resources import files

    assert files("census_receiver").joinpath("py.typed").is_file()
