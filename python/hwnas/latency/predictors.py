"""Learned cost predictors, for what a lookup table cannot enumerate.

* :class:`BlockCostPredictor` - HURRICANE-style regression from operator features
  (MACs of dense and depthwise convolutions, parameters, activation traffic,
  operator counts, block family) to a block's latency or energy, with scikit-learn's
  Bayesian ridge regression (``"bayesian_ridge"``) or a Gaussian process
  (``"gaussian_process"``). It predicts blocks at shapes never measured, e.g. the
  per-layer channel widths of FBNetV2, or any of the 32 HURRICANE operators.
* :func:`fit_table_from_models` - a per-block table fitted by non-negative least
  squares from whole-model measurements only, for targets where single blocks
  cannot be timed.
* :func:`refine_table_from_models` - a measured table's entries adjusted to what
  whole models cost, for targets whose blocks cost something else inside a model
  than alone (ONNX Runtime: graph fusion across blocks, one ``session.run`` per
  model), regularised towards the scaled standalone entries.

Saved predictors (``format`` ``hwnas.cost_predictor``, ``version`` 1) hold the
training data and the fitted hyperparameters; loading refits deterministically
(no pickles: a file stays readable across scikit-learn versions).
"""

from __future__ import annotations

import math
import numbers
import operator
import os
import warnings
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from hwnas._io import write_json
from .table import LatencyTable, TableEntry, _field, _read_document, _short, _shape_fields, entry_key, layer_entry_keys

__all__ = [
    "BlockConfig",
    "block_features",
    "FEATURE_NAMES",
    "BlockCostPredictor",
    "table_training_data",
    "fit_table_from_models",
    "refine_table_from_models",
    "PREDICTOR_FORMAT",
    "PREDICTOR_FORMAT_VERSION",
]

PREDICTOR_FORMAT = "hwnas.cost_predictor"
PREDICTOR_FORMAT_VERSION = 1


def _config_int(value: Any, name: str) -> int:
    """A :class:`BlockConfig` field checked to be an integer ``>= 1`` (``8.0`` reads as 8; ``8.7``,
    ``True`` and text are refused rather than truncated or read)."""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)) and \
            math.isfinite(value) and float(value).is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"block configuration field {name} must be an integer >= 1, got {_short(value)}")
    return int(value)


@dataclass(frozen=True)
class BlockConfig:
    """A block at a shape: what one table entry or one predictor row describes.

    Attributes:
        block: Block name (e.g. ``"k3_e6"``).
        c_in, c_out, stride: Integers ``>= 1``.
        in_hw: ``(height, width)`` of the input, integers ``>= 1``.

    Raises:
        ValueError: A field of another type or out of range, naming the field (a block
            would otherwise fail inside the convolution, or a fractional width be
            silently truncated).
    """

    block: str
    c_in: int
    c_out: int
    stride: int
    in_hw: tuple[int, int]

    def __post_init__(self) -> None:
        if not isinstance(self.block, str) or not self.block:
            raise ValueError(f"block configuration field block must be a block name such as 'k3_e6', "
                             f"got {_short(self.block)}")
        for name in ("c_in", "c_out", "stride"):
            object.__setattr__(self, name, _config_int(getattr(self, name), name))
        try:
            in_hw = None if isinstance(self.in_hw, (str, bytes, Mapping)) else list(self.in_hw)
        except TypeError:  # a single number
            in_hw = None
        if in_hw is None or len(in_hw) != 2:
            raise ValueError(f"block configuration field in_hw must be [height, width], got {_short(self.in_hw)}")
        object.__setattr__(self, "in_hw", tuple(_config_int(v, "in_hw") for v in in_hw))

    def key(self) -> str:
        return entry_key(self.block, self.c_in, self.c_out, self.stride, self.in_hw)

    @classmethod
    def from_entry(cls, entry: TableEntry) -> "BlockConfig":
        return cls(entry.block, entry.c_in, entry.c_out, entry.stride, tuple(entry.in_hw))

    @classmethod
    def coerce(cls, value: Any) -> "BlockConfig":
        """``value`` as a :class:`BlockConfig`: one already, a mapping with the fields
        ``block``, ``c_in``, ``c_out``, ``stride`` and ``in_hw``, or a 5-tuple in that order.

        Raises:
            ValueError: Another kind of value, a missing field, or a field of another
                type or out of range; the message names the field.
        """
        if isinstance(value, cls):
            return value
        fields = ("block", "c_in", "c_out", "stride", "in_hw")
        if isinstance(value, Mapping):
            missing = [name for name in fields if name not in value]
            if missing:
                raise ValueError(f"block configuration {_short(value)} has no field {missing[0]} (give "
                                 f"{', '.join(fields)})")
            return cls(*(value[name] for name in fields))
        if isinstance(value, (tuple, list)) and len(value) == 5:
            return cls(*value)
        raise ValueError(f"cannot read a block configuration from {value!r}; give BlockConfig, dict or 5-tuple")


