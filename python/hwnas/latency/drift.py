"""Cancelling machine-speed drift with a reference workload timed between measurements.

Why: on a shared machine (this project's 2-core VM, CI runners, a laptop that
throttles) the speed of the same code changes by tens of percent from one second to
the next: a neighbour takes the sibling hyperthread or the memory bus, the clock
changes. Measured here: one FBNet model's 0.5 s medians ran 6.0-9.9 ms in twelve
consecutive windows, and two back-to-back measurements of the same 30 models agreed
only to Kendall tau 0.52. A table built in a slow minute and validated in a fast one
is then wrong by the speed difference, whatever its method.

:class:`DriftCorrectedTarget` wraps any target. Between measurements it times a
fixed reference model on the same target (briefly), and scales every measurement by
``baseline / reference``, with ``reference`` the mean of the reference times just
before and just after it and ``baseline`` the reference time of the first
measurement (or one given, so that a table and its validation share it). Results are
in microseconds at the speed the machine had when the baseline was taken. On the
same model measured 25 times in a row the correction took the coefficient of
variation of the medians from 6.4% to 2.4%.

A long measurement is cut into pieces of about ``piece_s`` seconds, each bracketed
by reference timings and scaled by its own factor, and the scaled samples are
pooled. One bracket around a 3 s measurement misses a speed change inside it: nine
searched models (3-9 ms each) measured that way three times over varied by up to 35%
between rounds, with correction factors from 1.06 to 2.14.

The speed also changes within a second, so the pieces are short (0.1 s, with 0.05 s
reference timings). Measured on a 2-core AMD EPYC VM, one ONNX Runtime model against
the reference, both timed alternately for 6 s: the ratio of the two had a coefficient
of variation of 10% with 0.3 s timings and 2-3% with 0.03-0.1 s timings, while the
model's own medians varied by 7-15%. A piece after the first warms up with one call
only (what the reference evicted from the caches comes back in one call).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Optional, Sequence

from torch import nn

from .harness import TimingConfig, TimingResult, sample_statistics
from .targets import Target

__all__ = ["DriftCorrectedTarget", "reference_model", "drift_corrected_target"]

# At most this many pieces per measurement: a 3 s budget in 0.1 s pieces.
MAX_PIECES = 32
DEFAULT_REFERENCE_BUDGET_S = 0.05


def reference_model(space: Any, seed: int = 7) -> tuple[nn.Module, tuple[int, int, int], str]:
    """A fixed architecture of ``space`` to serve as drift reference: (module, input shape, its compact string)."""
    import torch

    arch = space.sample(seed=seed)
    torch.manual_seed(seed)
    return space.build(arch), (space.in_channels, arch.resolution, arch.resolution), arch.to_string()


class DriftCorrectedTarget(Target):
    """``inner`` with every measurement scaled to a reference model's baseline speed.

    Args:
        inner: The target that measures.
        reference: The reference module, timed on ``inner``.
        reference_shape: Its input shape ``(C, H, W)``.
        reference_budget_s: Time budget of each reference timing.
        baseline_us: Reference time that defines the scale; ``None`` takes the first
            reference timing. Store :attr:`baseline_us` with a table and pass it back
            when validating the table in another process.
        reference_name: A description stored with results (e.g. the architecture key).
        piece_s: Measurements with a longer time budget are cut into pieces of about
            this many seconds, each bracketed by reference timings (see the module docs).

    Attributes:
        factors: The scale factor applied to each measurement so far.
    """

    def __init__(self, inner: Target, reference: nn.Module, reference_shape: Sequence[int],
                 reference_budget_s: float = DEFAULT_REFERENCE_BUDGET_S, baseline_us: Optional[float] = None,
                 reference_name: str = "", piece_s: float = 0.1) -> None:
        super().__init__(inner.threads, inner.batch, inner.dtype)
        if reference_budget_s <= 0:
            raise ValueError(f"reference_budget_s must be > 0, got {reference_budget_s}")
        if piece_s <= 0:
            raise ValueError(f"piece_s must be > 0, got {piece_s}")
        self.piece_s = float(piece_s)
        if baseline_us is not None and baseline_us <= 0:
            raise ValueError(f"baseline_us must be > 0, got {baseline_us}")
        self.inner = inner
        self.name = inner.name
        self.reference_shape = tuple(reference_shape)
        self.reference_budget_s = float(reference_budget_s)
        self.baseline_us = baseline_us
        self.reference_name = reference_name
        self.factors: list[float] = []
        self._time_reference: Callable[[TimingConfig], TimingResult] = inner.prepared(reference, self.reference_shape)
        self._last_reference: Optional[float] = None

    def libraries(self) -> dict[str, str]:
        return self.inner.libraries()

    def options(self) -> dict[str, Any]:
        return self.inner.options()

    def fingerprint(self) -> dict[str, Any]:
        # The device and target are the inner one's: drift correction changes how
        # noise is handled, not what is measured.
        return self.inner.fingerprint()

    def describe(self) -> dict[str, Any]:
        """What to store with a table so that a later validation uses the same scale."""
        return {"reference": self.reference_name, "baseline_us": self.baseline_us,
                "reference_budget_s": self.reference_budget_s}

    def calibrate(self, config: TimingConfig) -> float:
        """Takes the baseline now (unless one is set) and returns it."""
        if self.baseline_us is None:
            self.baseline_us = self._reference(config)
        return self.baseline_us

    def factor_summary(self) -> str:
        """One line on the scale factors applied so far (min, median, max)."""
        if not self.factors:
            return "no measurement scaled yet"
        f = sorted(self.factors)
        return (f"factors applied min {f[0]:.3f} median {f[len(f) // 2]:.3f} max {f[-1]:.3f} "
                f"over {len(f)} measurements")

    def _reference(self, config: TimingConfig) -> float:
        """Times the reference and remembers the result as the latest reference timing."""
        # The first timing warms the reference up properly (also when the baseline
        # came from a stored table); later ones need one call to bring back what the
        # measurement in between evicted.
        first = self._last_reference is None
        cfg = replace(config, budget_s=self.reference_budget_s, min_samples=min(config.min_samples, 5),
                      warmup_s=min(config.warmup_s, 0.02) if first else 0.0,
                      warmup_iters=min(config.warmup_iters, 3) if first else 1, flush_bytes=0)
        self._last_reference = self._time_reference(cfg).median_us
        return self._last_reference

    def measure(self, module: nn.Module, input_shape: Sequence[int], config: TimingConfig) -> TimingResult:
        pieces = min(MAX_PIECES, int(config.budget_s / self.piece_s + 0.5))
        if pieces <= 1:
            return self._bracketed(lambda: self.inner.measure(module, input_shape, config), config)
        timed = self.inner.prepared(module, input_shape)
        # Each piece runs its share of the budget (no early stop on the CI: the pooled
        # samples decide). The first piece warms the module up as the config says;
        # later ones need one call to refill the caches the reference used.
        later = replace(config, budget_s=config.budget_s / pieces, target_rel_ci=1e-9,
                        min_samples=max(3, -(-config.min_samples // pieces)),
                        max_samples=max(3, config.max_samples // pieces), warmup_s=0.0, warmup_iters=1)
        samples: list[float] = []
        factors: list[float] = []
        first = None
        for index in range(pieces):
            piece = later if index else replace(later, warmup_s=config.warmup_s, warmup_iters=config.warmup_iters)
            result = self._bracketed(lambda: timed(piece), config)
            factors.append(self.factors.pop())
            samples.extend(result.samples_us)
            first = first or result
        factor = sorted(factors)[len(factors) // 2]
        self.factors.append(factor)
        pooled = sample_statistics(samples, config.confidence)
        for field in ("iters_per_sample", "threads", "method"):
            if hasattr(first, field):
                setattr(pooled, field, getattr(first, field))
        pooled.stop_reason = (f"{pieces} pieces of {later.budget_s:.2f} s; drift x{min(factors):.3f}-"
                              f"{max(factors):.3f} (median x{factor:.3f})")
        return pooled

    def call_overhead(self, input_shape: Sequence[int], config: TimingConfig) -> TimingResult:
        # The inner target defines what its fixed per-call cost is (eager: the harness's
        # lambda call; ONNX Runtime: an identity session's run).
        return self._bracketed(lambda: self.inner.call_overhead(input_shape, config), config)

    def _bracketed(self, timed: Callable[[], TimingResult], config: TimingConfig) -> TimingResult:
        before = self._last_reference if self._last_reference is not None else self._reference(config)
        if self.baseline_us is None:
            self.baseline_us = before
        result = timed()
        after = self._reference(config)
        factor = self.baseline_us / (0.5 * (before + after))
        self.factors.append(factor)
        scaled = sample_statistics([s * factor for s in result.samples_us], config.confidence)
        for field in ("iters_per_sample", "warmup_iters", "elapsed_s", "threads", "method", "converged"):
            if hasattr(result, field):
                setattr(scaled, field, getattr(result, field))
        scaled.stop_reason = f"{result.stop_reason}; drift x{factor:.3f}"
        return scaled

    def prepared(self, module: nn.Module, input_shape: Sequence[int]) -> Callable[[TimingConfig], TimingResult]:
        return lambda config: self.measure(module, input_shape, config)

    def __repr__(self) -> str:
        return f"DriftCorrectedTarget({self.inner!r}, baseline_us={self.baseline_us})"


def drift_corrected_target(target: Target, space: Any, stored: Optional[dict[str, Any]] = None) -> DriftCorrectedTarget:
    """``target`` wrapped in drift correction with ``space``'s reference model.

    Args:
        target: The target that measures.
        space: The search space whose :func:`reference_model` serves as reference.
        stored: What :meth:`DriftCorrectedTarget.describe` returned when a table was
            built (its ``notes["drift_correction"]``): the new target reuses its
            baseline, so its measurements share the table's scale. ``None``: a new
            scale, set by the first reference timing.

    Raises:
        ValueError: ``stored`` names another reference architecture than ``space`` gives now.
    """
    module, shape, key = reference_model(space)
    if stored and stored.get("reference") not in (None, key):
        raise ValueError("the table's drift reference is another architecture than this version of the space gives; "
                         "rebuild the table, or measure without drift correction")
    baseline = stored.get("baseline_us") if stored else None
    # Tables built before the reference timings were shortened stored 0.15 s; their
    # own budget is kept so that a table and its validation time the reference alike.
    budget = stored.get("reference_budget_s", 0.15) if stored else DEFAULT_REFERENCE_BUDGET_S
    return DriftCorrectedTarget(target, module, shape, reference_budget_s=budget, baseline_us=baseline,
                                reference_name=key)
