"""fast_init: building frozen, slotted dataclasses through their slots."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import pytest

from census_receiver import SyncAlertRaised, SyncFailed
from census_receiver._frozen import fast_init


def test_builds_the_same_instance_as_init() -> None:
    raw = MappingProxyType({"event": "sync.failed"})
    built = fast_init(SyncFailed)("sync.failed", 1, 2, 3, raw)
    made = SyncFailed("sync.failed", 1, 2, 3, raw)
    assert type(built) is SyncFailed
    assert built == made
    assert hash(built) == hash(made)
    assert repr(built) == repr(made)


def test_sets_inherited_and_own_fields_in_field_order() -> None:
    values: tuple[object, ...] = (
        "sync.alert.raised",
        1,
        2,
        3,
        MappingProxyType({}),
        9,
        "t",
        "m",
        "d",
        "u",
    )
    built = fast_init(SyncAlertRaised)(*values)
    assert tuple(getattr(built, f.name) for f in dataclasses.fields(built)) == values


def test_built_instances_stay_frozen() -> None:
    built = fast_init(SyncFailed)("sync.failed", 1, 2, 3, MappingProxyType({}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.sync_id = 5  # type: ignore[misc]


def test_every_field_is_required() -> None:
    with pytest.raises(TypeError, match="missing"):
        fast_init(SyncFailed)("sync.failed", 1, 2)


def test_builds_outcomes_as_init_does() -> None:
    from census_receiver.answers import HANDLED, Outcome

    event = SyncFailed("sync.failed", 1, 2, 3, MappingProxyType({}))
    built = fast_init(Outcome)(HANDLED, event, "result")
    assert type(built) is Outcome and built == Outcome(HANDLED, event, "result")
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.result = None  # type: ignore[misc]


def test_refuses_a_class_whose_post_init_it_would_skip() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError("negative")

    with pytest.raises(TypeError, match="__post_init__"):
        fast_init(Checked)
