"""Device fingerprints: what a latency measurement is valid for.

A fingerprint records the CPU, core count, thread count, library versions, batch
size, dtype, target and target options. Tables built on different fingerprints are
not comparable; :func:`fingerprint_differences` names what differs so that mixing
them can be refused with a message that says why.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from typing import Any, Mapping

import numpy
import torch

__all__ = ["cpu_model", "device_fingerprint", "fingerprint_id", "fingerprint_differences", "machine_line"]

# Keys that do not change what a measurement means (informational only).
_INFORMATIONAL_KEYS = frozenset({"hostname", "created"})


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", "r", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _hwnas_version() -> str:
    try:
        from hwnas import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover - partial installs
        return "unknown"


def device_fingerprint(
    target: str,
    threads: int,
    batch: int,
    dtype: str,
    libraries: Mapping[str, str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The fingerprint of a target on this machine.

    Args:
        target: Target name (e.g. ``"eager"``, ``"onnxruntime"``).
        threads: Intra-op threads the target runs with.
        batch: Batch size of the measured inputs.
        dtype: Data type name, e.g. ``"float32"``.
        libraries: Extra library versions the target depends on (``{"onnxruntime": "1.17.0"}``).
        options: Target options that change latency (graph optimisation level...).
    """
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        affinity = os.cpu_count() or 0
    versions = {"torch": torch.__version__, "numpy": numpy.__version__, "hwnas": _hwnas_version()}
    versions.update(dict(libraries or {}))
    return {
        "target": str(target),
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "system": platform.system(),
        "logical_cores": os.cpu_count() or 0,
        "usable_cores": affinity,
        "threads": int(threads),
        "batch": int(batch),
        "dtype": str(dtype),
        "python": platform.python_version(),
        "libraries": dict(sorted(versions.items())),
        "options": dict(sorted((options or {}).items())),
        "hostname": platform.node(),
    }


def _comparable(fp: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fp.items() if k not in _INFORMATIONAL_KEYS}


def fingerprint_id(fp: Mapping[str, Any]) -> str:
    """Short stable hash of the comparable part of a fingerprint."""
    text = json.dumps(_comparable(fp), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def fingerprint_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between two fingerprints (empty when they match)."""
    a, b = _comparable(a), _comparable(b)
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            out.append(f"{key}: {a.get(key)!r} != {b.get(key)!r}")
    return out


def machine_line(fp: Mapping[str, Any]) -> str:
    """One line describing where a measurement was taken (for reports)."""
    libs = fp.get("libraries", {})
    lib_text = " ".join(f"{k}={v}" for k, v in libs.items())
    return (
        f"{fp.get('cpu_model')} ({fp.get('logical_cores')} logical cores, {fp.get('usable_cores')} usable), "
        f"target={fp.get('target')} threads={fp.get('threads')} batch={fp.get('batch')} dtype={fp.get('dtype')} "
        f"{lib_text}"
    )