FEATURE_NAMES = (
    "dense_mmacs",        # MACs of non-depthwise convs and linears, in millions
    "depthwise_mmacs",    # MACs of depthwise convs (memory-bound, slower per MAC)
    "kparams",            # parameters, in thousands (weights read per call)
    "kact",               # input + output elements of every compute op, in thousands (memory traffic)
    "ops",                # compute modules executed (each pays a dispatch overhead)
    "elementwise_kelems", # elements through activations/BN/adds, in thousands
    "is_identity",        # the block is a pure identity (no op at all)
)

_ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.BatchNorm2d, nn.Sigmoid, nn.Hardswish, nn.Hardsigmoid, nn.SiLU)


def _check_batch(batch: Any) -> int:
    """``batch`` as an int, checked to be a positive integer (``True`` and ``1.5`` are refused)."""
    if isinstance(batch, bool) or not hasattr(batch, "__index__"):
        raise ValueError(f"batch must be a positive integer (the batch size the features are counted at), "
                         f"got {_short(batch)}")
    batch = operator.index(batch)
    if batch < 1:
        raise ValueError(f"batch must be a positive integer (the batch size the features are counted at), got {batch}")
    return batch


def _costs(values: Any, name: str, positive: bool, why: str = "costs: latencies or energies") -> np.ndarray:
    """``values`` as a 1-D float array of finite costs, ``> 0`` if ``positive`` else ``>= 0``.

    Raises:
        ValueError: Not numbers, not one value per row, or a value out of range; the
            message names ``name``, the first bad value and its index.
    """
    try:
        y = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of numbers, got {_short(values)}") from None
    if y.ndim != 1:
        raise ValueError(f"{name} must be a flat sequence of numbers (one per row), got an array of shape {y.shape}")
    bad = ~np.isfinite(y) | ((y <= 0) if positive else (y < 0))
    if np.any(bad):
        index = int(np.flatnonzero(bad)[0])
        more = f" ({int(bad.sum())} such values)" if bad.sum() > 1 else ""
        bound = "positive" if positive else ">= 0"
        raise ValueError(f"{name} must be finite and {bound} ({why}), "
                         f"got {float(y[index])!r} at index {index}{more}")
    return y


