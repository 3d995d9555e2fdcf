"""``argparse`` types shared by the command-line handlers: a bad number is refused while
parsing, with the option's name, before anything runs or any folder is made."""

from __future__ import annotations

import argparse
import math

__all__ = ["non_negative_int", "positive_int", "positive_float"]


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value
