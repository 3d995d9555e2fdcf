"""Shared helpers for the benchmark scripts: the machine line and alternating timers.

Shared machines are noisy, so contenders are timed in alternation (round-robin, one
batch of calls each per round) and compared by the median over rounds; absolute
times alone mean little, the ratios measured side by side do.
"""

from __future__ import annotations

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


def time_alternating(
    contenders: dict[str, Callable[[], object]],
    rounds: int = 15,
    min_round_s: float = 0.02,
    warmup: int = 2,
) -> dict[str, float]:
    """Median seconds per call of each contender, timed round-robin.

    Each round runs every contender for a batch of calls sized (once, after warm-up)
    to take about ``min_round_s``; the result per contender is the median over rounds
    of the per-call time.
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
    return {name: statistics.median(s) for name, s in samples.items()}


def copy_bandwidth_gbs(num_bytes: int = 1 << 28, rounds: int = 9) -> float:
    """Memory bandwidth of a large ``copy_`` in GB/s (bytes read + bytes written)."""
    src = torch.ones(num_bytes // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    seconds = time_alternating({"copy": lambda: dst.copy_(src)}, rounds=rounds, min_round_s=0.05)
    return 2 * num_bytes / seconds["copy"] / 1e9
