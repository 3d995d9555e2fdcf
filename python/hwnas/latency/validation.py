"""Validating a latency table against end-to-end measurements of whole models.

:func:`validate_table` samples architectures whose latencies spread across the
space (:func:`sample_spread_architectures`), measures each whole model on the
table's target, and reports the error of the table's predictions (MAPE, maximum
error, Kendall tau, bias) raw and corrected:

* ``overhead``: the table entries each paid the target's per-call overhead
  (measured on an identity model while building), a whole model pays it once;
  subtract ``(units - 1) * call_overhead``. Needs no fitting.
* ``linear``: ``measured ~ a * raw + b`` fitted by least squares on a
  *calibration* set of architectures distinct from the validation set.

Report JSON: ``format`` ``hwnas.latency_validation``, ``version`` 1.
"""

from __future__ import annotations

import math
import numbers
import os
import random
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import torch

from hwnas._figures import figure_format, save_figure
from hwnas._io import write_json
from .fingerprint import fingerprint_differences, machine_line
from .harness import TimingConfig, TimingResult
from .table import LatencyTable, apply_correction
from .targets import Target

__all__ = [
    "sample_spread_architectures",
    "measure_architectures",
    "measure_round_robin",
    "lazy_models",
    "error_metrics",
    "fit_linear_correction",
    "validate_table",
    "ValidationReport",
    "plot_predicted_vs_measured",
    "DEFAULT_MODEL_TIMING",
    "VALIDATION_FORMAT",
    "VALIDATION_FORMAT_VERSION",
]

VALIDATION_FORMAT = "hwnas.latency_validation"
VALIDATION_FORMAT_VERSION = 1

#: Timing settings of whole models: 1% CI of the median, at most 3 s each.
DEFAULT_MODEL_TIMING = TimingConfig(warmup_iters=10, warmup_s=0.1, min_samples=15, target_rel_ci=0.01, budget_s=3.0)


def _cost_proxy(name: str) -> float:
    """A rough size of a block from its name: 0 for skip, else expansion + kernel/10."""
    from hwnas.spaces import parse_block_name

    spec = parse_block_name(name)
    if spec.is_skip:
        return 0.0
    expansion = spec.expansion if spec.expansion is not None else 1
    kernel = spec.kernel if spec.kernel is not None else 3
    return float(expansion) / spec.groups + kernel / 10.0


def sample_spread_architectures(space: Any, n: int, seed: int = 0, sharpness: float = 6.0,
                                vary_skips: bool = False) -> list[Any]:
    """``n`` distinct architectures whose latencies spread from small to large.

    Uniform sampling clusters around the mean latency (a sum of many independent
    choices). Here architecture ``j`` draws each layer's block with probability
    proportional to ``exp(beta_j * z)``, where ``z`` in [0, 1] is the block's
    relative size in its layer (skip smallest, large expansion/kernel largest) and
    ``beta_j`` runs evenly from ``-sharpness`` to ``+sharpness`` over the set (in a
    shuffled order): some architectures are mostly skips and small blocks, some
    mostly large blocks, and the rest in between.

    With ``vary_skips`` the share of skipped layers is a second, independent axis:
    architecture ``j`` skips each layer that offers ``skip`` with probability
    ``1 - q_j``, ``q_j`` running evenly over (0, 1) in another shuffled order, and
    draws its other blocks as above. Searches under a latency weight end with most
    layers skipped and the rest large blocks, which the first axis alone hardly
    reaches (it ties few skips to small blocks): 36 such architectures skipped 2.7 of
    22 layers on average, 14 searched models 11.2.

    Args:
        space: The search space.
        n: Number of architectures.
        seed: Seed of the draw.
        sharpness: Largest ``|beta|``.
        vary_skips: Also spread the share of skipped layers.

    Raises:
        ValueError: ``n`` is not an integer ``>= 1``, or the space has fewer than ``n``
            architectures (``space.size()``): the set would hold duplicates, and a
            validation set and a calibration set drawn together would overlap.
    """
    from hwnas.spaces import parse_block_name

    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"number of architectures must be an integer >= 1, got {n!r}")
    size = space.size()
    if n > size:
        raise ValueError(f"cannot draw {n} distinct architectures from space {space.name!r}: it has only {size}; "
                         f"ask for at most {size} (validation and calibration architectures together)")
    rng = random.Random(seed)
    sizes, skips = [], []
    for layer in space.layers:
        proxy = [_cost_proxy(c) for c in layer.choices]
        lo, hi = min(proxy), max(proxy)
        sizes.append([(p - lo) / (hi - lo) if hi > lo else 0.5 for p in proxy])
        is_skip = [parse_block_name(c).is_skip for c in layer.choices]
        skips.append(is_skip if any(is_skip) and not all(is_skip) else None)
    betas = [(-sharpness + 2 * sharpness * (j + 0.5) / n) for j in range(n)]
    rng.shuffle(betas)
    keeps = [(j + 0.5) / n for j in range(n)]
    rng.shuffle(keeps)

    def layer_probs(j: int) -> list[list[float]]:
        probs = [[math.exp(betas[j] * z) for z in layer_sizes] for layer_sizes in sizes]
        if not vary_skips:
            return probs
        for weights, is_skip in zip(probs, skips):
            if is_skip is None:
                continue
            blocks = sum(w for w, skip in zip(weights, is_skip) if not skip)
            for i, skip in enumerate(is_skip):
                weights[i] = (1.0 - keeps[j]) if skip else keeps[j] * weights[i] / blocks
        return probs

    archs, seen = [], set()
    attempts = 0
    while len(archs) < n:
        if attempts < 100 * n:
            arch = space.sample(rng=rng, probs=layer_probs(len(archs)))
        else:
            # The spread draw keeps returning architectures already drawn (a small space
            # nearly used up, or a sharp draw that favours few of them): uniform draws
            # reach the rest, so that the set stays distinct as promised.
            arch = space.sample(rng=rng)
        attempts += 1
        if arch.key() in seen:
            if attempts >= 1000 * n:
                raise ValueError(f"could not draw {n} distinct architectures from space {space.name!r} "
                                 f"({size} in all) in {attempts} draws; ask for fewer")
            continue
        seen.add(arch.key())
        archs.append(arch)
    return archs


