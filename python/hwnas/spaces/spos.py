"""SPOS / HURRICANE backbone spaces (``spos``, ``hurricane``).

Backbone (SPOS, Guo et al. 2019; used by HURRICANE, Zhang et al.) at 224x224::

    stem   conv3x3, 16, stride 2                       224 -> 112
    layers 0-3    64 channels, first stride 2          -> 56x56x64
    layers 4-7   160 channels, first stride 2          -> 28x28x160
    layers 8-15  320 channels, first stride 2          -> 14x14x320
    layers 16-19 640 channels, first stride 2          ->  7x7x640
    head   conv1x1, 1024 -> avg pool -> fc 1000

(The paper numbers the layers 1-20; here they are 0-19.) ``spos`` offers the
four SPOS blocks at every layer. ``hurricane`` offers HURRICANE's 32-operator
pool at every layer by default, or a *hardware-aware* space where every layer
has its own list (``layer_choices=...``, e.g. from
:func:`hardware_aware_layer_choices`).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Sequence

from hwnas._checks import as_name_list

from .base import LayerSpec, SearchSpace, register_space
from .blocks import HURRICANE_BLOCKS, SPOS_BLOCKS, build_block

__all__ = ["SPOS_STAGES", "spos_space", "hurricane_space", "hardware_aware_layer_choices"]

#: (out_channels, layers, first_stride) of the SPOS backbone.
SPOS_STAGES: tuple[tuple[int, int, int], ...] = ((64, 4, 2), (160, 4, 2), (320, 8, 2), (640, 4, 2))
NUM_SPOS_LAYERS = sum(n for _, n, _ in SPOS_STAGES)


def _spos_like(name: str, layer_choices: Sequence[Sequence[str]], resolution: int, width: float, in_channels: int,
               num_classes: int, description: str, options: dict[str, Any]) -> SearchSpace:
    if len(layer_choices) != NUM_SPOS_LAYERS:
        raise ValueError(f"space {name!r} needs {NUM_SPOS_LAYERS} per-layer choice lists, got {len(layer_choices)}")
    stages, start = [], 0
    for c_out, n, stride in SPOS_STAGES:
        stages.append({"out_channels": c_out, "layers": n, "first_stride": stride,
                       "layer_choices": [list(c) for c in layer_choices[start : start + n]]})
        start += n
    return SearchSpace(
        name, stages, version=1, resolution=resolution, in_channels=in_channels, num_classes=num_classes, width=width,
        stem={"out_channels": 16, "kernel": 3, "stride": 2, "activation": "relu"},
        head={"out_channels": 1024, "activation": "relu", "shrink_with_width": True, "dropout": 0.0},
        description=description, options=options,
    )


@register_space("spos")
def spos_space(resolution: int = 224, width: float = 1.0, in_channels: int = 3, num_classes: int = 1000) -> SearchSpace:
    """SPOS block space: 20 layers x {choice_k3, choice_k5, choice_k7, choicex} (4**20 architectures)."""
    options = {k: v for k, v in dict(in_channels=in_channels, num_classes=num_classes).items() if v != {"in_channels": 3, "num_classes": 1000}[k]}
    return _spos_like("spos", [list(SPOS_BLOCKS)] * NUM_SPOS_LAYERS, resolution, width, in_channels, num_classes,
                      "SPOS backbone, 20 layers x 4 ShuffleNetV2 blocks", options)


@register_space("hurricane")
def hurricane_space(
    resolution: int = 224,
    width: float = 1.0,
    in_channels: int = 3,
    num_classes: int = 1000,
    layer_choices: Sequence[Sequence[str]] | None = None,
) -> SearchSpace:
    """HURRICANE space on the SPOS backbone.

    Args:
        layer_choices: One operator list per layer (20 lists) for a
            hardware-aware space; default: all 32 operators at every layer
            (32**20 architectures).
    """
    options: dict[str, Any] = {k: v for k, v in dict(in_channels=in_channels, num_classes=num_classes).items()
                               if v != {"in_channels": 3, "num_classes": 1000}[k]}
    if layer_choices is None:
        layer_choices = [list(HURRICANE_BLOCKS)] * NUM_SPOS_LAYERS
    else:
        if isinstance(layer_choices, (str, bytes)):
            raise ValueError(f"layer_choices must be one list of block names per layer, got {layer_choices!r}")
        layer_choices = [as_name_list(f"layer_choices[{i}]", c) for i, c in enumerate(layer_choices)]
        options["layer_choices"] = layer_choices
    return _spos_like("hurricane", layer_choices, resolution, width, in_channels, num_classes,
                      "HURRICANE operator pool on the SPOS backbone", options)


def hardware_aware_layer_choices(
    latency: Callable[[LayerSpec, str], float],
    alpha: float,
    top_p: int = 4,
    explore_last: int = 4,
    candidates: Sequence[str] = HURRICANE_BLOCKS,
    resolution: int = 224,
    width: float = 1.0,
) -> list[list[str]]:
    """HURRICANE's per-layer operator selection for one target device.

    For each layer, ``score(op) = (MACs(op) * params(op)) ** alpha / latency(layer, op)``
    (MACs stand in for the paper's FLOPs; the ratio ranks the same); the
    ``top_p`` best operators are kept, plus the next-best one ("exploring"
    operator) in the last ``explore_last`` layers. Pass the result to
    ``get_space("hurricane", layer_choices=...)``.

    Args:
        latency: ``latency(layer_spec, op_name) -> seconds`` (or any positive unit) on the target.
        alpha: Exponent trading capacity against latency: a finite number ``>= 0``.
            0 ranks by latency alone (fastest first); the larger ``alpha``, the more
            capacity counts. A negative ``alpha`` would reward small capacity as
            well as low latency, the opposite of what the score is for, and is refused.
        top_p: Operators kept per layer: an integer in ``1..len(candidates)``.
        explore_last: Number of final layers that get one extra operator: an integer
            in ``0..20``. With ``top_p == len(candidates)`` there is no extra operator
            left to add.
        candidates: Operator pool: a non-empty sequence of distinct block names.
        resolution: Input resolution the layer shapes are computed at.
        width: Width multiplier.

    Returns:
        20 operator lists, best first.

    Raises:
        ValueError: A parameter of the wrong type or out of range (the message names
            it and the value), an unknown block name, or a latency that is not a
            finite positive number.
    """
    import torch

    from .profile import profile

    try:
        if isinstance(candidates, str):
            raise TypeError
        candidates = list(candidates)
    except TypeError:
        raise ValueError(f"candidates must be a sequence of block names, got {candidates!r}") from None
    if not candidates:
        raise ValueError("candidates is empty: give at least one block name (e.g. HURRICANE_BLOCKS)")
    if not all(isinstance(op, str) for op in candidates):
        raise ValueError(f"candidates must be block names (strings), got {candidates!r}")
    duplicates = sorted({op for op in candidates if candidates.count(op) > 1})
    if duplicates:
        raise ValueError(f"candidates lists {duplicates} more than once")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number >= 0 (the weight of capacity against latency), got {alpha!r}")
    alpha = float(alpha)
    if isinstance(top_p, bool) or not isinstance(top_p, numbers.Integral) or not 1 <= top_p <= len(candidates):
        raise ValueError(f"top_p must be an integer in 1..{len(candidates)} (the number of candidates), got {top_p!r}")
    if (isinstance(explore_last, bool) or not isinstance(explore_last, numbers.Integral)
            or not 0 <= explore_last <= NUM_SPOS_LAYERS):
        raise ValueError(f"explore_last must be an integer in 0..{NUM_SPOS_LAYERS} (the number of layers), "
                         f"got {explore_last!r}")
    top_p, explore_last = int(top_p), int(explore_last)
    base = _spos_like("hurricane", [list(candidates)] * NUM_SPOS_LAYERS, resolution, width, 3, 1000, "", {})
    capacity: dict[tuple, float] = {}  # layers of a stage share shapes: count each (op, shape) once
    result = []
    for layer in base.layers:
        scored = []
        for op in candidates:
            key = (op, layer.c_in, layer.c_out, layer.stride, layer.in_hw)
            if key not in capacity:
                with torch.device("meta"):  # shapes only, no arithmetic
                    block = build_block(op, layer.c_in, layer.c_out, layer.stride)
                stats = profile(block, (1, layer.c_in, *layer.in_hw), meta=False)
                capacity[key] = float(stats.macs) * float(stats.params)
            lat = float(latency(layer, op))
            if not math.isfinite(lat) or lat <= 0:
                raise ValueError(f"latency for layer {layer.index} op {op!r} must be positive, got {lat!r}")
            # In log space (same ranking): capacity ** alpha overflows a float for a large alpha.
            gain = 0.0 if alpha == 0 else (alpha * math.log(capacity[key]) if capacity[key] > 0 else -math.inf)
            scored.append((gain - math.log(lat), op))
        scored.sort(key=lambda item: -item[0])
        keep = top_p + (1 if layer.index >= NUM_SPOS_LAYERS - explore_last else 0)
        result.append([op for _, op in scored[:keep]])
    return result