@lru_cache(maxsize=4096)
def _features_cached(config: BlockConfig, batch: int) -> tuple[float, ...]:
    from hwnas.spaces import build_block

    module = build_block(config.block, config.c_in, config.c_out, config.stride).eval()
    counts = dict(dense=0.0, dw=0.0, act=0.0, ops=0.0, elem=0.0)

    def hook(mod: nn.Module, inputs: tuple, output: Any) -> None:
        x = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        out_elems = float(output.numel()) if isinstance(output, torch.Tensor) else 0.0
        in_elems = float(x.numel()) if x is not None else 0.0
        if isinstance(mod, nn.Conv2d):
            macs = out_elems * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]
            depthwise = mod.groups == mod.in_channels and mod.groups > 1
            counts["dw" if depthwise else "dense"] += macs
        elif isinstance(mod, nn.Linear):
            counts["dense"] += out_elems * mod.in_features
        elif isinstance(mod, _ELEMENTWISE):
            counts["elem"] += out_elems
        elif len(list(mod.children())) == 0 and not isinstance(mod, nn.Identity):
            counts["elem"] += out_elems  # pooling, shuffles and other leaf ops
        else:
            return
        counts["ops"] += 1
        counts["act"] += in_elems + out_elems

    handles = [m.register_forward_hook(hook) for m in module.modules() if len(list(m.children())) == 0]
    with torch.inference_mode():
        x = torch.zeros(batch, config.c_in, *config.in_hw)
        y = module(x)
    for h in handles:
        h.remove()
    identity = float(counts["ops"] == 0 and tuple(y.shape) == tuple(x.shape))
    params = float(sum(p.numel() for p in module.parameters()))
    return (counts["dense"] / 1e6, counts["dw"] / 1e6, params / 1e3, counts["act"] / 1e3, counts["ops"],
            counts["elem"] / 1e3, identity)


def block_features(config: BlockConfig | Mapping[str, Any] | tuple, batch: int = 1) -> np.ndarray:
    """Operator features of a block at a shape (see :data:`FEATURE_NAMES`), counted by running it once.

    Raises:
        ValueError: ``batch`` is not a positive integer, or ``config`` is not a block configuration.
    """
    return np.asarray(_features_cached(BlockConfig.coerce(config), _check_batch(batch)), dtype=float)


def table_training_data(table: LatencyTable) -> tuple[list[BlockConfig], np.ndarray]:
    """The block entries of a table (stem and head left out) as predictor training data."""
    configs, values = [], []
    for key, entry in table.entries.items():
        if key in (table.stem_key, table.head_key):
            continue
        configs.append(BlockConfig.from_entry(entry))
        values.append(entry.value)
    return configs, np.asarray(values, dtype=float)