def measure_architectures(
    space: Any,
    archs: Sequence[Any],
    target: Target,
    config: Optional[TimingConfig] = None,
    progress: bool = True,
    seed: int = 0,
    rounds: int = 1,
) -> list[TimingResult]:
    """Measures each architecture's whole model end to end on ``target``.

    Args:
        rounds: Measure the architectures round-robin this many times, each time
            with ``budget_s / rounds``, and pool the samples. On a machine whose
            load changes over time this spreads every model over several moments,
            so that a busy minute does not slow down only the models measured in it.
    """

    return measure_round_robin(lazy_models(space, archs, seed), target, config, rounds,
                               progress=progress, desc=f"whole models on {target.name}")


def lazy_models(space: Any, archs: Sequence[Any], seed: int = 0) -> list[Any]:
    """For :func:`measure_round_robin`: per architecture a callable that builds its model
    (weights seeded with ``seed``) and returns ``(module, (C, H, W))``."""

    def build(arch):
        torch.manual_seed(seed)
        return space.build(arch), (space.in_channels, arch.resolution, arch.resolution)

    return [lambda arch=arch: build(arch) for arch in archs]


def measure_round_robin(models: Sequence[Any], target: Target, config: Optional[TimingConfig] = None,
                        rounds: int = 1, progress: bool = False, desc: str = "whole models") -> list[TimingResult]:
    """Measures whole models round-robin, ``rounds`` times each with ``budget_s / rounds``.

    Args:
        models: ``(module, (C, H, W))`` pairs, or callables returning one (built when
            measured, so that only one model of a long list is alive at a time).
        target: Where to measure.
        config: Total timing settings per model (default :data:`DEFAULT_MODEL_TIMING`).
        rounds: Measuring rounds; each model's samples are pooled over them.
        progress: Progress bar.
        desc: Its label.

    Returns:
        One :class:`TimingResult` per model, in order.
    """
    from dataclasses import replace

    from .harness import sample_statistics

    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    config = config or DEFAULT_MODEL_TIMING
    if rounds > 1:
        config = replace(config, budget_s=config.budget_s / rounds,
                         min_samples=max(1, config.min_samples // rounds),
                         max_samples=max(1, config.max_samples // rounds))
    pooled: list[list[TimingResult]] = [[] for _ in models]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(models) * rounds, desc=desc, unit="model")
    for _ in range(rounds):
        for index, entry in enumerate(models):
            module, shape = entry() if callable(entry) else entry
            pooled[index].append(target.measure(module, shape, config))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    if rounds == 1:
        return [parts[0] for parts in pooled]
    results = []
    for parts in pooled:
        merged = sample_statistics([s for part in parts for s in part.samples_us], config.confidence)
        merged.stop_reason = f"{rounds} rounds: " + ",".join(p.stop_reason for p in parts)
        merged.iters_per_sample = parts[0].iters_per_sample
        merged.elapsed_s = sum(p.elapsed_s for p in parts)
        merged.threads = parts[0].threads
        merged.method = parts[0].method
        results.append(merged)
    return results


def error_metrics(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """MAPE, maximum absolute percentage error, bias, Kendall tau and Spearman rho.

    Percentages are of the measured value: ``100 * |pred - meas| / meas``.

    Raises:
        ValueError: Lengths differ, fewer than 2 points, or a measured value <= 0.
    """
    from scipy.stats import kendalltau, spearmanr

    pred = np.asarray(predicted, dtype=float)
    meas = np.asarray(measured, dtype=float)
    if pred.shape != meas.shape or pred.ndim != 1:
        raise ValueError(f"predicted and measured must be equal-length 1-D sequences, got {pred.shape} and {meas.shape}")
    if pred.size < 2:
        raise ValueError(f"need at least 2 points to compute error metrics, got {pred.size}")
    if np.any(meas <= 0):
        raise ValueError(f"measured values must be positive, got minimum {meas.min()}")
    rel = (pred - meas) / meas
    return {
        "n": int(pred.size),
        "mape_pct": float(100 * np.mean(np.abs(rel))),
        "max_err_pct": float(100 * np.max(np.abs(rel))),
        "bias_pct": float(100 * np.mean(rel)),
        "within_10pct": float(np.mean(np.abs(rel) <= 0.10)),
        "kendall_tau": float(kendalltau(pred, meas).statistic),
        "spearman_rho": float(spearmanr(pred, meas).statistic),
    }


def _sums_alike(sums: Any) -> bool:
    """Whether table sums are all the same (to rounding: sums of one set of entries added in
    another order differ in the last bits), so that no slope can be fitted through them."""
    x = np.asarray(sums, dtype=float)
    return bool(np.ptp(x) <= 1e-9 * np.max(np.abs(x)))


def fit_linear_correction(raw: Sequence[float], measured: Sequence[float], intercept: bool = True,
                          offset: float = 0.0, floor: Optional[float] = None,
                          blocks: Optional[Sequence[float]] = None) -> dict[str, Any]:
    """Least-squares ``measured ~ a * raw + b``, weighted by 1/measured (relative error).

    Relative weighting keeps small models, where a fixed per-call overhead
    matters most, from being drowned by large ones.

    Args:
        raw, measured: Table sums and measured latencies of the calibration models.
        intercept: Fit ``b`` too. Without it (one parameter) the fit is a
            proportional scale of ``raw - offset``: steadier on a few noisy points.
        offset: Without ``intercept``, a known part of ``raw`` that whole models do
            not pay, removed before scaling: ``measured ~ a * (raw - offset)``, so
            ``b = -a * offset`` (capped at 0.9 times the smallest ``raw``).
            :func:`validate_table` passes the per-call overhead that every table
            entry but one paid, ``(units - 1) * call_overhead``: on ONNX Runtime
            (3.5 us per session run, 23 entries) a proportional fit of the plain sums
            predicted 41 us for a model measured at 18 us.
        floor: With ``intercept``, the smallest sum any architecture of the space has
            (:meth:`~hwnas.latency.table.LatencyTable.smallest_sum`). The intercept is
            then kept at ``b >= -0.9 * a * floor``, so that no architecture, however
            far below the calibration models, is predicted under a tenth of its
            scaled sum (a search's ``log(LAT)`` needs a positive latency): where the
            free fit goes below that bound, the fit is the proportional one with
            ``offset = 0.9 * floor``. Two-parameter fits on calibration models that
            did not reach small models gave intercepts from +39 to -1226 us.
        blocks: Per calibration model, its number of non-skip blocks. The fit is
            then ``measured ~ a * (raw - offset) + per_block * blocks`` with ``a > 0``
            and ``per_block >= 0`` (``intercept`` must be False): a whole model pays a
            fixed cost per block beyond the blocks' standalone timings. Measured on
            eager PyTorch at 8x8 (width 0.5, digits' space) with the 12 calibration
            models of a search table: fitted on them, this form missed 53 other models
            (0-22 blocks) by 2.0-2.6% rms and 6.4% at most, and the six models searched
            with that table by 3.3% rms and 6.5% at most; the form hwnas fitted before
            (a term in ``blocks**2``) missed them by 3.5-3.6% rms, 7.4% and 10.9%: it
            over-predicted deep models (19-22 blocks) and under-predicted the 8-12
            blocks searches end with (``benchmarks/bench_latency_correction.py``).

    Returns:
        ``{"kind": "linear", "a", "b", "n", ...}``; ``"fit"`` says ``"proportional"``
        (with its ``"offset"``), ``"affine"`` (with the ``"floor"`` it was held to) or
        ``"blocks"`` (with its ``"offset"`` and ``"per_block"``).

    Raises:
        ValueError: ``raw`` and ``measured`` are not flat sequences of one length, too
            few points, a value that is not finite or a measurement ``<= 0``; with
            ``intercept``, table sums that are all the same (no slope can be fitted
            through them); with ``blocks``, a scale and a per-block term that the
            points cannot tell apart.
    """
    try:
        x = np.asarray(raw, dtype=float)
        y = np.asarray(measured, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"raw and measured must be sequences of numbers, got {raw!r} and {measured!r}") from None
    if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape:
        # numpy would broadcast a single measurement over every sum.
        raise ValueError(f"raw and measured must be flat sequences of one length (one table sum and one "
                         f"measurement per calibration model), got shapes {x.shape} and {y.shape}")
    if x.size < (2 if intercept else 1):
        raise ValueError(f"a linear correction needs at least {2 if intercept else 1} calibration points, got {x.size}")
    if not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("calibration sums and measurements must be finite, and the measurements positive")
    w = 1.0 / y

    def proportional(offset: float) -> dict[str, Any]:
        # argmin_a sum (a * (x - offset) / y - 1)^2
        r = (x - offset) * w
        if not np.any(r):
            raise ValueError("the calibration models' table sums are all 0: no scale can be fitted to them")
        a = float(np.dot(r, np.ones_like(r)) / np.dot(r, r))
        return {"kind": "linear", "a": a, "b": -a * float(offset), "n": int(x.size), "fit": "proportional",
                "offset": float(offset)}

    if blocks is not None and intercept:
        raise ValueError("the per-block fit has no free intercept: pass intercept=False")
    if not intercept:
        if not math.isfinite(offset) or offset < 0:
            raise ValueError(f"offset must be a finite number >= 0, got {offset}")
        # A noisy overhead can never remove a whole model: keep at least a tenth of
        # the smallest calibration sum (the stored offset says what was used). On ONNX
        # Runtime the overhead is 60-70% of a small model's sum.
        offset = min(float(offset), 0.9 * float(x.min()))
        if blocks is None:
            return proportional(offset)
        n = np.asarray(blocks, dtype=float)
        if n.shape != x.shape or not np.all(np.isfinite(n)) or np.any(n < 0):
            raise ValueError(f"blocks must be {x.size} finite values >= 0, got {n.tolist()}")
        design = np.stack([(x - offset) * w, n * w], axis=1)
        if np.linalg.matrix_rank(design) < 2:
            # Sums and block counts in proportion (e.g. all alike): the scale and the
            # per-block term trade off freely, and lstsq would pick one split arbitrarily.
            raise ValueError("the calibration models' table sums and block counts are in proportion: the scale "
                             "cannot be told from the per-block term; calibrate with models of different sizes "
                             "and numbers of blocks, or fit without blocks")
        (a, per_block), *_ = np.linalg.lstsq(design, np.ones_like(y), rcond=None)
        if not (a > 0 and per_block >= 0):
            # The free fit breaks a bound: per_block >= 0 (a block does not cost less in a
            # whole model than alone), where the proportional fit is the constrained
            # optimum, or a > 0, where it is the fit that still ranks models by their sums.
            return {**proportional(offset), "fit": "blocks", "per_block": 0.0}
        return {"kind": "linear", "a": float(a), "b": -float(a) * offset, "n": int(x.size), "fit": "blocks",
                "offset": offset, "per_block": float(per_block)}
    if _sums_alike(x):
        # Every point at one table sum: any line through their mean fits, and lstsq
        # would return an arbitrary (minimum-norm) one.
        raise ValueError(f"the calibration models' table sums are all {float(x[0]):g}: a slope cannot be fitted; "
                         "calibrate with models of different sizes, or fit a proportional scale (intercept=False)")
    design = np.stack([x * w, w], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, np.ones_like(y), rcond=None)
    if floor is None:
        return {"kind": "linear", "a": float(a), "b": float(b), "n": int(x.size)}
    floor = float(floor)
    # The smallest architecture may be a calibration model: its sum, added up in
    # another order, can exceed the floor in the last bits.
    if not (math.isfinite(floor) and 0 < floor <= float(x.min()) * (1 + 1e-9)):
        raise ValueError(f"floor must be in (0, smallest calibration sum {float(x.min()):g}], got {floor}")
    floor = min(floor, float(x.min()))
    if a > 0 and b >= -0.9 * a * floor:
        return {"kind": "linear", "a": float(a), "b": float(b), "n": int(x.size), "fit": "affine", "floor": floor}
    # The bound is active: b = -0.9 * a * floor, one parameter left.
    return {**proportional(0.9 * floor), "fit": "affine", "floor": floor}


@dataclass
class ValidationReport:
    """Predicted-versus-measured comparison of a table on whole models.

    Attributes:
        table_fingerprint: The table's device fingerprint.
        machine: One-line description of the machine and target.
        archs: Architecture compact strings (validation set).
        measured: Median whole-model latency per architecture.
        raw, overhead, linear: Predictions per correction (``None`` where unavailable).
        metrics: ``{correction: error_metrics(...)}``.
        correction: The linear correction fitted on the calibration set (or ``None``).
        calibration_archs: Architectures used only for fitting the correction.
        measured_stats: Timing statistics per validation architecture.
    """

    table_fingerprint: dict[str, Any]
    machine: str
    archs: list[str]
    measured: list[float]
    raw: list[float]
    overhead: Optional[list[float]]
    linear: Optional[list[float]]
    metrics: dict[str, dict[str, float]]
    correction: Optional[dict[str, Any]]
    calibration_archs: list[str] = field(default_factory=list)
    measured_stats: list[dict[str, Any]] = field(default_factory=list)
    unit: str = "us"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": VALIDATION_FORMAT,
            "version": VALIDATION_FORMAT_VERSION,
            "machine": self.machine,
            "table_fingerprint": self.table_fingerprint,
            "unit": self.unit,
            "metrics": self.metrics,
            "correction": self.correction,
            "archs": self.archs,
            "measured": self.measured,
            "predicted_raw": self.raw,
            "predicted_overhead": self.overhead,
            "predicted_linear": self.linear,
            "calibration_archs": self.calibration_archs,
            "measured_stats": self.measured_stats,
        }

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_dict())

    def summary_lines(self) -> list[str]:
        lines = [f"machine: {self.machine}", f"validation architectures: {len(self.archs)}  "
                 f"measured range {min(self.measured):.1f}-{max(self.measured):.1f} {self.unit}"]
        for name, m in self.metrics.items():
            lines.append(
                f"  {name:<12} MAPE {m['mape_pct']:5.2f}%  max {m['max_err_pct']:5.2f}%  bias {m['bias_pct']:+6.2f}%  "
                f"tau {m['kendall_tau']:.3f}  within10% {100 * m['within_10pct']:.0f}%"
            )
        if self.correction:
            per_block, depth = self.correction.get("per_block"), self.correction.get("depth")
            lines.append(f"  linear correction (calibration n={self.correction['n']}): "
                         f"measured = {self.correction['a']:.4f} * table + {self.correction['b']:.2f} {self.unit}"
                         + (f" + {per_block:.2f} {self.unit} * blocks" if per_block else "")
                         + (f" + {depth:.3f} {self.unit} * blocks^2" if depth else ""))
        return lines


def plot_predicted_vs_measured(report: ValidationReport, path: str | os.PathLike, title: str = "") -> str:
    """Scatter of predicted against measured latency with the y = x line (written atomically).

    Drawn on its own Agg canvas, so that the caller's matplotlib backend is left as it
    was. Both axes share one range covering every value, so that y = x is the diagonal
    and a prediction's distance from it is its error. Hollow markers keep overlapping
    series visible, and series with identical predictions (e.g. ``overhead`` equal to
    ``raw`` when there is no call overhead) are drawn once, named together
    (``"raw = overhead"``).

    Args:
        report: The validation report.
        path: Output file: ``.png``, ``.svg`` or ``.pdf`` by its extension; folders are created.
        title: Figure title (default: the table's target).

    Returns:
        The path written.

    Raises:
        ValueError: The report has no measurements, a series whose length differs from
            the measurements', or a missing, NaN or infinite value.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    measured = np.asarray(report.measured if report.measured is not None else [], dtype=float)
    if measured.size == 0:
        raise ValueError("the validation report has no measured architectures: nothing to plot")
    series = []
    for name, values in (("raw", report.raw), ("overhead", report.overhead), ("linear", report.linear)):
        if values is None:
            continue
        predicted = np.asarray(values, dtype=float)
        if predicted.shape != measured.shape:
            raise ValueError(f"the report's {name} predictions have {predicted.size} values for "
                             f"{measured.size} measurements")
        series.append((name, predicted))
    for name, values in [("measured", measured)] + series:
        if not np.all(np.isfinite(values)):
            raise ValueError(f"the report's {name} latencies hold NaN or infinite values")
    # One entry per distinct series; a copy of another would be drawn exactly under it.
    groups: list[tuple[list[str], np.ndarray]] = []
    for name, predicted in series:
        same = next((g for g in groups if np.array_equal(g[1], predicted)), None)
        if same is None:
            groups.append(([name], predicted))
        else:
            same[0].append(name)

    fig = Figure(figsize=(5.6, 5.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    # A series keeps its marker and colour whether or not another is merged into it.
    styles = {"raw": ("o", "tab:blue"), "overhead": ("s", "tab:orange"), "linear": ("^", "tab:green")}
    for names, predicted in groups:
        marker, colour = styles[names[0]]
        metrics = [report.metrics.get(n) for n in names]
        m = next((m for m in metrics if m), None)
        text = " = ".join(names)
        if m is not None:
            text += f": MAPE {m['mape_pct']:.1f}%, tau {m['kendall_tau']:.2f}"
        ax.scatter(measured, predicted, marker=marker, s=22, facecolors="none", edgecolors=colour, linewidths=1.0,
                   label=text)
    values = np.concatenate([measured] + [g[1] for g in groups])
    lo, hi = float(values.min()), float(values.max())
    pad = 0.05 * (hi - lo) if hi > lo else 0.1 * max(abs(hi), 1.0)
    # Latencies are positive: the padding does not take the axes below 0.
    lo, hi = (max(lo - pad, 0.0) if lo >= 0 else lo - pad), hi + pad
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x", zorder=0)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal", adjustable="box")
    ax.ticklabel_format(style="plain", useOffset=False)
    for axis in (ax.xaxis, ax.yaxis):
        # Few ticks: five-digit plain labels side by side would run into each other.
        axis.set_major_locator(MaxNLocator(nbins=5))
    ax.set_xlabel(f"measured ({report.unit})")
    ax.set_ylabel(f"predicted from table ({report.unit})")
    ax.set_title(title or f"{report.table_fingerprint.get('target')}: predicted vs measured", fontsize=9)
    # Under the axes: inside, it would hide the points of a series far above the diagonal.
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = os.fspath(path)
    save_figure(fig, out)
    return out


def validate_table(
    table: LatencyTable,
    space: Any,
    target: Target,
    num_archs: int = 30,
    num_calibration: int = 10,
    seed: int = 0,
    config: Optional[TimingConfig] = None,
    allow_mixed: bool = False,
    progress: bool = True,
    plot_path: Optional[str | os.PathLike] = None,
    report_path: Optional[str | os.PathLike] = None,
    store_correction: bool = True,
    extra_statistics: Sequence[str] = (),
    rounds: int = 1,
    intercept: bool = True,
    refine_strength: Optional[float] = None,
    vary_skips: bool = False,
    per_block: bool = False,
) -> ValidationReport:
    """Measures whole models and compares them with the table's predictions.

    Args:
        table: A complete table for ``space``.
        space: The space (at the table's resolution).
        target: The target to measure on; must match the table's fingerprint.
        num_archs: Validation architectures (spread, see :func:`sample_spread_architectures`).
        num_calibration: Further architectures, disjoint from the validation set,
            used only to fit the linear correction (0: no linear correction).
        seed: Seed of the architecture draw.
        config: Whole-model timing settings (default :data:`DEFAULT_MODEL_TIMING`
            with the clock the table's entries were timed with).
        allow_mixed: Measure on a target whose fingerprint differs from the table's.
        plot_path: Where to write the predicted-versus-measured figure (``.png``, ``.svg``
            or ``.pdf``, by its extension).
        report_path: Where to write the JSON report.
        store_correction: Store the fitted correction in ``table.correction``.
        extra_statistics: Further statistics (e.g. ``"p10"``) to evaluate from the
            same measurements, table entries and models alike; their metrics are
            reported as ``"<statistic>/raw"``, ``"<statistic>/linear"``...
        rounds: Interleaved measuring rounds (see :func:`measure_architectures`).
        intercept: Fit ``measured ~ a * raw + b`` (True) or ``a * (raw - (units - 1) *
            call_overhead)`` (see :func:`fit_linear_correction`).
        refine_strength: Also fit :func:`~hwnas.latency.predictors.refine_table_from_models`
            with this strength on the calibration models and report it as
            ``"refined"`` (``None``: not). It needs more calibration models than a
            linear fit: a few dozen.
        vary_skips: Draw the architectures with the share of skipped layers spread
            too (see :func:`sample_spread_architectures`).
        per_block: Fit the correction with a per-block term, ``a * (raw - (units - 1) *
            call_overhead) + per_block * blocks`` (see :func:`fit_linear_correction`;
            ``intercept`` is then not used).

    Raises:
        ValueError: Fingerprints differ (and not ``allow_mixed``), the table is not for
            ``space`` (see :meth:`~hwnas.latency.table.LatencyTable.check_space`) or is
            incomplete, fewer than 2 ``num_archs``, a ``num_calibration`` other than 0 or
            at least 2, more architectures than the space has, a ``refine_strength``
            without calibration models or not a finite number ``>= 0``, an
            ``extra_statistics`` name that is no location statistic or that an entry
            lacks (see :meth:`~hwnas.latency.table.LatencyTable.with_statistic`),
            ``rounds`` not an integer ``>= 1``, or a ``plot_path`` of a format a figure
            cannot be written in (all before anything is measured).

    Warns:
        UserWarning: The correction to store does not grow with the table sum (``a <= 0``):
            it is reported but not stored.
    """
    # Checked before measuring: a run of whole models takes minutes.
    if plot_path is not None:
        figure_format(plot_path)
    if isinstance(num_calibration, bool) or not isinstance(num_calibration, numbers.Integral) or \
            not (num_calibration == 0 or num_calibration >= 2):
        # Whatever the fit, an affine one runs too (as the correction or as its comparison),
        # and the refined table needs two models as well.
        raise ValueError(f"num_calibration must be 0 (no correction) or at least 2 (an affine fit has two "
                         f"parameters), got {num_calibration!r}")
    if refine_strength is not None and not num_calibration:
        raise ValueError("refine_strength fits the table to the calibration models: it needs num_calibration >= 2, "
                         "got 0")
    if refine_strength is not None and (isinstance(refine_strength, bool) or not isinstance(
            refine_strength, numbers.Real) or not (math.isfinite(refine_strength) and refine_strength >= 0)):
        raise ValueError(f"refine_strength must be a finite number >= 0, got {refine_strength!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, numbers.Integral) or rounds < 1:
        raise ValueError(f"rounds must be an integer >= 1, got {rounds!r}")
    if isinstance(extra_statistics, (str, bytes)):
        raise ValueError(f"extra_statistics must be a list of statistic names, got the string {extra_statistics!r} "
                         f"(write [{extra_statistics!r}])")
    diffs = fingerprint_differences(table.fingerprint, target.fingerprint())
    if diffs and not allow_mixed:
        raise ValueError("the table was measured under another fingerprint than this target's: " + "; ".join(diffs))
    # The models measured are of ``space``, the predictions the table's: they must be one space.
    table.check_space(space)
    if not table.complete:
        raise ValueError(f"the table is incomplete ({len(table.missing_keys())} entries missing); resume its build first")
    # Each statistic must exist in every entry (a fitted table has none): known now, not
    # after minutes of measuring.
    views = {statistic: table.with_statistic(statistic) for statistic in extra_statistics}
    if isinstance(num_archs, bool) or not isinstance(num_archs, numbers.Integral) or num_archs < 2:
        raise ValueError(f"num_archs must be an integer >= 2 for error metrics, got {num_archs!r}")
    archs = sample_spread_architectures(space, num_archs + num_calibration, seed=seed, vary_skips=vary_skips)
    # Alternate so that both sets cover the whole latency range (betas are shuffled).
    calibration = archs[num_archs:]
    validation = archs[:num_archs]
    # The table's side needs no measurement: predicted (and checked) before measuring.
    # A proportional fit scales only what a whole model pays: not the per-call
    # overhead that each entry but one paid (0 where the target has none), and
    # never more than the smallest architecture's sum holds, so that every
    # prediction (and a search's log-latency objective) stays positive.
    offset = min((table.num_units() - 1) * float(table.call_overhead or 0.0), 0.9 * table.smallest_sum())
    floor = table.smallest_sum() if table.smallest_sum() > 0 else None
    calib_blocks = [table.num_blocks(a) for a in calibration]
    raw = [table.predict(a, correction="none") for a in validation]
    overhead = [table.predict(a, correction="overhead") for a in validation] if table.call_overhead is not None else None
    calib_raw = [table.predict(a, correction="none") for a in calibration]
    views_raw = {statistic: ([view.predict(a, correction="none") for a in validation],
                             [view.predict(a, correction="none") for a in calibration])
                 for statistic, view in views.items()}
    if calibration:
        # Every correction fits a slope (an affine fit always runs, as the correction or
        # as its comparison): sums that are all the same cannot give one.
        for name, sums in [("", calib_raw)] + [(f"{s} ", v[1]) for s, v in views_raw.items()]:
            if _sums_alike(sums):
                raise ValueError(f"the {len(sums)} calibration models' {name}table sums are all {sums[0]:g}: no "
                                 "correction can be fitted to them (the table does not tell the models apart); "
                                 "rebuild the table, or validate without calibration (num_calibration=0)")
        if per_block and np.linalg.matrix_rank(np.stack([np.asarray(calib_raw) - min(offset, 0.9 * min(calib_raw)),
                                                         calib_blocks], axis=1)) < 2:
            raise ValueError("the calibration models' table sums and block counts are in proportion: a per-block "
                             "fit cannot tell its scale from its per-block term; draw other models (seed), or "
                             "fit without per_block")
    if config is None:
        # Same clock as the table's entries, or tables and models would not compare.
        from dataclasses import replace

        config = replace(DEFAULT_MODEL_TIMING, clock=table.timing_clock())
    all_results = measure_architectures(space, validation + calibration, target, config, progress, rounds=rounds)
    results, calib_results = all_results[:num_archs], all_results[num_archs:]
    measured = [r.median_us for r in results]
    correction = None
    linear = None
    if calibration:
        calib_measured = [r.median_us for r in calib_results]
        if per_block:
            correction = fit_linear_correction(calib_raw, calib_measured, intercept=False, offset=offset,
                                               blocks=calib_blocks)
        else:
            # The affine fit is held above a tenth of the smallest architecture's scaled sum.
            correction = fit_linear_correction(calib_raw, calib_measured, intercept=intercept,
                                               offset=0.0 if intercept else offset, floor=floor if intercept else None)
        if not correction["a"] > 0:
            # Only the unbounded affine fit (a table whose smallest sum is 0) can get here:
            # a correction that falls as the table sum rises would make a search favour
            # slower models, and a table holding one is refused when loaded. The
            # measurements are still reported: they took minutes.
            warnings.warn(
                f"the calibration models' measured latencies do not grow with their table sums (fitted "
                f"a = {correction['a']:.3g}): the table does not rank whole models on this target"
                + (", and this correction is not stored" if store_correction else "")
                + ". Rebuild the table, or calibrate with more models (more spread in size)", stacklevel=2)
            store_correction = False
            # The plain affine line, reported as fitted (apply_correction refuses a <= 0).
            linear = [correction["a"] * x + correction["b"] for x in raw]
        else:
            linear = [apply_correction(correction, x, blocks=table.num_blocks(a)) for x, a in zip(raw, validation)]
        if store_correction:
            # The calibration models and what they measured go with the fit: timing
            # them again later tells how far the machine's speed has moved since
            # (see :mod:`hwnas.latency.table_scale`).
            correction["models"] = [{"arch": a.to_dict(), "measured_us": float(m)}
                                    for a, m in zip(calibration, calib_measured)]
            table.correction = correction
    metrics = {"raw": error_metrics(raw, measured)}
    if overhead is not None:
        metrics["overhead"] = error_metrics(overhead, measured)
    if linear is not None:
        metrics["linear"] = error_metrics(linear, measured)
        # Another fit on the same calibration models, for comparison: the affine one
        # for a per-block fit, a proportional scale for an affine fit, and the reverse.
        other_affine = per_block or not intercept
        other = fit_linear_correction(calib_raw, calib_measured, intercept=other_affine,
                                      offset=0.0 if other_affine else offset,
                                      floor=floor if other_affine and per_block else None)
        metrics["affine" if other_affine else "proportional"] = dict(
            error_metrics([other["a"] * x + other["b"] for x in raw], measured), a=other["a"], b=other["b"])
        if refine_strength is not None:
            from .predictors import refine_table_from_models

            refined = refine_table_from_models(table, space, calibration, calib_measured, strength=refine_strength)
            metrics["refined"] = dict(error_metrics([refined.predict(a, correction="none") for a in validation],
                                                    measured), **refined.notes["refined"])
    for statistic, (raw_s, calib_raw_s) in views_raw.items():
        meas_s = [getattr(r, f"{statistic}_us") for r in results]
        metrics[f"{statistic}/raw"] = error_metrics(raw_s, meas_s)
        if calibration:
            fit = fit_linear_correction(calib_raw_s, [getattr(r, f"{statistic}_us") for r in calib_results])
            metrics[f"{statistic}/linear"] = error_metrics([fit["a"] * x + fit["b"] for x in raw_s], meas_s)
            metrics[f"{statistic}/linear"]["a"], metrics[f"{statistic}/linear"]["b"] = fit["a"], fit["b"]
    report = ValidationReport(
        table_fingerprint=table.fingerprint,
        machine=machine_line(target.fingerprint()),
        archs=[a.to_string() for a in validation],
        measured=measured,
        raw=raw,
        overhead=overhead,
        linear=linear,
        metrics=metrics,
        correction=correction,
        calibration_archs=[a.to_string() for a in calibration],
        measured_stats=[r.summary() for r in results],
        unit=table.unit,
    )
    # The report first: a figure that cannot be written must not lose the measurements.
    if report_path is not None:
        report.save(report_path)
    if plot_path is not None:
        plot_predicted_vs_measured(report, plot_path)
    return report
