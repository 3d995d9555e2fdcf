"""Measuring models on a table's scale: its calibration models timed again beside them.

Why: a table's fitted correction predicts what a whole model measured at the time
the table was calibrated. On a shared machine the speed moves, and a model measured
an hour later is compared with a prediction made at another speed. The drift
correction of :mod:`hwnas.latency.drift` divides that out with one reference model,
but one model is a thin ruler: measured on this project's 2-core VM, whole rounds of
nine searched models moved by 8% against the round before with drift correction
on, and each model's measurement moved by about 7% from one minute to the next.

:func:`measure_on_table_scale` times the given models and the table's calibration
models (stored with its correction by
:func:`~hwnas.latency.validation.validate_table`) round-robin in several rounds,
so that every model is spread over the same moments, and scales the given models by
``median_i(calibrated_i / now_i)``: how much faster the machine ran, on the
calibration models themselves, when the correction was fitted. The unscaled pooled
medians are returned too.
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from typing import Any, Optional, Sequence

from .targets import Target

__all__ = ["calibration_models", "measure_on_table_scale", "DEFAULT_SCALE_ROUNDS", "DEFAULT_SCALE_BUDGET_S"]

#: Rounds of :func:`measure_on_table_scale`.
DEFAULT_SCALE_ROUNDS = 3
#: Total time budget per model over all rounds (seconds): as much as each calibration
#: model had when the correction was fitted (:func:`hwnas.search.tables.calibration_timing`).
DEFAULT_SCALE_BUDGET_S = 3.0


def calibration_models(table: Any) -> list[tuple[Any, float]]:
    """The table's calibration architectures and their measured latencies (us).

    Raises:
        ValueError: The table's correction stores no calibration models (a table
            calibrated before they were stored: calibrate it again).
    """
    from hwnas.spaces import Architecture

    stored = (table.correction or {}).get("models")
    if not stored:
        raise ValueError("this table's correction stores no calibration models; calibrate it again "
                         "(hwnas latency validate --calibrate N, or delete the cached table)")
    return [(Architecture.from_dict(m["arch"], source="calibration model"), float(m["measured_us"])) for m in stored]


def measure_on_table_scale(models: Sequence[tuple[Any, Sequence[int]]], table: Any, space: Any, target: Target,
                           rounds: int = DEFAULT_SCALE_ROUNDS, budget_s: float = DEFAULT_SCALE_BUDGET_S,
                           config: Any = None, progress: bool = False, seed: int = 0) -> dict[str, Any]:
    """Measures ``models`` beside ``table``'s calibration models and puts them on the table's scale.

    Args:
        models: ``(module, (C, H, W))`` pairs to measure (copies are timed).
        table: A calibrated :class:`~hwnas.latency.table.LatencyTable` whose
            correction stores its calibration models.
        space: The table's search space (builds the calibration models).
        target: The target the calibration models were measured with (for a
            drift-corrected table, :func:`hwnas.search.tables.measuring_target`).
        rounds: Round-robin rounds; every model gets ``budget_s / rounds`` per round.
        budget_s: Total time budget per model.
        config: Base timing settings (default: the whole-model settings of
            :mod:`~hwnas.latency.validation` on the clock of the table's entries).
        progress: Progress bar.
        seed: Seed of the calibration models' weights.

    Returns:
        ``{"measured_us": [...], "table_scale_us": [...], "scale", "calibration_ratios",
        "rounds", "budget_s"}``: per model the pooled median as measured and times
        ``scale``; ``scale`` is the median over calibration models of
        ``calibrated / now``.

    Raises:
        ValueError: Bad ``rounds`` or ``budget_s``, or a table without calibration models.
    """
    import copy

    from .validation import DEFAULT_MODEL_TIMING, lazy_models, measure_round_robin

    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    if not budget_s > 0:
        raise ValueError(f"budget_s must be > 0, got {budget_s!r}")
    calibration = calibration_models(table)
    config = replace(config or replace(DEFAULT_MODEL_TIMING, clock=table.timing_clock()), budget_s=float(budget_s))
    # Copies: a target puts what it times in eval mode, and the caller's models stay as they are.
    entries = [(copy.deepcopy(module), tuple(shape)) for module, shape in models]
    entries += lazy_models(space, [arch for arch, _ in calibration], seed)
    results = measure_round_robin(entries, target, config, rounds, progress=progress,
                                  desc=f"models and calibration models on {target.name}")
    measured = [r.median_us for r in results[:len(models)]]
    ratios = [then / r.median_us for (_, then), r in zip(calibration, results[len(models):])]
    scale = statistics.median(ratios)
    return {"measured_us": measured, "table_scale_us": [m * scale for m in measured], "scale": scale,
            "calibration_ratios": ratios, "rounds": rounds, "budget_s": float(budget_s)}
