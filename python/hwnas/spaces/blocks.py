"""Block library: the candidate operators a searchable layer can choose from.

Every block is built from its compact name and the layer's shape::

    build_block("k5_e6", c_in=32, c_out=64, stride=2)

Name grammar (``K`` kernel size, odd; ``E`` expansion, positive integer):

============================  ==============================================================
``kK_eE`` / ``kK_eE_gG``      FBNet inverted residual: 1x1 conv (groups G) -> [shuffle] ->
                              KxK depthwise -> 1x1 conv (groups G); ReLU; the first 1x1 conv
                              is present even for E=1 (FBNet, ``fbnet.json``).
``skip``                      identity, or a 1x1 conv + BN projection where the layer changes
                              shape (see :class:`~hwnas.spaces.primitives.Skip`).
``mb_kK_eE`` [``_se``]        MobileNetV2 inverted residual (ReLU6, no expansion conv when
                              E=1), optionally with squeeze-and-excitation on the expanded
                              channels (HURRICANE ``MB_k_e`` / ``MB_k_e_SE``).
``sep_kK`` [``_se``]          DARTS separable conv applied twice (HURRICANE ``SEP_k``).
``choice_kK`` [``_se``]       ShuffleNetV2 unit with a KxK depthwise conv (SPOS ``Choice_k``).
``choicex`` [``_se``]         ShuffleNetV2 unit with three 3x3 separable convs (SPOS ``ChoiceX``).
============================  ==============================================================

All blocks keep 'same' padding: output spatial size is ``floor((H - 1) / stride) + 1``.
Blocks add a residual connection when ``stride == 1 and c_in == c_out``, except the
ShuffleNetV2 units whose identity path is the untouched half of the channels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from .primitives import ChannelShuffle, ConvBNAct, Skip, SqueezeExcite

__all__ = [
    "BlockSpec",
    "FBNetBlock",
    "InvertedResidual",
    "SepConvBlock",
    "ShuffleUnit",
    "Skip",
    "BLOCK_REGISTRY",
    "FBNET_BLOCKS",
    "HURRICANE_BLOCKS",
    "SPOS_BLOCKS",
    "MOBILENET_V2_BLOCK",
    "parse_block_name",
    "build_block",
    "register_block",
    "list_blocks",
]

BlockConstructor = Callable[[int, int, int], nn.Module]


# --------------------------------------------------------------------------- modules


class FBNetBlock(nn.Module):
    """FBNet candidate block ``kK_eE[_gG]``.

    1x1 conv ``c_in -> E*c_in`` (groups G) + BN + ReLU, channel shuffle if G > 1,
    KxK depthwise conv (stride) + BN + ReLU, 1x1 conv ``E*c_in -> c_out`` (groups G)
    + BN, residual add when ``stride == 1 and c_in == c_out``.

    Shapes:
        ``(N, c_in, H, W)`` -> ``(N, c_out, H', W')`` with ``H' = (H - 1) // stride + 1``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, kernel: int, expansion: int, groups: int = 1) -> None:
        super().__init__()
        mid = c_in * expansion
        for what, channels in (("c_in", c_in), ("c_out", c_out)):
            if channels % groups:
                raise ValueError(f"FBNet block with groups={groups} needs {what} divisible by {groups}, got {channels}")
        self.use_residual = stride == 1 and c_in == c_out
        self.expand = ConvBNAct(c_in, mid, 1, groups=groups, act="relu")
        self.shuffle = ChannelShuffle(groups) if groups > 1 else nn.Identity()
        self.depthwise = ConvBNAct(mid, mid, kernel, stride=stride, groups=mid, act="relu")
        self.project = ConvBNAct(mid, c_out, 1, groups=groups, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.shuffle(self.expand(x))))
        if self.use_residual:
            out = out + x
        return out


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual ``mb_kK_eE[_se]``.

    [1x1 conv ``c_in -> E*c_in`` + BN + ReLU6, only if E != 1], KxK depthwise
    (stride) + BN + ReLU6, [squeeze-and-excitation on ``E*c_in`` channels],
    1x1 conv ``-> c_out`` + BN, residual add when ``stride == 1 and c_in == c_out``.

    Shapes:
        ``(N, c_in, H, W)`` -> ``(N, c_out, (H - 1) // stride + 1, (W - 1) // stride + 1)``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, kernel: int, expansion: int, se: bool = False) -> None:
        super().__init__()
        mid = c_in * expansion
        self.use_residual = stride == 1 and c_in == c_out
        self.expand = ConvBNAct(c_in, mid, 1, act="relu6") if expansion != 1 else nn.Identity()
        self.depthwise = ConvBNAct(mid, mid, kernel, stride=stride, groups=mid, act="relu6")
        self.se = SqueezeExcite(mid) if se else nn.Identity()
        self.project = ConvBNAct(mid, c_out, 1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        if self.use_residual:
            out = out + x
        return out


class _SepConv(nn.Sequential):
    """DARTS separable conv: ReLU -> KxK depthwise (stride) -> 1x1 conv -> BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__(
            # Not in-place: the block input is still needed for the residual add.
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride=stride, padding=kernel // 2, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )


class SepConvBlock(nn.Module):
    """HURRICANE ``SEP_k``: a DARTS separable conv applied twice, ``sep_kK[_se]``.

    SepConv(``c_in -> c_in``, stride) then SepConv(``c_in -> c_out``, stride 1),
    optional squeeze-and-excitation on the output, residual add when the shape
    is kept (as for the other single-path candidates).

    Shapes:
        ``(N, c_in, H, W)`` -> ``(N, c_out, (H - 1) // stride + 1, (W - 1) // stride + 1)``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, kernel: int, se: bool = False) -> None:
        super().__init__()
        self.use_residual = stride == 1 and c_in == c_out
        self.first = _SepConv(c_in, c_in, kernel, stride)
        self.second = _SepConv(c_in, c_out, kernel, 1)
        self.se = SqueezeExcite(c_out) if se else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.se(self.second(self.first(x)))
        if self.use_residual:
            out = out + x
        return out


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit, SPOS ``Choice_k`` (``choice_kK``) and ``ChoiceX`` (``choicex``).

    When the layer keeps its shape (``stride == 1 and c_in == c_out``) the input
    is split in two halves: one passes untouched, the other goes through the
    main branch. Otherwise (stride 2 or a channel change) there is no split, as
    in ShuffleNetV2's down-sampling unit: a projection branch (KxK depthwise +
    BN, 1x1 conv + BN + ReLU) keeps ``c_in`` channels and the main branch makes
    the remaining ``c_out - c_in``. The halves are concatenated and shuffled.

    Main branch (``mid = c_out // 2`` as in SPOS):

    * ``choice_kK``: 1x1 conv -> mid + BN + ReLU, KxK depthwise (stride) + BN,
      1x1 conv -> out + BN + ReLU.
    * ``choicex``: three times [3x3 depthwise + BN, 1x1 conv + BN + ReLU], the
      first depthwise carrying the stride (Xception-like, as in SPOS).

    ``se=True`` adds squeeze-and-excitation on the main branch output.

    Shapes:
        ``(N, c_in, H, W)`` -> ``(N, c_out, (H - 1) // stride + 1, (W - 1) // stride + 1)``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, kernel: int = 3, xception: bool = False, se: bool = False) -> None:
        super().__init__()
        self.split = stride == 1 and c_in == c_out
        if self.split:
            if c_in % 2:
                raise ValueError(f"ShuffleNetV2 unit needs an even channel count to split, got c_in={c_in}")
            branch_in = c_in // 2
            branch_out = c_out - branch_in
            self.proj = nn.Identity()
        else:
            if c_out <= c_in:
                raise ValueError(
                    f"ShuffleNetV2 unit without split needs c_out > c_in (projection keeps c_in channels), "
                    f"got c_in={c_in}, c_out={c_out}"
                )
            branch_in = c_in
            branch_out = c_out - c_in
            self.proj = nn.Sequential(
                ConvBNAct(c_in, c_in, kernel, stride=stride, groups=c_in, act=None),
                ConvBNAct(c_in, c_in, 1, act="relu"),
            )
        mid = max(c_out // 2, 1)
        if xception:
            self.main = nn.Sequential(
                ConvBNAct(branch_in, branch_in, 3, stride=stride, groups=branch_in, act=None),
                ConvBNAct(branch_in, mid, 1, act="relu"),
                ConvBNAct(mid, mid, 3, groups=mid, act=None),
                ConvBNAct(mid, mid, 1, act="relu"),
                ConvBNAct(mid, mid, 3, groups=mid, act=None),
                ConvBNAct(mid, branch_out, 1, act="relu"),
            )
        else:
            self.main = nn.Sequential(
                ConvBNAct(branch_in, mid, 1, act="relu"),
                ConvBNAct(mid, mid, kernel, stride=stride, groups=mid, act=None),
                ConvBNAct(mid, branch_out, 1, act="relu"),
            )
        self.se = SqueezeExcite(branch_out) if se else nn.Identity()
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.split:
            halves = x.chunk(2, dim=1)
            kept = halves[0]
            branch_input = halves[1]
        else:
            kept = self.proj(x)
            branch_input = x
        out = torch.cat([kept, self.se(self.main(branch_input))], dim=1)
        return self.shuffle(out)


# --------------------------------------------------------------------------- names


@dataclass(frozen=True)
class BlockSpec:
    """What a block name means.

    Attributes:
        name: The canonical name, e.g. ``"k3_e1_g2"``.
        family: ``"fbnet"``, ``"mb"``, ``"sep"``, ``"choice"``, ``"choicex"``, ``"skip"`` or ``"custom"``.
        kernel: Depthwise kernel size (``None`` for ``skip``/custom).
        expansion: Channel expansion of the block (``None`` where not defined).
        groups: Groups of the 1x1 convs (FBNet ``_g2`` blocks have 2).
        se: Whether the block has squeeze-and-excitation.
    """

    name: str
    family: str
    kernel: Optional[int] = None
    expansion: Optional[int] = None
    groups: int = 1
    se: bool = False

    @property
    def is_skip(self) -> bool:
        return self.family == "skip"


_NAME_PATTERNS: list[tuple[str, "re.Pattern[str]"]] = [
    ("skip", re.compile(r"^skip$")),
    ("fbnet", re.compile(r"^k(?P<k>\d+)_e(?P<e>\d+)(?:_g(?P<g>\d+))?$")),
    ("mb", re.compile(r"^mb_k(?P<k>\d+)_e(?P<e>\d+)(?P<se>_se)?$")),
    ("sep", re.compile(r"^sep_k(?P<k>\d+)(?P<se>_se)?$")),
    ("choice", re.compile(r"^choice_k(?P<k>\d+)(?P<se>_se)?$")),
    ("choicex", re.compile(r"^choicex(?P<se>_se)?$")),
]

_CUSTOM_SPECS: dict[str, BlockSpec] = {}


def parse_block_name(name: str) -> BlockSpec:
    """Parses a compact block name into a :class:`BlockSpec`.

    Args:
        name: e.g. ``"k5_e6"``, ``"k3_e1_g2"``, ``"mb_k7_e3_se"``, ``"choice_k5"``, ``"skip"``.

    Raises:
        ValueError: The name matches no known pattern or registered block, or
            has an even/zero kernel or zero expansion.
    """
    if not isinstance(name, str):
        raise ValueError(f"block name must be a string, got {name!r}")
    if name in _CUSTOM_SPECS:
        return _CUSTOM_SPECS[name]
    for family, pattern in _NAME_PATTERNS:
        match = pattern.fullmatch(name)  # match() with "$" took "k3_e1\n"
        if match is None:
            continue
        groups = match.groupdict()
        kernel = int(groups["k"]) if groups.get("k") else (3 if family == "choicex" else None)
        expansion = int(groups["e"]) if groups.get("e") else None
        group_count = int(groups["g"]) if groups.get("g") else 1
        if kernel is not None and (kernel < 1 or kernel % 2 == 0):
            raise ValueError(f"block {name!r}: kernel size must be odd and positive, got {kernel}")
        if expansion is not None and expansion < 1:
            raise ValueError(f"block {name!r}: expansion must be >= 1, got {expansion}")
        if group_count < 1:
            raise ValueError(f"block {name!r}: groups must be >= 1, got {group_count}")
        return BlockSpec(name, family, kernel, expansion, group_count, bool(groups.get("se")))
    raise ValueError(
        f"unknown block name {name!r}; expected one of the patterns kK_eE[_gG], skip, mb_kK_eE[_se], "
        f"sep_kK[_se], choice_kK[_se], choicex[_se], or a name registered with register_block "
        f"(see hwnas.spaces.blocks.list_blocks())"
    )


def _construct(spec: BlockSpec, c_in: int, c_out: int, stride: int) -> nn.Module:
    """Builds the module for a parsed built-in name."""
    if spec.family == "skip":
        return Skip(c_in, c_out, stride)
    if spec.family == "fbnet":
        return FBNetBlock(c_in, c_out, stride, spec.kernel, spec.expansion, spec.groups)
    if spec.family == "mb":
        return InvertedResidual(c_in, c_out, stride, spec.kernel, spec.expansion, se=spec.se)
    if spec.family == "sep":
        return SepConvBlock(c_in, c_out, stride, spec.kernel, se=spec.se)
    if spec.family == "choice":
        return ShuffleUnit(c_in, c_out, stride, spec.kernel, xception=False, se=spec.se)
    if spec.family == "choicex":
        return ShuffleUnit(c_in, c_out, stride, 3, xception=True, se=spec.se)
    raise ValueError(f"block {spec.name!r} of family {spec.family!r} has no constructor")


def _builtin(name: str) -> BlockConstructor:
    spec = parse_block_name(name)
    return lambda c_in, c_out, stride: _construct(spec, c_in, c_out, stride)


# FBNet's candidates, in fbnet.json / HW-NAS-Bench order (index 0..8).
FBNET_BLOCKS: tuple[str, ...] = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")

# HURRICANE's 32 operators: SEP 3 + SEP_SE 3 + MB 9 + MB_SE 9 + Choice 3 + Choice_SE 3 + ChoiceX 1 + ChoiceX_SE 1.
HURRICANE_BLOCKS: tuple[str, ...] = tuple(
    [f"sep_k{k}{se}" for se in ("", "_se") for k in (3, 5, 7)]
    + [f"mb_k{k}_e{e}{se}" for se in ("", "_se") for k in (3, 5, 7) for e in (1, 3, 6)]
    + [f"choice_k{k}{se}" for se in ("", "_se") for k in (3, 5, 7)]
    + ["choicex", "choicex_se"]
)

# The original SPOS block search space (4 ShuffleNetV2 variants).
SPOS_BLOCKS: tuple[str, ...] = ("choice_k3", "choice_k5", "choice_k7", "choicex")

MOBILENET_V2_BLOCK = "mb_k3_e6"

#: Named blocks available out of the box; parameterised names outside this
#: table (e.g. ``k7_e4``) are still built by :func:`build_block`.
BLOCK_REGISTRY: dict[str, BlockConstructor] = {name: _builtin(name) for name in FBNET_BLOCKS + HURRICANE_BLOCKS}


_REGISTRABLE_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def register_block(name: str, constructor: BlockConstructor, spec: BlockSpec | None = None, overwrite: bool = False) -> None:
    """Adds a named block.

    Args:
        name: Name to register; must not collide with a built-in pattern.
        constructor: ``constructor(c_in, c_out, stride) -> nn.Module``.
        spec: Optional description (kernel/expansion are used by figures);
            defaults to family ``"custom"``.
        overwrite: Allow replacing an existing registration.
    """
    if not isinstance(name, str) or not _REGISTRABLE_NAME.fullmatch(name):
        # Names are written in the compact architecture string ("a b | c") and in table
        # keys ("block|c_in|..."): a space, a bar or an empty name would not read back.
        raise ValueError(f"block name must be letters, digits, '_', '-' or '.', got {name!r}")
    if name in BLOCK_REGISTRY and not overwrite:
        raise ValueError(f"block {name!r} is already registered; pass overwrite=True to replace it")
    if not overwrite and any(p.fullmatch(name) for _, p in _NAME_PATTERNS):
        raise ValueError(f"block name {name!r} collides with a built-in name pattern")
    BLOCK_REGISTRY[name] = constructor
    _CUSTOM_SPECS[name] = spec if spec is not None else BlockSpec(name, "custom")


def list_blocks(family: str | None = None) -> list[str]:
    """Names in :data:`BLOCK_REGISTRY`, optionally only those of one family."""
    names = list(BLOCK_REGISTRY)
    if family is not None:
        names = [n for n in names if parse_block_name(n).family == family]
    return names


def build_block(name: str, c_in: int, c_out: int, stride: int) -> nn.Module:
    """Builds the block ``name`` for a layer.

    Args:
        name: Block name (see module docstring).
        c_in: Input channels.
        c_out: Output channels.
        stride: 1 or 2 (any positive integer is accepted).

    Returns:
        A module mapping ``(N, c_in, H, W)`` to ``(N, c_out, (H-1)//stride+1, (W-1)//stride+1)``.

    Raises:
        ValueError: Unknown name or impossible shape for this block.
    """
    for what, value in (("c_in", c_in), ("c_out", c_out), ("stride", stride)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"block {name!r}: {what} must be a positive integer, got {value!r}")
    if name in BLOCK_REGISTRY:
        return BLOCK_REGISTRY[name](c_in, c_out, stride)
    spec = parse_block_name(name)
    return _construct(spec, c_in, c_out, stride)
