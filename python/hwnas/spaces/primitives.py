"""Small building pieces shared by the blocks: conv-BN-activation, channel
shuffle, squeeze-and-excitation and the ``skip`` candidate.

Each class does one job and is scriptable with ``torch.jit.script`` and
exportable with ``torch.export`` / ``torch.onnx.export``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "make_divisible",
    "scale_channels",
    "make_activation",
    "ConvBNAct",
    "ChannelShuffle",
    "SqueezeExcite",
    "Skip",
]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Rounds a channel count to the nearest multiple of ``divisor`` (MobileNet rule).

    The result is never below ``min_value`` (default ``divisor``) and never more
    than 10% below ``value``; this is the ``_make_divisible`` convention of
    MobileNetV2/V3, used by the width multiplier.

    Args:
        value: Unrounded channel count, e.g. ``16 * 0.35 = 5.6``.
        divisor: Multiple to round to.
        min_value: Smallest allowed result.

    Returns:
        The rounded channel count, e.g. ``make_divisible(5.6) == 8``.
    """
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:  # never round down by more than 10%
        rounded += divisor
    return rounded


def scale_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Applies a width multiplier to a channel count.

    At ``width == 1.0`` the count is returned unchanged, so user-defined spaces
    with channel counts that are not multiples of 8 keep their exact numbers;
    otherwise ``make_divisible(channels * width, divisor)``.
    """
    if width <= 0:
        raise ValueError(f"width multiplier must be positive, got {width!r}")
    if width == 1.0:
        return int(channels)
    return make_divisible(channels * width, divisor)


_ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "hswish": lambda: nn.Hardswish(inplace=True),
    "hsigmoid": lambda: nn.Hardsigmoid(inplace=True),
    "sigmoid": lambda: nn.Sigmoid(),
    "none": lambda: nn.Identity(),
}


def make_activation(name: str | None) -> nn.Module:
    """Returns a fresh activation module for ``name`` (``relu``, ``relu6``, ``hswish``, ``hsigmoid``, ``sigmoid``, ``none``)."""
    key = "none" if name is None else str(name).lower()
    if key not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[key]()


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> activation, 'same' padding.

    Shapes:
        input ``(N, c_in, H, W)`` -> output ``(N, c_out, ceil(H / stride), ceil(W / stride))``
        (exactly ``floor((H - 1) / stride) + 1`` for odd kernels).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: str | None = "relu",
    ) -> None:
        if kernel % 2 != 1:
            raise ValueError(f"kernel size must be odd for 'same' padding, got {kernel}")
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            make_activation(act),
        )


class ChannelShuffle(nn.Module):
    """ShuffleNet channel shuffle: interleaves the channels of ``groups`` groups.

    Shapes:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``; ``C`` must be divisible by ``groups``.
    """

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = int(groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x = x.reshape(n, self.groups, c // self.groups, h, w)
        return x.transpose(1, 2).reshape(n, c, h, w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation with a hard gate (MobileNetV3 style).

    Global average pool -> 1x1 conv ``C -> C/reduction`` (rounded to a multiple
    of 8) -> ReLU -> 1x1 conv back to ``C`` -> gate -> channel-wise scale.
    The default gate is hard-swish ``x * ReLU6(x + 3) / 6`` as specified for the
    HURRICANE operator pool; ``gate="hsigmoid"`` gives MobileNetV3's
    ``ReLU6(x + 3) / 6``. The gate does not change parameter or MAC counts.

    Shapes:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``.
    """

    def __init__(self, channels: int, reduction: int = 4, gate: str = "hswish") -> None:
        super().__init__()
        reduced = make_divisible(channels / reduction, 8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = make_activation(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.expand(self.act(self.reduce(self.pool(x)))))
        return x * scale


class Skip(nn.Module):
    """The ``skip`` candidate.

    Identity when the layer keeps its shape (``stride == 1`` and
    ``c_in == c_out``). When the layer changes shape, skip is a *projection*:
    a 1x1 conv (stride of the layer) followed by batch norm and no activation,
    as in FBNet's released builder (which uses a 1x1 conv projection there) and
    like the linear output of every other candidate. This meaning is used by
    every space in ``hwnas.spaces`` and is what profiling counts.

    Shapes:
        ``(N, c_in, H, W)`` -> ``(N, c_out, H / stride, W / stride)``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.is_identity = stride == 1 and c_in == c_out
        if self.is_identity:
            self.proj = nn.Identity()
        else:
            self.proj = ConvBNAct(c_in, c_out, 1, stride=stride, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)
