"""Standalone models: turn (space, architecture) into a plain ``nn.Module``.

The model contains only the chosen blocks (no supernet, no unused
candidates), so it can be scripted (``torch.jit.script``), exported with
``torch.export.export`` and with ``torch.onnx.export``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

import torch
from torch import nn

from .primitives import ConvBNAct

if TYPE_CHECKING:  # pragma: no cover
    from .architecture import Architecture
    from .base import SearchSpace

__all__ = ["SpaceNet", "ClassifierHead", "build_model"]


class ClassifierHead(nn.Module):
    """Fixed head: [1x1 conv + BN + act] -> global average pool -> [dropout] -> fully connected.

    Shapes:
        ``(N, c_in, H, W)`` -> ``(N, num_classes)``.

    Args:
        c_in: Channels coming from the last searchable layer.
        channels: Output channels of the 1x1 conv; ``0`` means no conv (pool directly).
        num_classes: Classifier outputs.
        act: Activation after the conv.
        dropout: Dropout probability before the classifier (0 disables it).
    """

    def __init__(self, c_in: int, channels: int, num_classes: int, act: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = ConvBNAct(c_in, channels, 1, act=act) if channels > 0 else nn.Identity()
        features = channels if channels > 0 else c_in
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.flatten(self.pool(self.conv(x)))))


class SpaceNet(nn.Module):
    """A standalone network: ``stem -> layers[0] -> ... -> layers[L-1] -> head``.

    Shapes:
        ``(N, in_channels, R, R)`` -> ``(N, num_classes)``.

    Attributes:
        stem: Fixed first conv.
        layers: ``nn.Sequential`` of the chosen blocks, one per searchable layer
            (``layers[i]`` is searchable layer ``i``).
        head: :class:`ClassifierHead`.
    """

    def __init__(self, stem: nn.Module, layers: list[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.stem = stem
        self.layers = nn.Sequential(*layers)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))

    def profile_units(self) -> list[tuple[str, nn.Module]]:
        """Rows of the per-layer profile: stem, each searchable layer, head."""
        units: list[tuple[str, nn.Module]] = [("stem", self.stem)]
        units += [(f"layers.{i}", m) for i, m in enumerate(self.layers)]
        units.append(("head", self.head))
        return units


def build_model(space: Union["SearchSpace", str, None], arch: "Architecture") -> SpaceNet:
    """Builds the standalone model of ``arch``.

    Args:
        space: The search space, its registered name, or ``None`` to rebuild it
            from ``arch`` (``get_space(arch.space, resolution=arch.resolution,
            width=arch.width, **arch.space_options)``).
        arch: The architecture; validated against the space first.

    Returns:
        A :class:`SpaceNet` in training mode with freshly initialised weights.
    """
    from .base import SearchSpace, space_for_architecture

    if space is None or isinstance(space, str):
        if isinstance(space, str) and space != arch.space:
            raise ValueError(f"architecture belongs to space {arch.space!r}, not {space!r}")
        space = space_for_architecture(arch)
    if not isinstance(space, SearchSpace):
        raise ValueError(f"space must be a SearchSpace, a space name or None, got {type(space).__name__}")
    return space.build(arch)


