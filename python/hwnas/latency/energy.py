"""Energy (ChamNet): tables and predictors from energy measurements.

Energy tables are :class:`~hwnas.latency.table.LatencyTable` objects with
``metric="energy"`` and an energy ``unit``; predictors are
:class:`~hwnas.latency.predictors.BlockCostPredictor` with ``metric="energy"``.
Values come from the user (a power meter, a phone's battery counters...) via
:func:`energy_table_from_measurements`, or from Linux RAPL counters
(``/sys/class/powercap/intel-rapl:*/energy_uj``) via :func:`measure_energy_rapl`
where the machine has them. Virtual machines usually do not expose RAPL;
:func:`rapl_status` says why not, and the RAPL functions raise
:class:`RaplUnavailableError` with that reason.
"""

from __future__ import annotations

import glob
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from .table import LatencyTable, TableEntry

__all__ = [
    "RaplUnavailableError",
    "RaplDomain",
    "rapl_status",
    "rapl_domains",
    "measure_energy_rapl",
    "energy_table_from_measurements",
    "RAPL_ROOT",
]

RAPL_ROOT = "/sys/class/powercap"


class RaplUnavailableError(RuntimeError):
    """This machine offers no readable RAPL energy counters (the message says why)."""


@dataclass(frozen=True)
class RaplDomain:
    """One RAPL counter: ``name`` (e.g. ``package-0``), its sysfs folder and wrap-around range."""

    name: str
    path: str
    max_energy_uj: int

    def read_uj(self) -> int:
        with open(os.path.join(self.path, "energy_uj"), "r", encoding="ascii") as handle:
            return int(handle.read().strip())


def rapl_status(root: str = RAPL_ROOT) -> tuple[bool, str]:
    """``(available, reason)``: whether RAPL counters can be read here, and if not, why."""
    folders = sorted(glob.glob(os.path.join(root, "intel-rapl:*")))
    if not os.path.isdir(root):
        return False, (f"no RAPL energy counters: {root} does not exist (kernel without powercap, "
                       "or not Linux)")
    if not folders:
        return False, (f"no RAPL energy counters: {root} has no intel-rapl:* domains. Typical causes: a virtual "
                       "machine (hypervisors do not pass RAPL through), a CPU without RAPL, or the intel_rapl "
                       "kernel module not loaded. Supply energy measurements yourself "
                       "(energy_table_from_measurements).")
    unreadable = [f for f in folders if not os.access(os.path.join(f, "energy_uj"), os.R_OK)]
    if len(unreadable) == len(folders):
        return False, (f"RAPL counters exist under {root} but energy_uj is not readable by this user "
                       "(root-only since Linux 5.10, CVE-2020-8694); run as root or grant read access")
    return True, f"{len(folders) - len(unreadable)} readable RAPL domain(s)"


def rapl_domains(root: str = RAPL_ROOT) -> list[RaplDomain]:
    """The readable RAPL domains.

    Raises:
        RaplUnavailableError: None can be read here (with the reason).
    """
    ok, reason = rapl_status(root)
    if not ok:
        raise RaplUnavailableError(reason)
    domains = []
    for folder in sorted(glob.glob(os.path.join(root, "intel-rapl:*"))):
        if not os.access(os.path.join(folder, "energy_uj"), os.R_OK):
            continue
        with open(os.path.join(folder, "name"), "r", encoding="ascii") as handle:
            name = handle.read().strip()
        try:
            with open(os.path.join(folder, "max_energy_range_uj"), "r", encoding="ascii") as handle:
                max_range = int(handle.read().strip())
        except OSError:
            max_range = 2**32
        domains.append(RaplDomain(f"{name}({os.path.basename(folder)})", folder, max_range))
    return domains


def measure_energy_rapl(fn: Callable[[], Any], min_duration_s: float = 1.0, domain: Optional[str] = None,
                        root: str = RAPL_ROOT) -> dict[str, float]:
    """Average energy per call of ``fn`` from RAPL counters, in millijoules.

    Calls ``fn`` repeatedly for at least ``min_duration_s`` (RAPL updates about
    every millisecond, so short runs are dominated by counter granularity) and
    divides the counter difference (with wrap-around) by the call count. The
    counters measure the whole package, idle power and other processes included.

    Args:
        fn: Zero-argument callable.
        min_duration_s: Minimum measuring time.
        domain: Name prefix of the domain to use (default: the first, usually ``package-0``).

    Returns:
        ``{"energy_mj": per call, "calls": n, "seconds": t, "power_w": average power}``.

    Raises:
        RaplUnavailableError: No readable RAPL counters (the message says why).
        ValueError: ``domain`` matches none.
    """
    domains = rapl_domains(root)
    if domain is not None:
        domains = [d for d in domains if d.name.startswith(domain)]
        if not domains:
            raise ValueError(f"no RAPL domain named {domain!r}")
    chosen = domains[0]
    start_uj = chosen.read_uj()
    start = time.perf_counter()
    calls = 0
    while time.perf_counter() - start < min_duration_s:
        fn()
        calls += 1
    seconds = time.perf_counter() - start
    end_uj = chosen.read_uj()
    used_uj = end_uj - start_uj if end_uj >= start_uj else end_uj + chosen.max_energy_uj - start_uj
    return {"energy_mj": used_uj / 1e3 / calls, "calls": calls, "seconds": seconds, "power_w": used_uj / 1e6 / seconds}


def energy_table_from_measurements(
    space: Any,
    values: Mapping[str, float],
    device: Mapping[str, Any],
    unit: str = "mJ",
    require_complete: bool = True,
) -> LatencyTable:
    """An energy table from user-supplied per-entry energies.

    Args:
        space: The search space the values belong to.
        values: ``{entry key: energy}``; keys as in a latency table of the space
            (``LatencyTable.for_space(space, {}).required_keys()`` lists them).
        device: Description of the measuring device (stored as the fingerprint;
            give at least a ``"target"`` name).
        unit: Energy unit of the values.
        require_complete: Refuse values that do not cover every key.

    Raises:
        ValueError: Unknown keys; a value that is not a finite number ``>= 0`` (NaN,
            infinity, ``None``, text that is no number), naming its key; or missing
            keys with ``require_complete``.
    """
    fingerprint = dict(device)
    fingerprint.setdefault("target", "user")
    table = LatencyTable.for_space(space, fingerprint, metric="energy", unit=unit, source="user")
    required = set(table.required_keys())
    unknown = sorted(set(values) - required)
    if unknown:
        raise ValueError(f"energy values for keys the space does not have: {unknown[:5]}{'...' if len(unknown) > 5 else ''}")
    for key, given in values.items():
        # Numbers written as text (read from a CSV file) are read; anything else, and
        # infinity (a prediction of inf, a file that cannot be loaded back), is refused here.
        try:
            value = float(given) if not isinstance(given, bool) else math.nan
        except (TypeError, ValueError):
            value = math.nan
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"energy of {key!r} must be a finite number >= 0, got {given!r}")
        block, channels, stride, hw = key.split("|")
        c_in, c_out = (int(c) for c in channels[1:].split("-"))
        h, w = (int(v) for v in hw.split("x"))
        table.entries[key] = TableEntry(value, block, c_in, c_out, int(stride[1:]), (h, w))
    if require_complete and table.missing_keys():
        missing = table.missing_keys()
        raise ValueError(f"{len(missing)} entries have no energy value, e.g. {missing[:3]}")
    return table
