"""Latency (and energy) models for hardware-aware search.

* :mod:`~hwnas.latency.harness` - the native timing harness (C++ loop, warm-up,
  monotonic clock, CI-based stopping, cache flush, fixed thread count).
* :mod:`~hwnas.latency.targets` - where blocks run: ``eager``, ``torchscript``,
  ``onnxruntime`` (plug-ins: :func:`register_target`).
* :mod:`~hwnas.latency.table` / :mod:`~hwnas.latency.build` - versioned lookup
  tables, resumable builds, FBNet eq. 3 and the differentiable eq. 9.
* :mod:`~hwnas.latency.validation` - whole-model validation (MAPE, max error,
  Kendall tau, plot) with overhead and linear corrections.
* :mod:`~hwnas.latency.predictors` - Bayesian ridge / Gaussian process block
  predictors and least-squares tables from whole-model measurements.
* :mod:`~hwnas.latency.energy` - energy tables and Linux RAPL counters.
"""

from .build import DEFAULT_TABLE_TIMING, build_table
from .drift import DriftCorrectedTarget, reference_model
from .energy import RaplUnavailableError, energy_table_from_measurements, measure_energy_rapl, rapl_status
from .fingerprint import device_fingerprint, fingerprint_differences, machine_line
from .harness import (
    TimingConfig,
    TimingResult,
    harness_overhead,
    python_call_overhead,
    time_callable,
    time_module,
    time_operator,
)
from .predictors import (
    BlockConfig,
    BlockCostPredictor,
    block_features,
    fit_table_from_models,
    refine_table_from_models,
    table_training_data,
)
from .table import LatencyTable, TableEntry, entry_key
from .targets import EagerTarget, OnnxRuntimeTarget, Target, TorchScriptTarget, get_target, list_targets, register_target
from .validation import (
    DEFAULT_MODEL_TIMING,
    ValidationReport,
    error_metrics,
    fit_linear_correction,
    measure_architectures,
    sample_spread_architectures,
    validate_table,
)

__all__ = [
    "DriftCorrectedTarget",
    "reference_model",
    "BlockConfig",
    "BlockCostPredictor",
    "DEFAULT_MODEL_TIMING",
    "DEFAULT_TABLE_TIMING",
    "EagerTarget",
    "LatencyTable",
    "OnnxRuntimeTarget",
    "RaplUnavailableError",
    "TableEntry",
    "Target",
    "TimingConfig",
    "TimingResult",
    "TorchScriptTarget",
    "ValidationReport",
    "block_features",
    "build_table",
    "device_fingerprint",
    "energy_table_from_measurements",
    "entry_key",
    "error_metrics",
    "fingerprint_differences",
    "fit_linear_correction",
    "fit_table_from_models",
    "refine_table_from_models",
    "get_target",
    "harness_overhead",
    "list_targets",
    "machine_line",
    "measure_architectures",
    "measure_energy_rapl",
    "python_call_overhead",
    "rapl_status",
    "register_target",
    "sample_spread_architectures",
    "table_training_data",
    "time_callable",
    "time_module",
    "time_operator",
    "validate_table",
]
