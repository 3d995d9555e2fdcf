"""Search objectives: how task loss and (expected) latency combine.

All objectives take the cross-entropy ``ce`` (0-dim tensor) and the latency
``lat`` (0-dim tensor, in the latency table's unit: microseconds for tables built
by :mod:`hwnas.latency`) and return a 0-dim loss, differentiable in both.

================  =========================================  =============================
name              loss                                       latency weight / target
================  =========================================  =============================
``fbnet``         ``ce * alpha * log(lat) ** beta``          ``beta`` (FBNet eq. 2)
``additive``      ``ce + lam * lat``                         ``lam`` (per microsecond)
``proxyless``     ``ce * (lat / target) ** beta``            ``target`` (ProxylessNAS/MnasNet)
``hard_target``   ``ce + lam * relu(lat / target - 1)``      ``target`` (no penalty below it)
``absolute``      ``ce + lam * abs(lat / target - 1)``       ``target`` (TuNAS: both sides)
================  =========================================  =============================

``absolute`` is TuNAS's absolute-value reward (Bender et al., 2020) written as a
loss: it pulls the expected latency to the target from below as well as from above.
The one-sided objectives leave a search free to end far under its budget; on a
small data set, where bigger models barely lower the cross-entropy, they do.

``fbnet`` takes the logarithm of the latency in microseconds, so it is positive
for anything slower than 1 us (FBNet's milliseconds on a phone were > 1 too).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch
from torch import Tensor

__all__ = [
    "Objective",
    "FBNetObjective",
    "AdditiveObjective",
    "ProxylessObjective",
    "HardTargetObjective",
    "AbsoluteTargetObjective",
    "OBJECTIVES",
    "make_objective",
]


def _real(name: str, value: Any, bound: str) -> float:
    """``value`` as a float, checked to be a real number (not a bool, a string or a tensor)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a {bound} finite number (int or float), got {value!r} "
                         f"({type(value).__name__})")
    return float(value)


def _positive(name: str, value: Any) -> float:
    value = _real(name, value, "positive")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return value


def _non_negative(name: str, value: Any) -> float:
    value = _real(name, value, "non-negative")
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be non-negative and finite, got {value!r}")
    return value


class Objective:
    """Base class: ``loss = objective(ce, lat)``; ``to_dict()`` round-trips through :func:`make_objective`."""

    name = "abstract"

    def __call__(self, ce: Tensor, lat: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}  # type: ignore[call-overload]

    def describe(self) -> str:
        params = ", ".join(f"{k}={v:g}" for k, v in asdict(self).items())  # type: ignore[call-overload]
        return f"{self.name}({params})"


@dataclass
class FBNetObjective(Objective):
    """FBNet: ``ce * alpha * log(lat) ** beta``; larger ``beta`` favours faster models."""

    alpha: float = 0.2
    beta: float = 0.6
    name = "fbnet"

    def __post_init__(self) -> None:
        self.alpha = _positive("alpha", self.alpha)
        self.beta = _non_negative("beta", self.beta)

    def __call__(self, ce: Tensor, lat: Tensor) -> Tensor:
        # Clamp so that a latency under 1 us (log <= 0) cannot flip the sign of the loss.
        log_lat = torch.log(lat.clamp_min(1.0 + 1e-6))
        return ce * self.alpha * log_lat.pow(self.beta)


@dataclass
class AdditiveObjective(Objective):
    """``ce + lam * lat`` (``lam`` per unit of latency, e.g. per microsecond)."""

    lam: float = 1e-4
    name = "additive"

    def __post_init__(self) -> None:
        self.lam = _non_negative("lam", self.lam)

    def __call__(self, ce: Tensor, lat: Tensor) -> Tensor:
        return ce + self.lam * lat


@dataclass
class ProxylessObjective(Objective):
    """ProxylessNAS / MnasNet soft target: ``ce * (lat / target) ** beta``."""

    target: float = 1000.0
    beta: float = 0.6
    name = "proxyless"

    def __post_init__(self) -> None:
        self.target = _positive("target", self.target)
        self.beta = _non_negative("beta", self.beta)

    def __call__(self, ce: Tensor, lat: Tensor) -> Tensor:
        return ce * (lat / self.target).pow(self.beta)


@dataclass
class _TargetPenaltyObjective(Objective):
    """``ce + lam * penalty(lat / target - 1)``: the fields and checks the target objectives share."""

    target: float = 1000.0
    lam: float = 2.0

    def __post_init__(self) -> None:
        self.target = _positive("target", self.target)
        self.lam = _non_negative("lam", self.lam)


@dataclass
class HardTargetObjective(_TargetPenaltyObjective):
    """Hard latency target: ``ce + lam * relu(lat / target - 1)``: no penalty at or below ``target``."""

    name = "hard_target"

    def __call__(self, ce: Tensor, lat: Tensor) -> Tensor:
        return ce + self.lam * torch.relu(lat / self.target - 1.0)


@dataclass
class AbsoluteTargetObjective(_TargetPenaltyObjective):
    """Two-sided latency target (TuNAS): ``ce + lam * |lat / target - 1|``.

    A model slower than ``target`` pays as in :class:`HardTargetObjective`; one faster
    than it pays too, so the search spends the budget it is given. The penalty's
    slope is ``lam`` per relative unit on both sides: with ``lam = 2`` a model 10% off
    target costs 0.2 nats of cross-entropy.
    """

    name = "absolute"

    def __call__(self, ce: Tensor, lat: Tensor) -> Tensor:
        return ce + self.lam * torch.abs(lat / self.target - 1.0)


OBJECTIVES: dict[str, type] = {
    "fbnet": FBNetObjective,
    "additive": AdditiveObjective,
    "proxyless": ProxylessObjective,
    "hard_target": HardTargetObjective,
    "absolute": AbsoluteTargetObjective,
}


def make_objective(spec: str | Mapping[str, Any] | Objective, **params: Any) -> Objective:
    """An objective from its name and parameters, or from a ``to_dict()`` mapping.

    Example::

        make_objective("fbnet", beta=1.2)
        make_objective({"name": "hard_target", "target": 800.0, "lam": 2.0})

    Raises:
        ValueError: Unknown name or parameter, or a parameter that is not a real
            number (int or float; bools and strings are refused) or out of range.
    """
    if isinstance(spec, Objective):
        return spec
    if isinstance(spec, Mapping):
        params = {**{k: v for k, v in spec.items() if k != "name"}, **params}
        spec = spec.get("name", "")
    if spec not in OBJECTIVES:
        raise ValueError(f"unknown objective {spec!r}; choose one of {sorted(OBJECTIVES)}")
    cls = OBJECTIVES[spec]
    allowed = set(cls.__dataclass_fields__)
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(f"objective {spec!r} takes {sorted(allowed)}, not {unknown}")
    return cls(**params)
