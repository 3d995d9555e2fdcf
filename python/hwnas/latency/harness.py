"""Python face of the native timing harness (``hwnas._C.timing``).

The loop runs in C++ with :class:`std::chrono::steady_clock`: warm-up calls first,
then samples (each sample the mean of ``iters_per_sample`` calls) until the
median's distribution-free confidence interval is narrow enough
(``(ci_hi - ci_lo) / median <= target_rel_ci``) or ``budget_s`` is spent.

Three entry points, from least to most overhead:

* :func:`time_operator` - a registered dispatcher operator (``"aten::add.Tensor"``,
  ``"hwnas::weighted_sum"``) called boxed from C++, GIL released.
* :func:`time_module` - a module scripted or traced to TorchScript and run by the
  C++ interpreter, GIL released, under ``InferenceMode``.
* :func:`time_callable` - any Python callable, called with the GIL held. **Includes
  the Python call overhead** (about 0.05 us for a bare function here; see
  :func:`python_call_overhead`), plus whatever the callable itself does in Python.

The harness's own per-iteration cost is :func:`harness_overhead` (an empty body
through the same loop; a few nanoseconds once amortised over a calibrated sample).
Nothing is subtracted from the results. With one call per sample
(``flush_bytes > 0`` or ``iters_per_sample=1``) every sample also holds one clock
read, tens of nanoseconds on some machines: ``harness_overhead(iters_per_sample=1)``
measures it there.

Ctrl-C (``KeyboardInterrupt``) stops every entry point within about 0.1 s plus one
sample (``iters_per_sample`` calls), also while the GIL is released; the thread count
is restored. Loading or tracing the module before the loop is not interrupted.
"""

from __future__ import annotations

import io
import math
import numbers
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional, Sequence

import torch

from hwnas import _extension  # noqa: F401  (loads hwnas._C)
from hwnas import _C

__all__ = [
    "TimingConfig",
    "TimingResult",
    "time_callable",
    "time_module",
    "time_operator",
    "harness_overhead",
    "python_call_overhead",
    "clock_pair_cost_ns",
    "median_ci_indices",
    "sample_statistics",
]

_native = _C.timing


