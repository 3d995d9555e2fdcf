"""Argument checks shared across the package."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

__all__ = ["as_integer"]


def as_integer(what: str, value: Any) -> int:
    """``value`` as a Python int: ints and NumPy/torch integers pass; bools, floats and
    strings raise ``ValueError`` naming ``what`` (a width of 2.5 is a mistake to report, not
    to round)."""
    if isinstance(value, (bool, np.bool_)) or not hasattr(value, "__index__"):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return operator.index(value)
