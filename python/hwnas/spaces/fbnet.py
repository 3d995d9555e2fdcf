"""FBNet-family search spaces (``fbnet``, ``fbnet_small``, ``fbnetv2``) and the
MobileNetV2 backbone space (``mobilenet_v2``).

FBNet (Wu et al., CVPR 2019, Table 1) at 224x224::

    stem   conv3x3, 16, stride 2                      224 -> 112
    stage  c_out  layers  first stride                 searchable
      0     16      1        1                         112
      1     24      4        2                         112 -> 56
      2     32      4        2                          56 -> 28
      3     64      4        2                          28 -> 14
      4    112      4        1                          14
      5    184      4        2                          14 -> 7
      6    352      1        1                           7
    head   conv1x1, 1984 (the released FBNet-A uses 1504) -> avg pool -> fc 1000

22 searchable layers x 9 candidates (:data:`~hwnas.spaces.blocks.FBNET_BLOCKS`):
``9**22`` (about 1e21) architectures.

``skip`` meaning: identity where the layer keeps its shape; at the first layer
of stages 1, 2, 3, 5 and 6 (stride 2 or a channel change) it is a 1x1 conv + BN
projection, as in FBNet's released builder. The reference models only use skip
where it is the identity (e.g. FBNet-A layer 0, 16 -> 16 at stride 1).

Width multiplier: every channel count (stem, stages, head) becomes
``make_divisible(c * width, 8)``; at ``width == 1`` nothing changes.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from hwnas._checks import as_name_list

from .base import SearchSpace, register_space
from .blocks import FBNET_BLOCKS

__all__ = [
    "FBNET_STAGES",
    "FBNET_SMALL_STAGE_STRIDES",
    "FBNETV2_BLOCKS",
    "FBNETV2_CHANNEL_MULTIPLIERS",
    "FBNETV2_RESOLUTIONS",
    "MOBILENET_V2_STAGES",
    "fbnet_space",
    "fbnet_small_space",
    "fbnetv2_space",
    "mobilenet_v2_space",
]

#: (out_channels, layers, first_stride) of the searchable stages, FBNet Table 1.
FBNET_STAGES: tuple[tuple[int, int, int], ...] = (
    (16, 1, 1),
    (24, 4, 2),
    (32, 4, 2),
    (64, 4, 2),
    (112, 4, 1),
    (184, 4, 2),
    (352, 1, 1),
)

#: First-layer strides of the 7 stages in ``fbnet_small``: only stages 2, 3 and 5
#: down-sample (and the stem keeps stride 1), so 32x32 -> 4x4 and 28x28 -> 4x4
#: before the head, an 8x total reduction instead of ImageNet's 32x.
FBNET_SMALL_STAGE_STRIDES: tuple[int, ...] = (1, 1, 2, 2, 1, 2, 1)


def _options(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Non-default options, recorded in architectures so the space can be rebuilt."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in given.items() if v != defaults.get(k)}


def _fbnet_like(
    name: str,
    *,
    resolution: int,
    width: float,
    in_channels: int,
    num_classes: int,
    head_channels: int,
    stem_stride: int,
    stage_strides: Sequence[int],
    choices: Sequence[str],
    dropout: float,
    channel_choices: Sequence[Sequence[int]] | None = None,
    resolution_choices: Sequence[int] | None = None,
    description: str,
    options: dict[str, Any],
) -> SearchSpace:
    if len(stage_strides) != len(FBNET_STAGES):
        raise ValueError(f"stage_strides needs {len(FBNET_STAGES)} entries (one per stage), got {list(stage_strides)}")
    stages = []
    for i, ((c_out, n, _), stride) in enumerate(zip(FBNET_STAGES, stage_strides)):
        stage: dict[str, Any] = {"out_channels": c_out, "layers": n, "first_stride": int(stride), "choices": as_name_list("choices", choices)}
        if channel_choices is not None:
            stage["channel_choices"] = list(channel_choices[i])
        stages.append(stage)
    return SearchSpace(
        name,
        stages,
        version=1,
        resolution=resolution,
        in_channels=in_channels,
        num_classes=num_classes,
        width=width,
        stem={"out_channels": 16, "kernel": 3, "stride": stem_stride, "activation": "relu"},
        head={"out_channels": head_channels, "activation": "relu", "shrink_with_width": True, "dropout": dropout},
        resolution_choices=resolution_choices,
        description=description,
        options=options,
    )


@register_space("fbnet")
def fbnet_space(
    resolution: int = 224,
    width: float = 1.0,
    in_channels: int = 3,
    num_classes: int = 1000,
    head_channels: int = 1984,
    stem_stride: int = 2,
    stage_strides: Sequence[int] = tuple(s for _, _, s in FBNET_STAGES),
    choices: Sequence[str] = FBNET_BLOCKS,
    dropout: float = 0.0,
) -> SearchSpace:
    """The FBNet space: Table 1 macro-architecture, 22 layers x 9 blocks.

    Args:
        resolution: Input side length (FBNet-96-0.35 uses 96).
        width: Width multiplier (channels rounded to multiples of 8).
        in_channels: Image channels.
        num_classes: Classifier outputs.
        head_channels: Channels of the head's 1x1 conv (1984; FBNet-A: 1504).
        stem_stride: Stride of the stem conv.
        stage_strides: First-layer stride of each of the 7 stages.
        choices: Candidate blocks of every layer.
        dropout: Dropout before the classifier.
    """
    defaults = dict(in_channels=3, num_classes=1000, head_channels=1984, stem_stride=2,
                    stage_strides=[s for _, _, s in FBNET_STAGES], choices=list(FBNET_BLOCKS), dropout=0.0)
    given = dict(in_channels=in_channels, num_classes=num_classes, head_channels=head_channels, stem_stride=stem_stride,
                 stage_strides=list(stage_strides), choices=as_name_list("choices", choices), dropout=dropout)
    return _fbnet_like(
        "fbnet", resolution=resolution, width=width, in_channels=in_channels, num_classes=num_classes,
        head_channels=head_channels, stem_stride=stem_stride, stage_strides=stage_strides, choices=choices,
        dropout=dropout, description="FBNet (Wu et al. 2019) Table 1: 22 searchable layers x 9 candidate blocks",
        options=_options(defaults, given),
    )


@register_space("fbnet_small")
def fbnet_small_space(
    resolution: int = 32,
    width: float = 1.0,
    in_channels: int = 3,
    num_classes: int = 10,
    head_channels: int = 1984,
    choices: Sequence[str] = FBNET_BLOCKS,
    dropout: float = 0.0,
) -> SearchSpace:
    """FBNet for 28x28 / 32x32 images (MNIST, CIFAR, digits).

    Same stages, channels and candidates as ``fbnet``, but the stem has stride 1
    and only stages 2, 3 and 5 down-sample (:data:`FBNET_SMALL_STAGE_STRIDES`):
    32x32 -> 32 -> 16 -> 8 -> 4 and 28x28 -> 28 -> 14 -> 7 -> 4 at the head.
    Stage 1 therefore keeps its shape's stride at 1 and its first layer only
    changes channels (16 -> 24), where ``skip`` is a 1x1 projection.
    """
    defaults = dict(in_channels=3, num_classes=10, head_channels=1984, choices=list(FBNET_BLOCKS), dropout=0.0)
    given = dict(in_channels=in_channels, num_classes=num_classes, head_channels=head_channels,
                 choices=as_name_list("choices", choices), dropout=dropout)
    return _fbnet_like(
        "fbnet_small", resolution=resolution, width=width, in_channels=in_channels, num_classes=num_classes,
        head_channels=head_channels, stem_stride=1, stage_strides=FBNET_SMALL_STAGE_STRIDES, choices=choices,
        dropout=dropout, description="FBNet macro-architecture for 28x28/32x32 inputs: stem stride 1, stages 2, 3, 5 stride 2",
        options=_options(defaults, given),
    )


#: FBNetV2-style block choices: kernel {3, 5} x expansion {1..6}, plus skip.
FBNETV2_BLOCKS: tuple[str, ...] = tuple(f"k{k}_e{e}" for k in (3, 5) for e in range(1, 7)) + ("skip",)
#: Per-layer output-width options, as multiples of the stage's nominal width.
FBNETV2_CHANNEL_MULTIPLIERS: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25)
#: Input-resolution options.
FBNETV2_RESOLUTIONS: tuple[int, ...] = (160, 192, 224, 256)


@register_space("fbnetv2")
def fbnetv2_space(
    resolution: int = 224,
    width: float = 1.0,
    in_channels: int = 3,
    num_classes: int = 1000,
    head_channels: int = 1984,
    choices: Sequence[str] = FBNETV2_BLOCKS,
    channel_multipliers: Sequence[float] = FBNETV2_CHANNEL_MULTIPLIERS,
    resolution_choices: Sequence[int] = FBNETV2_RESOLUTIONS,
    dropout: float = 0.0,
) -> SearchSpace:
    """FBNetV2-style space: FBNet's macro-architecture plus per-layer channel
    widths, expansion choices and input-resolution choices.

    Every layer picks a block (kernel 3/5, expansion 1-6, or skip) and an output
    width among ``make_divisible(c_stage * m, 8)`` for ``m`` in
    ``channel_multipliers`` (then scaled by ``width``); the architecture picks an
    input resolution from ``resolution_choices``. Chosen widths are stored in
    ``arch.extras["channels"]``. A residual add is only made where a layer's
    input and output widths agree; ``skip`` between different widths is a 1x1
    projection. This is a documented FBNetV2-like space, not a transcription of
    the FBNetV2 paper's exact ranges.
    """
    from .primitives import make_divisible

    defaults = dict(in_channels=3, num_classes=1000, head_channels=1984, choices=list(FBNETV2_BLOCKS),
                    channel_multipliers=list(FBNETV2_CHANNEL_MULTIPLIERS), resolution_choices=list(FBNETV2_RESOLUTIONS), dropout=0.0)
    given = dict(in_channels=in_channels, num_classes=num_classes, head_channels=head_channels, choices=as_name_list("choices", choices),
                 channel_multipliers=list(channel_multipliers), resolution_choices=list(resolution_choices), dropout=dropout)
    if isinstance(channel_multipliers, (str, bytes)) or not all(
            isinstance(m, (int, float)) and not isinstance(m, bool) and math.isfinite(m) and m > 0
            for m in channel_multipliers):
        # make_divisible would turn 0 into 8 channels, and NaN fails deep inside it.
        raise ValueError(f"channel_multipliers must be positive finite numbers, got {channel_multipliers!r}")
    channel_choices = [sorted({make_divisible(c * m, 8) for m in channel_multipliers}) for c, _, _ in FBNET_STAGES]
    return _fbnet_like(
        "fbnetv2", resolution=resolution, width=width, in_channels=in_channels, num_classes=num_classes,
        head_channels=head_channels, stem_stride=2, stage_strides=[s for _, _, s in FBNET_STAGES], choices=choices,
        dropout=dropout, channel_choices=channel_choices, resolution_choices=resolution_choices,
        description="FBNetV2-style: FBNet macro-architecture + per-layer width, expansion and input-resolution choices",
        options=_options(defaults, given),
    )


#: MobileNetV2 (t, c, n, s) stages, Sandler et al. 2018.
MOBILENET_V2_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

#: ProxylessNAS-style choices on the MobileNetV2 backbone.
MOBILENET_V2_CHOICES: tuple[str, ...] = ("mb_k3_e3", "mb_k3_e6", "mb_k5_e3", "mb_k5_e6", "mb_k7_e3", "mb_k7_e6", "skip")


@register_space("mobilenet_v2")
def mobilenet_v2_space(
    resolution: int = 224,
    width: float = 1.0,
    in_channels: int = 3,
    num_classes: int = 1000,
    choices: Sequence[str] = MOBILENET_V2_CHOICES,
    dropout: float = 0.2,
) -> SearchSpace:
    """MobileNetV2 backbone with ProxylessNAS-style choices.

    Stem conv3x3 32 stride 2 (ReLU6), the seven (t, c, n, s) stages of
    :data:`MOBILENET_V2_STAGES`, head conv1x1 1280 (ReLU6; not shrunk for
    width < 1, MobileNetV2's rule), pool, dropout, fc. Layer 0 is fixed to
    ``mb_k3_e1`` (t = 1, no expansion conv); other layers choose among
    ``choices``. MobileNetV2-1.0 itself is ``mb_k3_e1`` then ``mb_k3_e6`` everywhere.
    """
    defaults = dict(in_channels=3, num_classes=1000, choices=list(MOBILENET_V2_CHOICES), dropout=0.2)
    given = dict(in_channels=in_channels, num_classes=num_classes, choices=as_name_list("choices", choices), dropout=dropout)
    stages = []
    for i, (_, c, n, s) in enumerate(MOBILENET_V2_STAGES):
        if i == 0:
            stages.append({"out_channels": c, "layers": n, "first_stride": s, "choices": ["mb_k3_e1"]})
        else:
            stages.append({"out_channels": c, "layers": n, "first_stride": s, "choices": as_name_list("choices", choices)})
    return SearchSpace(
        "mobilenet_v2",
        stages,
        version=1,
        resolution=resolution,
        in_channels=in_channels,
        num_classes=num_classes,
        width=width,
        stem={"out_channels": 32, "kernel": 3, "stride": 2, "activation": "relu6"},
        head={"out_channels": 1280, "activation": "relu6", "shrink_with_width": False, "dropout": dropout},
        description="MobileNetV2 backbone (Sandler et al. 2018) with ProxylessNAS-style MBConv choices",
        options=_options(defaults, given),
    )