class BlockCostPredictor:
    """Predicts a block's cost (latency or energy) from its operator features.

    Args:
        kind: ``"bayesian_ridge"`` (HURRICANE: linear in the features, with
            uncertainty) or ``"gaussian_process"`` (log-features to log-cost,
            anisotropic RBF + white noise kernel).
        batch: Batch size the features are counted at (match the measurements): a
            positive integer.
        metric, unit: What the cost is (``"latency"``/``"us"``, ``"energy"``/``"mJ"``).
        fingerprint: Where the training costs were measured (stored with the predictor).

    Raises:
        ValueError: An unknown ``kind`` or a ``batch`` that is not a positive integer.
    """

    KINDS = ("bayesian_ridge", "gaussian_process")

    def __init__(self, kind: str = "bayesian_ridge", batch: int = 1, metric: str = "latency", unit: str = "us",
                 fingerprint: Optional[Mapping[str, Any]] = None) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"predictor kind must be one of {self.KINDS}, got {kind!r}")
        self.kind = kind
        self.batch = _check_batch(batch)
        self.metric = metric
        self.unit = unit
        self.fingerprint = dict(fingerprint or {})
        self._configs: list[BlockConfig] = []
        self._values: Optional[np.ndarray] = None
        self._model: Any = None
        self._scale: Optional[tuple[np.ndarray, np.ndarray]] = None
        self.hyperparameters: dict[str, Any] = {}

    def _design(self, configs: Sequence[BlockConfig]) -> np.ndarray:
        x = np.stack([block_features(c, self.batch) for c in configs])
        if self.kind == "gaussian_process":
            x = np.log1p(x)
        return x

    def fit(self, configs: Sequence[Any], values: Sequence[float], _kernel_theta: Optional[list[float]] = None) -> "BlockCostPredictor":
        """Fits the predictor to measured costs.

        Args:
            configs: Block configurations (:class:`BlockConfig`, dicts or 5-tuples).
            values: Their measured costs (latencies or energies): finite and ``>= 0``,
                and ``> 0`` for ``"gaussian_process"`` (it models log cost).

        Raises:
            ValueError: Lengths differ, fewer than 3 rows, or a non-finite or negative
                cost (a zero one too for the Gaussian process).
        """
        configs = [BlockConfig.coerce(c) for c in configs]
        if self.kind == "gaussian_process":
            y = _costs(values, "values", positive=True, why="gaussian_process models log cost")
        else:
            y = _costs(values, "values", positive=False)
        if len(configs) != y.size:
            raise ValueError(f"{len(configs)} block configurations but {y.size} values")
        if y.size < 3:
            raise ValueError(f"need at least 3 measurements to fit a predictor, got {y.size}")
        x = self._design(configs)
        mean, std = x.mean(axis=0), x.std(axis=0)
        std[std == 0] = 1.0
        self._scale = (mean, std)
        xs = (x - mean) / std
        if self.kind == "bayesian_ridge":
            from sklearn.linear_model import BayesianRidge

            model = BayesianRidge(fit_intercept=True)
            model.fit(xs, y)
            self.hyperparameters = {"alpha": float(model.alpha_), "lambda": float(model.lambda_)}
        else:
            from sklearn.gaussian_process import GaussianProcessRegressor
            from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

            kernel = ConstantKernel(1.0, (1e-3, 1e3)) * RBF(np.ones(x.shape[1]), (1e-2, 1e3)) + WhiteKernel(1e-3, (1e-8, 1e0))
            if _kernel_theta is not None:
                kernel = kernel.clone_with_theta(np.asarray(_kernel_theta, dtype=float))
            model = GaussianProcessRegressor(
                kernel=kernel, normalize_y=True, random_state=0,
                optimizer=None if _kernel_theta is not None else "fmin_l_bfgs_b", n_restarts_optimizer=0,
            )
            # Length scales of features that do not matter run into their upper bound by
            # design (the kernel ignores them); scikit-learn warns about it every fit.
            from sklearn.exceptions import ConvergenceWarning

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(xs, np.log(y))
            self.hyperparameters = {"kernel": str(model.kernel_), "theta": [float(t) for t in model.kernel_.theta]}
        self._model = model
        self._configs = configs
        self._values = y
        return self

    def predict(self, configs: Sequence[Any], return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Predicted costs (and standard deviations, in the same unit, if ``return_std``).

        ``"bayesian_ridge"`` predicts a normal distribution of the cost: the value is its
        mean (and median). ``"gaussian_process"`` models the log cost as normal with mean
        ``mu`` and standard deviation ``s``, so the cost is log-normal: the value is its
        median ``exp(mu)`` (what a fit of log costs recovers, and below the mean
        ``exp(mu + s**2 / 2)`` by the factor ``exp(s**2 / 2)``), and the standard
        deviation that of the log-normal cost, ``exp(mu + s**2 / 2) * sqrt(exp(s**2) - 1)``.

        Returns:
            One value per configuration, in order: an empty ``configs`` gives empty arrays.
        """
        if self._model is None:
            raise ValueError("the predictor is not fitted; call fit() or load() first")
        configs = [BlockConfig.coerce(c) for c in configs]
        if not configs:
            empty = np.zeros(0, dtype=float)
            return (empty, empty.copy()) if return_std else empty
        mean, std = self._scale
        xs = (self._design(configs) - mean) / std
        mu, sigma = self._model.predict(xs, return_std=True)
        if self.kind == "gaussian_process":
            # Log-normal: median exp(mu). The std is that of the cost, not of its log:
            # sqrt(Var) = exp(mu + s^2 / 2) * sqrt(exp(s^2) - 1), the mean times the
            # coefficient of variation (the median in its place understates it).
            value = np.exp(mu)
            spread = np.exp(mu + sigma**2 / 2.0) * np.sqrt(np.maximum(np.expm1(sigma**2), 0.0))
        else:
            value, spread = mu, sigma
        return (value, spread) if return_std else value

    def predict_architecture(self, space: Any, arch: Any, fixed: float = 0.0) -> float:
        """``fixed`` (e.g. stem + head from a table) plus the predicted cost of each chosen block.

        Uses the architecture's own shapes (its resolution and channel widths), so it
        covers what a table at fixed shapes cannot.
        """
        layers = space.resolve_layers(arch)
        configs = [BlockConfig(choice, l.c_in, l.c_out, l.stride, tuple(l.in_hw)) for l, choice in zip(layers, arch.choices)]
        return float(fixed + np.sum(self.predict(configs)))

    def evaluate_holdout(self, configs: Sequence[Any], values: Sequence[float], test_fraction: float = 0.25,
                         seed: int = 0) -> dict[str, float]:
        """Fits on a random ``1 - test_fraction`` of the rows and reports the error on the rest.

        This predictor ends up fitted on the training split.
        """
        from .validation import error_metrics

        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        configs = [BlockConfig.coerce(c) for c in configs]
        positive = self.kind == "gaussian_process"
        y = _costs(values, "values", positive, "gaussian_process models log cost" if positive else "costs: latencies or energies")
        if len(configs) != y.size:
            raise ValueError(f"{len(configs)} block configurations but {y.size} values")
        order = np.random.default_rng(seed).permutation(len(configs))
        n_test = max(2, int(round(test_fraction * len(configs))))
        test, train = order[:n_test], order[n_test:]
        self.fit([configs[i] for i in train], y[train])
        predicted = self.predict([configs[i] for i in test])
        out = error_metrics(predicted, y[test])
        out["n_train"] = int(train.size)
        return out

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        if self._model is None:
            raise ValueError("cannot save an unfitted predictor")
        return {
            "format": PREDICTOR_FORMAT,
            "version": PREDICTOR_FORMAT_VERSION,
            "kind": self.kind,
            "batch": self.batch,
            "metric": self.metric,
            "unit": self.unit,
            "fingerprint": self.fingerprint,
            "features": list(FEATURE_NAMES),
            "hyperparameters": self.hyperparameters,
            "training": [dict(asdict(c), in_hw=list(c.in_hw), value=float(v)) for c, v in zip(self._configs, self._values)],
        }

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BlockCostPredictor":
        """Reads a saved predictor and refits it on its stored training data.

        Raises:
            FileNotFoundError: No such file.
            IsADirectoryError: ``path`` is a folder.
            ValueError: Not JSON, another format or version, other features, or a
                missing or malformed field (the message names the file and the field),
                or training data that cannot be fitted.
        """
        source = os.fspath(path)
        data = _read_document(path, PREDICTOR_FORMAT, (PREDICTOR_FORMAT_VERSION,))
        if list(data.get("features") or []) != list(FEATURE_NAMES):
            raise ValueError(f"{source}: saved with features {data.get('features')}, this hwnas uses {list(FEATURE_NAMES)}")
        kind = _field(data, "kind", "str", source)
        if kind not in cls.KINDS:
            raise ValueError(f"{source}: kind must be one of {cls.KINDS}, got {kind!r}")
        predictor = cls(kind, _field(data, "batch", "int", source, minimum=1), _field(data, "metric", "str", source),
                        _field(data, "unit", "str", source), _field(data, "fingerprint", "object", source, default={}))
        configs, values = [], []
        for index, row in enumerate(_field(data, "training", "list", source)):
            configs.append(BlockConfig(*_shape_fields(row, source, f"training[{index}].")))
            values.append(_field(row, "value", "number", source, f"training[{index}]."))
        hyperparameters = _field(data, "hyperparameters", "object", source, default={})
        theta = _field(hyperparameters, "theta", "list", source, "hyperparameters.", default=None)
        if theta is not None:
            theta = [_field({"theta": t}, "theta", "number", source, "hyperparameters.") for t in theta]
        try:
            predictor.fit(configs, values, _kernel_theta=theta)
        except ValueError as exc:
            raise ValueError(f"{source}: cannot refit the stored training data: {exc}") from exc
        return predictor


def _check_layers(arch: Any, layer_keys: Sequence[Mapping[str, str]], index: int) -> None:
    which = f"archs[{index}]"
    if len(arch.choices) != len(layer_keys):
        raise ValueError(f"{which} has {len(arch.choices)} layers, the space {len(layer_keys)}")
    for layer, (keys, choice) in enumerate(zip(layer_keys, arch.choices)):
        if choice not in keys:
            raise ValueError(f"{which}: layer {layer} has no choice {choice!r} in this space (it offers {list(keys)})")


def _check_archs(space: Any, archs: Sequence[Any], layer_keys: Sequence[Mapping[str, str]]) -> None:
    """Refuses an architecture that is not of ``space`` at the shapes the fitted table is keyed at.

    ``space.validate`` compares the space (name, version, width, options such as
    ``num_classes``) and the choices; the layer count and choice names alone would let
    an architecture of another space, width or resolution through, its costs then
    fitted to keys of blocks it never ran.

    Raises:
        ValueError: Naming ``archs[index]`` and what differs.
    """
    from hwnas.spaces import Architecture

    for index, arch in enumerate(archs):
        if isinstance(arch, Architecture):
            _check_layers(arch, layer_keys, index)  # a wrong choice, named by its layer
        try:
            space.validate(arch)
        except ValueError as exc:
            raise ValueError(f"archs[{index}] is not an architecture of space {space.name!r} as given: {exc}") from None
        # validate accepts any resolution or channel choice of the space; the table's
        # keys are those of its default shapes, which such an architecture does not run.
        own = layer_entry_keys(space, space.resolve_layers(arch))
        for layer, (keys, ran, choice) in enumerate(zip(layer_keys, own, arch.choices)):
            if keys[choice] != ran[choice]:
                raise ValueError(f"archs[{index}] runs layer {layer} as {ran[choice]!r} (resolution "
                                 f"{arch.resolution}, its channel widths), the table is keyed at the space's "
                                 f"default shapes ({keys[choice]!r}): measure architectures at those shapes")


def _model_costs(archs: Sequence[Any], measured: Any, minimum: int) -> np.ndarray:
    """``measured`` checked to be one finite, positive whole-model cost per architecture."""
    y = _costs(measured, "measured", positive=True)
    if len(archs) != y.size or y.size < minimum:
        raise ValueError(f"need at least {minimum} architecture{'s' if minimum > 1 else ''} with one measurement "
                         f"each, got {len(archs)} architectures and {y.size} measurements")
    return y


def _count_design(layer_keys: Sequence[Mapping[str, str]], archs: Sequence[Any], column: Mapping[str, int],
                  extra: int) -> np.ndarray:
    """``[len(archs), len(column) + extra]``: how often each architecture uses each key (extra columns 0)."""
    design = np.zeros((len(archs), len(column) + extra))
    for row, arch in enumerate(archs):
        for keys, choice in zip(layer_keys, arch.choices):
            design[row, column[keys[choice]]] += 1.0
    return design


def fit_table_from_models(
    space: Any,
    archs: Sequence[Any],
    measured: Sequence[float],
    fingerprint: Mapping[str, Any],
    ridge: float = 1e-6,
) -> LatencyTable:
    """A per-block table fitted from whole-model costs alone (non-negative least squares).

    Each architecture gives one equation ``measured = fixed + sum_l LUT(key(l, a_l))``
    where ``fixed`` lumps stem, head and per-model overhead (stored as the stem
    entry, the head entry being 0). Unknowns are the distinct entry keys the
    architectures use. Keys no architecture uses stay missing. Whole models
    determine each layer's costs only up to a constant shared by all its choices
    (exactly one of them is always present): differences between the choices of a
    layer, and predictions of whole architectures, are identified; the split
    between a layer's level and the fixed part is not, and a tiny ridge term
    picks the smallest-norm split rather than an arbitrary one. Costs are weighted
    by 1/measured so the fit minimises relative error.

    Args:
        space: The space (its default shapes).
        archs: Measured architectures (at least one).
        measured: Their whole-model costs, one per architecture: finite and positive.
        fingerprint: Device fingerprint of the measurements.
        ridge: Relative weight of the ridge term (finite, ``>= 0``).

    Returns:
        A table with ``source="least_squares"``; ``notes["fit"]`` holds the
        residual MAPE, the rank and the keys left missing.

    Raises:
        ValueError: No architectures, a number of measurements other than the
            number of architectures, a measurement that is not a finite positive
            number, an architecture that ``space.validate`` refuses (another space,
            version, width or options such as ``num_classes``) or at other shapes than
            the space's default ones (another resolution or channel widths), or a
            negative or non-finite ``ridge``.
    """
    from scipy.optimize import lsq_linear

    y = _model_costs(archs, measured, minimum=1)
    if isinstance(ridge, bool) or not isinstance(ridge, numbers.Real) or not (math.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be a finite number >= 0, got {_short(ridge)}")
    layer_keys = layer_entry_keys(space)
    _check_archs(space, archs, layer_keys)
    used: dict[str, int] = {}
    for arch in archs:
        for keys, choice in zip(layer_keys, arch.choices):
            used.setdefault(keys[choice], len(used))
    design = _count_design(layer_keys, archs, used, extra=1)
    design[:, -1] = 1.0  # the fixed part
    rank = int(np.linalg.matrix_rank(design))
    weighted = design / y[:, None]
    target = np.ones_like(y)
    scale = math.sqrt(ridge * len(archs))
    augmented = np.vstack([weighted, scale * np.eye(design.shape[1]) / float(np.median(y))])
    augmented_target = np.concatenate([target, np.zeros(design.shape[1])])
    solution = lsq_linear(augmented, augmented_target, bounds=(0, np.inf), method="bvls").x
    fitted = design @ solution
    table = LatencyTable.for_space(space, fingerprint, source="least_squares")
    for key, index in used.items():
        block, channels, stride, hw = key.split("|")
        c_in, c_out = (int(c) for c in channels[1:].split("-"))
        h, w = (int(v) for v in hw.split("x"))
        table.entries[key] = TableEntry(float(solution[index]), block, c_in, c_out, int(stride[1:]), (h, w))
    last = space.layers[-1]
    table.entries[table.stem_key] = TableEntry(float(solution[-1]), "stem", space.in_channels, space.stem_channels,
                                               space.stem_spec["stride"], (space.resolution, space.resolution),
                                               {"note": "stem + head + per-model overhead, fitted"})
    table.entries[table.head_key] = TableEntry(0.0, "head", last.c_out, space.num_classes, 1, tuple(last.out_hw),
                                               {"note": "folded into the stem entry"})
    table.call_overhead = 0.0
    table.notes["fit"] = {
        "n_models": int(y.size),
        "unknowns": int(design.shape[1]),
        "rank": rank,
        "residual_mape_pct": float(100 * np.mean(np.abs(fitted - y) / y)),
        "missing_keys": table.missing_keys(),
    }
    return table


def refine_table_from_models(
    table: LatencyTable,
    space: Any,
    archs: Sequence[Any],
    measured: Sequence[float],
    strength: float = 0.03,
) -> LatencyTable:
    """``table``'s entries adjusted so that whole models add up (regularised least squares).

    Solves, for entries ``e``, a scale ``a`` and a fixed part ``b`` (stem, head and
    per-model overhead),

        min  sum_m ((sum_l e[key(l, a_m)] + b) / y_m - 1)^2
             + strength * (M / K) * sum_k ((e_k - a * t_k) / max(t_k, 1 us))^2

    over the M measured models ``y`` and the K block keys of the space, ``t`` being
    the standalone entries, with ``e, a >= 0``. Without the second term this is
    :func:`fit_table_from_models` (many more models than keys needed); with a large
    ``strength`` it is a proportional correction of the table (``a * t + b``). In
    between, a few dozen models correct the blocks they use most, and every other
    block keeps its standalone value times ``a``. Relative residuals: every model
    counts alike whatever its size.

    Args:
        table: A complete measured table for ``space``.
        space: The space.
        archs: Measured architectures (not those used to judge the result), at least 2.
        measured: Their whole-model costs, in the table's unit, one per architecture:
            finite and positive.
        strength: Weight of the pull towards the scaled standalone entries. In a
            cross-validation on three ONNX Runtime tables of the FBNet space at
            64x64 (30 models each, fitted on 20, judged on 10), 0.01-0.1 did best,
            within 0.3 points of MAPE of each other, and 0.3-10 worse.

    Returns:
        A table with ``source="refined"``, the fixed part in the stem entry (head 0),
        no call overhead and no correction; ``notes["refined"]`` holds ``a``, ``b``,
        the number of models and the residual MAPE.

    Raises:
        ValueError: Fewer than 2 architectures, a number of measurements other than
            the number of architectures, a measurement that is not a finite positive
            number, a table not built for ``space`` (see
            :meth:`~hwnas.latency.table.LatencyTable.check_space`), an incomplete table,
            an architecture that is not of ``space`` at its default shapes (as for
            :func:`fit_table_from_models`), or a negative or non-finite ``strength``.
    """
    from scipy.optimize import lsq_linear

    y = _model_costs(archs, measured, minimum=2)
    # The refined table is keyed by ``space``: a table of another shape (another
    # num_classes, say) would lend its values to keys it never measured.
    table.check_space(space)
    if not table.complete:
        raise ValueError(f"the table is incomplete ({len(table.missing_keys())} entries missing)")
    if isinstance(strength, bool) or not isinstance(strength, numbers.Real) or not (strength >= 0 and math.isfinite(strength)):
        raise ValueError(f"strength must be non-negative and finite, got {strength!r}")
    layer_keys = layer_entry_keys(space)
    keys = sorted({key for layer in layer_keys for key in layer.values()})
    column = {key: i for i, key in enumerate(keys)}
    prior = np.array([table.value(key) for key in keys])
    n = len(keys)
    _check_archs(space, archs, layer_keys)
    design = _count_design(layer_keys, archs, column, extra=2)  # entries, a (not in the models), b
    design[:, -1] = 1.0
    spread = np.maximum(prior, 1.0)
    pull = np.zeros((n, n + 2))
    pull[:, :n] = np.eye(n) / spread[:, None]
    pull[:, n] = -prior / spread
    pull *= math.sqrt(strength * y.size / n)
    system = np.vstack([design / y[:, None], pull])
    rhs = np.concatenate([np.ones(y.size), np.zeros(n)])
    lower = np.concatenate([np.zeros(n + 1), [-np.inf]])
    solution = lsq_linear(system, rhs, bounds=(lower, np.full(n + 2, np.inf)), method="bvls").x
    refined = LatencyTable.for_space(space, table.fingerprint, source="refined")
    for key in keys:
        entry = table.entries[key]
        refined.entries[key] = TableEntry(float(solution[column[key]]), entry.block, entry.c_in, entry.c_out,
                                          entry.stride, tuple(entry.in_hw))
    stem, head = table.entries[table.stem_key], table.entries[table.head_key]
    refined.entries[refined.stem_key] = TableEntry(float(solution[-1]), "stem", stem.c_in, stem.c_out, stem.stride,
                                                   tuple(stem.in_hw), {"note": "stem + head + per-model overhead, fitted"})
    refined.entries[refined.head_key] = TableEntry(0.0, "head", head.c_in, head.c_out, head.stride, tuple(head.in_hw),
                                                   {"note": "folded into the stem entry"})
    refined.call_overhead = 0.0
    fitted = design @ solution
    refined.notes["refined"] = {"a": float(solution[n]), "b": float(solution[-1]), "n_models": int(y.size),
                                "strength": float(strength),
                                "residual_mape_pct": float(100 * np.mean(np.abs(fitted - y) / y))}
    return refined
