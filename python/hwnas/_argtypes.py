"""``argparse`` types shared by the command-line handlers: a bad number is refused while
parsing, with the option's name, before anything runs or any folder is made."""

from __future__ import annotations

import argparse
import math
import os

__all__ = ["non_negative_int", "positive_int", "positive_float", "non_negative_float", "compared_models",
           "calibration_models", "available_cpus", "check_thread_count", "thread_count", "thread_count_or_default"]


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


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _model_count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of models, got {text!r}") from None


def compared_models(text: str) -> int:
    """Models to judge a latency table on: at least the two an error metric needs."""
    value = _model_count(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 (error metrics and rank correlations compare "
                                         f"models), got {value}")
    return value


def calibration_models(text: str) -> int:
    """Calibration models: 0 (no correction) or enough to fit one."""
    value = _model_count(text)
    if value != 0 and value < 2:
        # The affine fit (and the proportional one reported beside it, and the refined
        # table) has two parameters: one model cannot fit it.
        raise argparse.ArgumentTypeError(f"must be 0 (no correction) or at least 2 models (the correction "
                                         f"has two parameters), got {value}")
    return value


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - platforms without affinity masks
        return os.cpu_count() or 1


def _thread_count_problem(threads: object) -> str | None:
    """What is wrong with ``threads`` as a thread count (``None``: nothing), in words that
    follow the option's or argument's name."""
    cores = available_cpus()
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= cores:
        return f"must be between 1 and the {cores} CPU cores available here, got {threads!r}"
    return None


def check_thread_count(threads: int, what: str = "threads") -> int:
    """``threads`` if it is between 1 and the cores available, else ``ValueError``.

    More threads than cores only measure (or train) oversubscribed, and a huge count makes
    torch's thread pool fail outright (a segmentation fault in ``torch.set_num_threads``).
    """
    problem = _thread_count_problem(threads)
    if problem is not None:
        raise ValueError(f"{what} {problem}")
    return threads


def thread_count(text: str, zero_means: str | None = None) -> int:
    """A thread count read from the command line: 1 .. the cores available, or 0 when
    ``zero_means`` names what 0 stands for (argparse prefixes the option's name to the
    message)."""
    value = int(text)
    if value == 0 and zero_means is not None:
        return 0
    problem = _thread_count_problem(value)
    if problem is not None:
        if zero_means is not None:
            problem = f"must be 0 ({zero_means}) or {problem.removeprefix('must be ')}"
        raise argparse.ArgumentTypeError(problem)
    return value


def thread_count_or_default(text: str) -> int:
    """A thread count, or 0 for torch's default."""
    return thread_count(text, zero_means="torch's default")
