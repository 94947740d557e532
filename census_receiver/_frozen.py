"""A fast constructor for the frozen, slotted dataclasses built on every delivery.

No I/O. A frozen dataclass's ``__init__`` stores each field through
``object.__setattr__`` (to get past its own ``__setattr__`` guard), which costs
about three times a plain slot store. Events and outcomes are built once per
delivery on the hot path, so they are built here by storing straight into the
slots; the instances are identical to what ``__init__`` makes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["fast_init"]

_T = TypeVar("_T")


def fast_init(cls: type[_T]) -> Callable[..., _T]:
    """Return ``build(*values)`` making a ``cls`` from every field's value, in field order.

    Args:
        cls: a ``@dataclass(frozen=True, slots=True)`` class.

    Returns:
        A function taking exactly one value per field, no defaults, no checks.
    """
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls}
    for i, name in enumerate(names):
        namespace[f"store{i}"] = getattr(cls, name).__set__  # the slot's own descriptor
    params = ", ".join(f"v{i}" for i in range(len(names)))
    stores = "".join(f"    store{i}(obj, v{i})\n" for i in range(len(names)))
    # Unrolled, as dataclasses generates its own __init__: a loop over the slots
    # would cost what this saves.
    source = f"def build({params}):\n    obj = new(cls)\n{stores}    return obj\n"
    exec(source, namespace)  # noqa: S102 - our own generated source, no input in it
    build: Callable[..., _T] = namespace["build"]
    return build