@dataclass(frozen=True)
class TimingConfig:
    """How long and how precisely to time.

    Attributes:
        warmup_iters: Calls made before timing (first calls allocate, initialise,
            and let TorchScript's profiling executor specialise).
        warmup_s: Minimum warm-up duration in seconds (both limits apply; finite).
        min_samples: Samples taken before convergence is checked. The budget is a
            wall-time limit and can stop the loop earlier, after
            ``min(min_samples, 3)`` samples (``stop_reason == "budget"``).
        max_samples: Hard cap on samples.
        iters_per_sample: Calls per sample; 0 calibrates it so that one sample
            lasts at least ``min_sample_s`` (1 when ``flush_bytes > 0``).
        min_sample_s: Target duration of one sample when calibrating (finite).
        target_rel_ci: Stop when the median's CI width over the median is at most
            this (an infinite width, too few samples, never counts as converged).
        confidence: Confidence level of that interval.
        budget_s: Wall-time budget of the timed phase in seconds.
        num_threads: Intra-op threads (``at::set_num_threads``) during the run,
            restored afterwards; 0 leaves the current setting.
        flush_bytes: Bytes written between samples to evict caches (make it larger
            than the last-level cache); 0 disables flushing.
        clock: ``"steady"`` (``std::chrono::steady_clock``: wall time) or
            ``"thread_cpu"`` (``CLOCK_THREAD_CPUTIME_ID``: CPU time of the calling
            thread). The CPU clock ignores time the thread spends waiting for a
            core, which makes it robust on a machine shared with other jobs, but it
            only sees work done on the calling thread: use it with one thread
            (torch intra-op threads = 1, ONNX Runtime ``intra_op_num_threads`` = 1).
            Warm-up and budget are always wall time.
    """

    warmup_iters: int = 10
    warmup_s: float = 0.0
    min_samples: int = 10
    max_samples: int = 10000
    iters_per_sample: int = 0
    min_sample_s: float = 1e-4
    target_rel_ci: float = 0.01
    confidence: float = 0.95
    budget_s: float = 2.0
    num_threads: int = 0
    flush_bytes: int = 0
    clock: str = "steady"

    def __post_init__(self) -> None:
        for name in ("warmup_iters", "min_samples", "max_samples", "iters_per_sample", "num_threads", "flush_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"TimingConfig.{name} must be an integer, got {value!r}")
        for name in ("warmup_s", "min_sample_s", "target_rel_ci", "confidence", "budget_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"TimingConfig.{name} must be a number, got {value!r}")
        checks = [
            ("warmup_iters", self.warmup_iters >= 0),
            ("warmup_s", 0 <= self.warmup_s < math.inf),
            ("min_samples", self.min_samples >= 1),
            ("max_samples", self.max_samples >= self.min_samples),
            ("iters_per_sample", self.iters_per_sample >= 0),
            ("min_sample_s", 0 <= self.min_sample_s < math.inf),
            ("target_rel_ci", self.target_rel_ci > 0),
            ("confidence", 0 < self.confidence < 1),
            ("budget_s", self.budget_s > 0),
            ("num_threads", self.num_threads >= 0),
            ("flush_bytes", self.flush_bytes >= 0),
            ("clock", self.clock in ("steady", "thread_cpu")),
        ]
        for name, ok in checks:
            if not ok:
                raise ValueError(f"TimingConfig.{name} = {getattr(self, name)!r} is out of range")

    def to_native(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TimingResult:
    """Per-call durations and their statistics (times in microseconds).

    Attributes:
        samples_us: One entry per sample: the mean duration of one call in that sample.
        median_us, p10_us, p25_us, p75_us, p90_us, mean_us, std_us, min_us, max_us:
            Order statistics (numpy's linear interpolation) and moments.
        iqr_us: ``p75 - p25``.
        cv: Coefficient of variation ``std / mean``.
        ci_lo_us, ci_hi_us: Distribution-free CI of the median (order statistics).
        rel_ci: ``(ci_hi - ci_lo) / median`` (``inf`` when too few samples).
        converged: Whether ``rel_ci`` is finite and ``<= target_rel_ci`` at the end.
        stop_reason: ``"converged"``, ``"budget"`` or ``"max_samples"``.
        iters_per_sample: Calls per sample.
        warmup_iters: Warm-up calls made.
        elapsed_s: Wall time of the timed phase.
        threads: Intra-op thread count during the run.
        method: Which entry point produced it (``"operator"``, ``"script"``, ``"python"``, ``"empty"``).
    """

    samples_us: list[float]
    median_us: float
    p10_us: float
    p25_us: float
    p75_us: float
    p90_us: float
    mean_us: float
    std_us: float
    min_us: float
    max_us: float
    iqr_us: float
    cv: float
    ci_lo_us: float
    ci_hi_us: float
    rel_ci: float
    converged: bool
    stop_reason: str
    iters_per_sample: int
    warmup_iters: int
    elapsed_s: float
    threads: int
    method: str = ""

    @classmethod
    def from_native(cls, raw: dict[str, Any], method: str) -> "TimingResult":
        us = lambda key: float(raw[key]) / 1e3  # noqa: E731
        return cls(
            samples_us=[float(s) / 1e3 for s in raw["samples_ns"]],
            median_us=us("median_ns"),
            p10_us=us("p10_ns"),
            p25_us=us("p25_ns"),
            p75_us=us("p75_ns"),
            p90_us=us("p90_ns"),
            mean_us=us("mean_ns"),
            std_us=us("std_ns"),
            min_us=us("min_ns"),
            max_us=us("max_ns"),
            iqr_us=us("iqr_ns"),
            cv=float(raw["cv"]),
            ci_lo_us=us("ci_lo_ns"),
            ci_hi_us=us("ci_hi_ns"),
            rel_ci=float(raw["rel_ci"]),
            converged=bool(raw.get("converged", False)),
            stop_reason=str(raw.get("stop_reason", "")),
            iters_per_sample=int(raw.get("iters_per_sample", 1)),
            warmup_iters=int(raw.get("warmup_iters", 0)),
            elapsed_s=float(raw.get("elapsed_s", 0.0)),
            threads=int(raw.get("threads_used", 0)),
            method=method,
        )

    def summary(self) -> dict[str, Any]:
        """The statistics without the raw samples (for tables and reports)."""
        out = asdict(self)
        out.pop("samples_us")
        out["num_samples"] = len(self.samples_us)
        if not math.isfinite(out["rel_ci"]):
            out["rel_ci"] = None  # JSON has no infinity
        return out

    def __str__(self) -> str:
        return (
            f"median {self.median_us:.3f} us [CI {self.ci_lo_us:.3f}, {self.ci_hi_us:.3f}] "
            f"p10 {self.p10_us:.3f} p90 {self.p90_us:.3f} cv {self.cv:.3f} "
            f"n={len(self.samples_us)}x{self.iters_per_sample} ({self.stop_reason})"
        )


def _config(config: Optional[TimingConfig], overrides: dict[str, Any]) -> TimingConfig:
    base = config or TimingConfig()
    if overrides:
        values = asdict(base)
        unknown = sorted(set(overrides) - set(values))
        if unknown:
            raise ValueError(f"unknown timing option(s) {unknown}; known: {sorted(values)}")
        values.update(overrides)
        base = TimingConfig(**values)
    return base


def time_callable(fn: Callable[[], Any], config: Optional[TimingConfig] = None, **overrides: Any) -> TimingResult:
    """Times ``fn()`` in the native loop, GIL held (includes Python call overhead).

    Args:
        fn: Zero-argument callable; its return value is discarded.
        config: Timing settings (default :class:`TimingConfig`); keyword
            ``overrides`` replace single fields.

    Raises:
        ValueError: ``fn`` is not callable or an option is out of range.
    """
    if not callable(fn):
        raise ValueError(f"time_callable needs a callable, got {type(fn).__name__}")
    cfg = _config(config, overrides)
    return TimingResult.from_native(_native.time_python(fn, cfg.to_native()), "python")


def _as_script(module: Any, inputs: Sequence[torch.Tensor]) -> torch.jit.ScriptModule:
    if isinstance(module, torch.jit.ScriptModule):
        return module
    if isinstance(module, torch.nn.Module):
        # TorchScript is deprecated upstream but is still the way to run a module
        # from C++ without Python; its warnings say nothing the caller can act on.
        # The caller's module is only borrowed: its (possibly mixed) train/eval flags
        # are put back, also when tracing fails.
        modes = [(m, m.training) for m in module.modules()]
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.trace(module.eval(), tuple(inputs), check_trace=False)
        finally:
            for m, training in modes:
                m.training = training
    raise ValueError(f"time_module needs an nn.Module or a torch.jit.ScriptModule, got {type(module).__name__}")


def time_module(
    module: torch.nn.Module,
    inputs: Sequence[torch.Tensor],
    config: Optional[TimingConfig] = None,
    method: str = "forward",
    **overrides: Any,
) -> TimingResult:
    """Times ``module.<method>(*inputs)`` run by the TorchScript interpreter in C++.

    A plain ``nn.Module`` is traced in eval mode first (each submodule's
    ``training`` flag is restored afterwards). The scripted module is serialised
    and loaded by the C++ side, so the weights are a copy; the loop runs with the
    GIL released under ``InferenceMode``.

    Args:
        module: Module or ScriptModule.
        inputs: Positional tensor inputs.
        config: Timing settings; keyword ``overrides`` replace single fields.
        method: Method name of the script module to run.
    """
    inputs = list(inputs)
    for i, t in enumerate(inputs):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"time_module inputs must be tensors, input {i} is {type(t).__name__}")
    cfg = _config(config, overrides)
    script = _as_script(module, inputs)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(script, buffer)
    raw = _native.time_script_module(buffer.getvalue(), inputs, method, cfg.to_native())
    return TimingResult.from_native(raw, "script")


def time_operator(
    name: str, args: Sequence[Any], config: Optional[TimingConfig] = None, **overrides: Any
) -> TimingResult:
    """Times a registered operator, e.g. ``time_operator("aten::add.Tensor", [a, b])``.

    Args:
        name: ``"namespace::op"`` or ``"namespace::op.overload"``.
        args: Leading positional arguments (tensors, numbers, lists); the rest
            take their schema defaults.
        config: Timing settings; keyword ``overrides`` replace single fields.

    Raises:
        ValueError: ``name`` is not of the form ``ns::op[.overload]``.
        RuntimeError: No such operator is registered.
    """
    if not isinstance(name, str) or "::" not in name:
        raise ValueError(f"operator name must look like 'namespace::op[.overload]', got {name!r}")
    qualified, _, overload = name.partition(".")
    cfg = _config(config, overrides)
    raw = _native.time_operator(qualified, overload, list(args), cfg.to_native())
    return TimingResult.from_native(raw, "operator")


def harness_overhead(config: Optional[TimingConfig] = None, **overrides: Any) -> TimingResult:
    """Per-iteration cost of the harness itself (an empty body through the same loop)."""
    cfg = _config(config or TimingConfig(budget_s=0.5, target_rel_ci=0.05), overrides)
    return TimingResult.from_native(_native.time_empty(cfg.to_native()), "empty")


def _noop() -> None:
    return None


def python_call_overhead(config: Optional[TimingConfig] = None, **overrides: Any) -> TimingResult:
    """What :func:`time_callable` adds per call: timing a Python no-op function."""
    cfg = _config(config or TimingConfig(budget_s=0.5, target_rel_ci=0.05), overrides)
    return TimingResult.from_native(_native.time_python(_noop, cfg.to_native()), "python")


def clock_pair_cost_ns(repeats: int = 101) -> float:
    """Median cost of two consecutive ``steady_clock::now()`` reads, in nanoseconds."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    return float(_native.clock_pair_cost_ns(int(repeats)))


def median_ci_indices(n: int, confidence: float = 0.95) -> tuple[int, int]:
    """0-based order-statistic indices of the median's CI, ``(-1, -1)`` if ``n`` is too small."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    lo, hi = _native.median_ci_indices(int(n), float(confidence))
    return int(lo), int(hi)


def sample_statistics(samples_us: Sequence[float], confidence: float = 0.95) -> TimingResult:
    """The harness's statistics of given samples (microseconds in, microseconds out).

    Raises:
        ValueError: A sample is not finite or ``confidence`` is not in (0, 1).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    values = [float(s) for s in samples_us]
    bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
    if bad:
        raise ValueError(f"samples must be finite; sample {bad[0]} is {values[bad[0]]}")
    raw = _native.statistics([v * 1e3 for v in values], float(confidence))
    raw.setdefault("stop_reason", "")
    return TimingResult.from_native(raw, "given")
