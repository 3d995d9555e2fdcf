"""Argument checks shared across the package."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["as_integer", "as_name_list"]


def as_integer(what: str, value: Any) -> int:
    """``value`` as a Python int: ints and NumPy/torch integers pass; bools, floats and
    strings raise ``ValueError`` naming ``what`` (a width of 2.5 is a mistake to report, not
    to round)."""
    if isinstance(value, (bool, np.bool_)) or not hasattr(value, "__index__"):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return operator.index(value)


def as_name_list(what: str, value: Any) -> list[str]:
    """``value`` as a list of names: a sequence of strings. A single string is refused:
    ``list("k3_e1")`` would be its letters, which then read as unknown block names."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{what} must be a list of block names, got {value!r}")
    names = list(value)
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"{what} must be a list of block names, got {name!r} in {names!r}")
    return names
