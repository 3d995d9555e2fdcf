"""Shared helpers for the benchmark scripts: the machine line and alternating timers.

Shared machines are noisy, so contenders are timed in alternation (round-robin, one
batch of calls each per round) and compared by the median over rounds; absolute
times alone mean little, the ratios measured side by side do.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line() -> str:
    """One line that says where the numbers were measured."""
    return (
        f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, python {platform.python_version()}"
    )


def time_rounds(
    contenders: dict[str, Callable[[], object]],
    rounds: int = 15,
    min_round_s: float = 0.0,
    warmup: int = 2,
) -> dict[str, list[float]]:
    """Seconds per call of each contender in each round, timed round-robin.

    Running the contenders in turn puts every one of them under the same noise from
    other processes. Each round runs every contender for a batch of calls sized (once,
    after warm-up) to take about ``min_round_s`` (one call when it is 0).
    """
    batch = {}
    for name, fn in contenders.items():
        for _ in range(warmup):
            fn()
        start = time.perf_counter()
        fn()
        once = max(time.perf_counter() - start, 1e-7)
        batch[name] = max(1, int(min_round_s / once))
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            n = batch[name]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - start) / n)
    return samples


def time_alternating(
    contenders: dict[str, Callable[[], object]],
    rounds: int = 15,
    min_round_s: float = 0.02,
    warmup: int = 2,
) -> dict[str, float]:
    """Median seconds per call of each contender over :func:`time_rounds`."""
    samples = time_rounds(contenders, rounds=rounds, min_round_s=min_round_s, warmup=warmup)
    return {name: statistics.median(s) for name, s in samples.items()}


def saved_bytes(fn: Callable[[], object]) -> int:
    """Bytes of the tensors autograd saves for backward while fn() runs (each save counted)."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.2f}"


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def ratio_of_medians(slow: list[float], fast: list[float]) -> float:
    """median(slow) / median(fast): how many times faster ``fast`` is.

    Unlike a median of per-round ratios it always agrees with the two median times
    printed beside it (that can say "faster" of the slower median).
    """
    return statistics.median(slow) / statistics.median(fast)


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """A distribution-free interval for the median of ``values``: ``(low, high, coverage)``.

    ``low`` and ``high`` are the order statistics ``k`` and ``n + 1 - k``, with the largest
    ``k`` whose interval covers the median with probability ``>= level`` for any
    continuous distribution (binomial(n, 1/2) tails); with too few values for ``level``
    it is the full range, and ``coverage`` says how sure that is (0.94 for 5 values).
    """
    if not values:
        raise ValueError("median_interval needs at least one value")
    ordered = sorted(values)
    n = len(ordered)
    below = 0.0  # P(Binomial(n, 1/2) <= k - 1), summed as k grows
    best_k, best_coverage = 1, 1.0 - 2.0 * math.comb(n, 0) / 2.0**n
    for k in range(1, (n + 1) // 2 + 1):
        below += math.comb(n, k - 1) / 2.0**n
        coverage = 1.0 - 2.0 * below
        if coverage < level:
            break
        best_k, best_coverage = k, coverage
    return ordered[best_k - 1], ordered[n - best_k], max(best_coverage, 0.0)


def ratio_interval(slow: list[float], fast: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """:func:`median_interval` of the per-round ratios slow / fast (rounds timed side by side)."""
    return median_interval([s / f for s, f in zip(slow, fast)], level)
