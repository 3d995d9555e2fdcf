"""Model zoo: published architectures, buildable by name with random weights.

>>> from hwnas import models
>>> net = models.build("fbnet_a")            # nn.Module, random init, nothing downloaded
>>> models.list_models()
['fbnet_96_035_1', 'fbnet_a', 'fbnet_b', 'fbnet_c', 'fbnet_iphonex', 'fbnet_s8', 'mobilenet_v2']

FBNet-A/B/C follow the published FBNet model definitions (``fbnet.json``).
``fbnet_iphonex``, ``fbnet_s8`` and ``fbnet_96_035_1`` are third-party
transcriptions of the FBNet paper's Figure 4, not checked against released
weights: they are marked ``verified=False`` and their head width (1984, the
Table 1 value) is an assumption.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from torch import nn

from .spaces.architecture import Architecture
from .spaces.base import SearchSpace, get_space

__all__ = ["ZooEntry", "ZOO", "build", "list_models", "get_entry", "architecture", "space"]


@dataclass(frozen=True)
class ZooEntry:
    """A named published architecture.

    Attributes:
        name: Zoo name.
        space: Search space it is expressed in.
        blocks: Compact architecture string (stages separated by ``|``).
        space_kwargs: Space options (head width, resolution, width multiplier).
        verified: False for transcriptions not checked against released models.
        paper: Published figures: ``params_M``, ``macs_M`` (FBNet reports these as "FLOPs"), ``top1``.
        source: Where the definition comes from.
    """

    name: str
    space: str
    blocks: str
    space_kwargs: dict[str, Any] = field(default_factory=dict)
    verified: bool = True
    paper: Optional[dict[str, float]] = None
    source: str = ""


ZOO: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in [
        ZooEntry(
            "fbnet_a", "fbnet",
            "skip | k3_e3 k3_e1 skip skip | k5_e6 k3_e3 k5_e1 k3_e3 | k5_e6 k5_e3 k5_e1_g2 k5_e6 | "
            "k3_e6 k5_e1_g2 k5_e3 k3_e1_g2 | k5_e6 k5_e6 k5_e3 k5_e6 | k5_e6",
            {"head_channels": 1504, "resolution": 224},
            paper={"params_M": 4.3, "macs_M": 249, "top1": 73.0},
            source="FBNet (Wu et al. 2019), released FBNet-A definition (head 1504)",
        ),
        ZooEntry(
            "fbnet_b", "fbnet",
            "k3_e1 | k3_e6 k5_e1 k3_e1 k3_e1 | k5_e6 k5_e3 k3_e6 k5_e6 | k5_e6 k5_e6 skip k5_e3 | "
            "k5_e6 k3_e1 k5_e1 k5_e3 | k5_e6 k5_e1 k5_e6 k5_e6 | k3_e6",
            {"head_channels": 1984, "resolution": 224},
            paper={"params_M": 4.5, "macs_M": 295, "top1": 74.1},
            source="FBNet (Wu et al. 2019), released FBNet-B definition",
        ),
        ZooEntry(
            "fbnet_c", "fbnet",
            "k3_e1 | k3_e6 skip k3_e1 k3_e1 | k5_e6 k5_e3 k5_e6 k3_e6 | k5_e6 k5_e3 k5_e6 k5_e6 | "
            "k5_e6 k5_e6 k5_e6 k5_e3 | k5_e6 k5_e6 k5_e6 k5_e6 | k3_e6",
            {"head_channels": 1984, "resolution": 224},
            paper={"params_M": 5.5, "macs_M": 375, "top1": 74.9},
            source="FBNet (Wu et al. 2019), released FBNet-C definition",
        ),
        ZooEntry(
            "fbnet_iphonex", "fbnet",
            "skip | k3_e6 k3_e1 k3_e1 k3_e1 | k3_e6 k3_e6 k3_e6 k3_e6 | k3_e6 k3_e6 k3_e3 k3_e6 | "
            "k3_e6 k3_e3 k3_e3 k3_e3 | k5_e6 k5_e6 k5_e6 k5_e3 | k5_e6",
            {"head_channels": 1984, "resolution": 224},
            verified=False,
            source="UNVERIFIED: third-party reading of FBNet paper Figure 4; head width 1984 assumed",
        ),
        ZooEntry(
            "fbnet_s8", "fbnet",
            "k3_e1 | k3_e3 k3_e1 skip skip | k5_e6 k3_e3 k3_e3 k3_e6 | k5_e6 k5_e3 k5_e3 k5_e3 | "
            "k3_e6 k5_e3 k5_e3 k5_e3 | k5_e6 k5_e6 k5_e3 k5_e6 | k5_e6",
            {"head_channels": 1984, "resolution": 224},
            verified=False,
            source="UNVERIFIED: third-party reading of FBNet paper Figure 4; head width 1984 assumed",
        ),
        ZooEntry(
            "fbnet_96_035_1", "fbnet",
            "k3_e1 | k3_e6 k3_e6 skip skip | k5_e6 k5_e6 skip skip | k5_e6 skip skip skip | "
            "k3_e6 skip skip skip | k5_e6 k5_e6 skip skip | k5_e6",
            {"head_channels": 1984, "resolution": 96, "width": 0.35},
            verified=False,
            source="UNVERIFIED: third-party reading of FBNet paper Figure 4 (FBNet-96-0.35-1); "
            "head 1984 scaled by the width multiplier like every other channel count",
        ),
        ZooEntry(
            "mobilenet_v2", "mobilenet_v2",
            "mb_k3_e1 | mb_k3_e6 mb_k3_e6 | mb_k3_e6 mb_k3_e6 mb_k3_e6 | mb_k3_e6 mb_k3_e6 mb_k3_e6 mb_k3_e6 | "
            "mb_k3_e6 mb_k3_e6 mb_k3_e6 | mb_k3_e6 mb_k3_e6 mb_k3_e6 | mb_k3_e6",
            {"resolution": 224, "width": 1.0},
            paper={"params_M": 3.4, "macs_M": 300, "top1": 72.0},
            source="MobileNetV2-1.0 (Sandler et al. 2018)",
        ),
    ]
}


def list_models() -> list[str]:
    """Zoo model names."""
    return sorted(ZOO)


def get_entry(name: str) -> ZooEntry:
    """The :class:`ZooEntry` of ``name``; ``ValueError`` naming the known models otherwise."""
    if name not in ZOO:
        raise ValueError(f"unknown zoo model {name!r}; known: {list_models()}")
    return ZOO[name]


def space(name: str, **kwargs: Any) -> SearchSpace:
    """The search space zoo model ``name`` lives in (``kwargs`` override e.g. ``num_classes``, ``resolution``)."""
    entry = get_entry(name)
    options = dict(entry.space_kwargs)
    options.update(kwargs)
    return get_space(entry.space, **options)


def architecture(name: str, **kwargs: Any) -> Architecture:
    """The :class:`Architecture` of zoo model ``name`` (same overrides as :func:`space`)."""
    return space(name, **kwargs).make_arch(get_entry(name).blocks)


def build(name: str, **kwargs: Any) -> nn.Module:
    """Builds zoo model ``name`` with random weights.

    Args:
        name: One of :func:`list_models`.
        **kwargs: Space options overriding the published ones, e.g.
            ``num_classes=10``, ``in_channels=1``, ``resolution=160``.

    Returns:
        A :class:`~hwnas.spaces.builder.SpaceNet` mapping
        ``(N, in_channels, R, R)`` to ``(N, num_classes)``.
    """
    model_space = space(name, **kwargs)
    return model_space.build(model_space.make_arch(get_entry(name).blocks))
