"""Latency tables for searches, built once per (space, target) and cached.

A search needs the table of its space on its target. :func:`cached_table` keeps
tables in a cache folder, one file per space definition and target fingerprint::

    <cache>/latency/<space>-v<version>-r<resolution>-w<width>-<layer-keys hash>-<fingerprint id>.json

The cache folder is ``$HWNAS_CACHE_DIR`` if set, else ``~/.cache/hwnas``. A table
being built is written after every entry (see :func:`hwnas.latency.build.build_table`),
so an interrupted build continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from typing import Any, Optional

__all__ = ["CALIBRATION_VERSION", "CALIBRATION_ROUNDS", "default_cache_dir", "table_cache_path", "cached_table", "measuring_target", "quick_timing", "calibration_timing"]


#: How a search table's correction is calibrated; a cached correction of another
#: version is fitted again. 6: version 5 with a per-block term (``per_block * blocks``)
#: in place of the depth term in the squared number of blocks, which over-predicted deep
#: models and under-predicted the 8-12 blocks searches end with (see
#: :func:`~hwnas.latency.validation.fit_linear_correction`). 5: version 4 with every calibration model timed in
#: :data:`CALIBRATION_ROUNDS` interleaved rounds of 1 s, pooled (4: one 1-s timing each).
#: 4: version 3, with the calibration models and their measurements stored beside the
#: fit (see :mod:`hwnas.latency.table_scale`). 3: a proportional fit less the per-call
#: overheads plus a depth term in the squared number of blocks, on calibration models
#: spread in block sizes and in the share of skipped layers (2: an affine fit held above
#: a tenth of the smallest sum, on the same models; 1: the proportional fit alone, on
#: models with few skips).
CALIBRATION_VERSION = 6

#: Interleaved rounds in which the calibration models are timed (their samples pooled).
#: Why: on a 2-core VM (AMD EPYC, family 25) the 12 single 1-s timings of a calibration
#: moved by up to 36% (a 1.1 ms model) and 17% (a 6 ms one) when the same models were
#: timed again in 3 pooled rounds; the depth fit on the single timings predicted five
#: searched models 2.6-9.6% low, the fit on the pooled timings within -0.7..+4.0%.
CALIBRATION_ROUNDS = 3


def quick_timing():
    """The quick per-entry timing settings of cached search tables."""
    from hwnas.latency.build import DEFAULT_TABLE_TIMING

    # A short budget per entry: ~0.3 s each keeps a ~100-entry table under a minute;
    # 5% CI of the median is ample next to the run-to-run noise of a shared machine.
    return replace(DEFAULT_TABLE_TIMING, warmup_iters=5, warmup_s=0.02, min_samples=9, target_rel_ci=0.05, budget_s=0.3)


def calibration_timing(table: Any = None):
    """Whole-model timing of the calibration models (the validation default: 3 s per model,
    spread over :data:`CALIBRATION_ROUNDS` rounds), on the clock ``table``'s entries were
    timed with."""
    from hwnas.latency.validation import DEFAULT_MODEL_TIMING

    clock = table.timing_clock() if table is not None else DEFAULT_MODEL_TIMING.clock
    return replace(DEFAULT_MODEL_TIMING, clock=clock)


def default_cache_dir() -> str:
    """``$HWNAS_CACHE_DIR`` or ``~/.cache/hwnas``."""
    return os.environ.get("HWNAS_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "hwnas")


def table_cache_path(space: Any, target: Any, cache_dir: Optional[str] = None, drift_correction: bool = False) -> str:
    """Where the cached table of ``space`` on ``target`` lives (drift-corrected tables apart:
    their entries are on the scale of their own reference timing)."""
    from hwnas.latency.fingerprint import fingerprint_id
    from hwnas.latency.table import head_key, layer_entry_keys, stem_key

    keys = json.dumps([stem_key(space), layer_entry_keys(space), head_key(space)], sort_keys=True)
    shape_hash = hashlib.sha256(keys.encode("utf-8")).hexdigest()[:10]
    name = (f"{space.name}-v{space.version}-r{space.resolution}-w{space.width:g}-{shape_hash}-"
            f"{fingerprint_id(target.fingerprint())}{'-drift' if drift_correction else ''}.json")
    return os.path.join(cache_dir or default_cache_dir(), "latency", name)


def calibration_count(space: Any, calibrate: int) -> int:
    """The calibration models a table of ``space`` gets for ``calibrate`` (``--calibrate``):
    at least 2, and no more than the space's distinct architectures leave beside the 2
    validation ones (a small user space; said in a warning).

    Raises:
        ValueError: The space has fewer than 4 architectures.
    """
    import warnings

    size = space.size()
    if size < 4:
        raise ValueError(f"space {space.name!r} has {size} architectures; calibrating its latency table takes 4 "
                         "(2 to fit, 2 to check): search it without calibration (--calibrate 0, calibrate=0)")
    count = max(2, int(calibrate))
    if count > size - 2:
        warnings.warn(f"space {space.name!r} has {size} architectures: its table is calibrated on {size - 2} "
                      f"models, not the {count} asked for (--calibrate)", stacklevel=2)
        count = size - 2
    return count


def cached_table(space: Any, target: Any, cache_dir: Optional[str] = None, config: Any = None,
                 progress: bool = True, calibrate: int = 0, seed: int = 0, drift_correction: bool = False,
                 calibration_config: Any = None):
    """The latency table of ``space`` on ``target``: loaded from the cache, completed or built.

    Args:
        space: Search space.
        target: A :class:`hwnas.latency.targets.Target`.
        cache_dir: Cache folder (default :func:`default_cache_dir`).
        config: Per-entry timing (default: :func:`quick_timing`).
        progress: Progress bar while measuring.
        calibrate: If positive and the table has no fitted correction yet, measure
            this many whole models to fit the correction ``measured ~ a * (table_sum -
            overheads) + per_block * blocks`` (stored in the cached table; predictions
            then use it). The calibration models spread both in block sizes and in
            the share of skipped layers, since searches end with most layers
            skipped: with few skips among the calibration models, 14 searched models
            measured 4-13% under their predictions. The per-block term is what a
            whole model pays for each block beyond its timing alone (see
            :func:`~hwnas.latency.validation.fit_linear_correction`); with ``a > 0``
            and ``per_block >= 0`` every prediction is positive. The models
            are timed in :data:`CALIBRATION_ROUNDS` interleaved rounds. A cached
            correction from another :data:`CALIBRATION_VERSION` is fitted again.
        seed: Seed of the calibration architectures.
        drift_correction: Time every entry and calibration model through a
            :class:`~hwnas.latency.drift.DriftCorrectedTarget` (see :func:`measuring_target`);
            the reference and its baseline are stored in ``table.notes["drift_correction"]``.
        calibration_config: Whole-model timing of the calibration (default
            :func:`calibration_timing`), split over the rounds.

    Returns:
        A complete :class:`~hwnas.latency.table.LatencyTable`.
    """
    from hwnas.latency.build import build_table
    from hwnas.latency.table import LatencyTable

    config = config or quick_timing()
    path = table_cache_path(space, target, cache_dir, drift_correction)
    notes = None
    if drift_correction:
        from hwnas.latency.drift import drift_corrected_target

        # A partly built table keeps the scale of the entries it already has.
        stored = LatencyTable.load(path).notes.get("drift_correction") if os.path.exists(path) else None
        target = drift_corrected_target(target, space, stored)
        target.calibrate(config)
        notes = {"drift_correction": target.describe()}
    calibration = calibration_count(space, calibrate) if calibrate > 0 else 0  # refused before any building
    table = build_table(space, target, path, config=config, resume=True, progress=progress, notes=notes)
    stale = bool(table.correction) and table.correction.get("calibration") != CALIBRATION_VERSION
    if calibrate > 0 and (not table.correction or stale):
        from hwnas.latency.validation import validate_table

        validate_table(table, space, target, num_archs=2, num_calibration=calibration, seed=seed,
                       config=calibration_config or calibration_timing(table), progress=progress,
                       store_correction=True, intercept=False, vary_skips=True, per_block=True,
                       rounds=CALIBRATION_ROUNDS)
        table.correction["calibration"] = CALIBRATION_VERSION
        table.save(path)
    return table


def measuring_target(target: Any, space: Any, table: Any) -> Any:
    """The target to measure models with so that the results share ``table``'s scale.

    ``target`` itself for a plain table; for a drift-corrected one (see
    :func:`cached_table`), ``target`` wrapped in the same drift correction: same
    reference model, same baseline.
    """
    stored = (table.notes or {}).get("drift_correction") if table is not None else None
    if not stored:
        return target
    from hwnas.latency.drift import drift_corrected_target

    return drift_corrected_target(target, space, stored)
