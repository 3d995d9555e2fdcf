"""Search-space definition shared by every space in ``hwnas.spaces``.

A search space is a fixed stem, a sequence of *stages* of searchable layers
and a fixed head. It is plain data, the same schema for built-in spaces and
for user-defined spaces loaded from JSON/YAML (``format``
``hwnas.search_space``, ``version`` 1)::

    {"format": "hwnas.search_space", "version": 1,
     "name": "tiny", "space_version": 1, "description": "...",
     "resolution": 32, "resolution_choices": null,
     "in_channels": 3, "num_classes": 10, "width": 1.0,
     "stem":  {"out_channels": 16, "kernel": 3, "stride": 1, "activation": "relu"},
     "stages": [
        {"out_channels": 16, "layers": 2, "first_stride": 1, "choices": ["k3_e1", "k5_e3", "skip"]},
        {"out_channels": 32, "layers": 2, "first_stride": 2,
         "layer_choices": [["k3_e6", "k5_e6"], ["k3_e1", "skip"]],
         "channel_choices": [16, 24, 32]}],
     "head":  {"out_channels": 256, "activation": "relu", "shrink_with_width": true, "dropout": 0.0}}

Conventions:

* Channel counts in the schema are *before* the width multiplier; every one
  (stem, stages, head) is scaled with ``make_divisible(c * width, 8)`` unless
  ``width == 1`` (then kept exactly). ``head.shrink_with_width: false`` keeps the
  head at least its nominal size (MobileNetV2's rule for width < 1).
* The first layer of a stage has the stage's ``first_stride``, the others stride 1.
* ``skip`` is the identity where a layer keeps its shape and a 1x1 conv + BN
  projection where it changes shape (stride 2 or a channel change).
* ``channel_choices`` (FBNetV2-style) lets each layer of the stage pick its
  output width; the chosen widths of an architecture live in
  ``arch.extras["channels"]`` (already scaled by the width multiplier).
* ``resolution_choices`` lets an architecture pick its input resolution.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
import random
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

from torch import nn

from hwnas._checks import as_name_list
from hwnas._io import atomic_write_text, check_format, dumps, read_text
from .architecture import Architecture, parse_compact
from .blocks import build_block, parse_block_name
from .builder import ClassifierHead, SpaceNet
from .primitives import ConvBNAct, make_activation, scale_channels

__all__ = [
    "LayerSpec",
    "SearchSpace",
    "conv_output_size",
    "register_space",
    "get_space",
    "list_spaces",
    "load_space",
    "space_for_architecture",
    "SPACE_FORMAT",
    "SPACE_FORMAT_VERSION",
]

SPACE_FORMAT = "hwnas.search_space"
SPACE_FORMAT_VERSION = 1


def conv_output_size(size: int, stride: int) -> int:
    """Spatial output size of a 'same'-padded odd-kernel conv: ``floor((size - 1) / stride) + 1``."""
    return (size - 1) // stride + 1


@dataclass
class LayerSpec:
    """One searchable layer.

    Attributes:
        index: Position among the searchable layers (0-based).
        stage: Stage the layer belongs to (0-based).
        c_in: Input channels (for channel-searchable spaces: the widest case).
        c_out: Output channels (for channel-searchable spaces: the widest choice).
        stride: 1 or 2.
        in_hw: ``(height, width)`` of the input feature map at the space's resolution.
        choices: Candidate block names.
        channel_choices: Candidate output widths (scaled), or ``None`` when fixed.
    """

    index: int
    stage: int
    c_in: int
    c_out: int
    stride: int
    in_hw: tuple[int, int]
    choices: list[str]
    channel_choices: Optional[list[int]] = None

    @property
    def out_hw(self) -> tuple[int, int]:
        return (conv_output_size(self.in_hw[0], self.stride), conv_output_size(self.in_hw[1], self.stride))

    @property
    def changes_shape(self) -> bool:
        """True where ``skip`` is a projection rather than the identity."""
        return self.stride != 1 or self.c_in != self.c_out


_STEM_KEYS = {"out_channels", "kernel", "stride", "activation"}
_HEAD_KEYS = {"out_channels", "activation", "shrink_with_width", "dropout"}
_STAGE_KEYS = {"out_channels", "layers", "first_stride", "choices", "layer_choices", "channel_choices"}
_TOP_KEYS = {
    "format", "version", "name", "space_version", "description", "resolution", "resolution_choices",
    "in_channels", "num_classes", "width", "stem", "stages", "head",
}


def _check_keys(where: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _positive_int(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where} must be a positive integer, got {value!r}")
    return value


class SearchSpace:
    """A stem, stages of searchable layers with candidate blocks, and a head.

    Built-in spaces are made by factories registered with :func:`register_space`
    (``get_space("fbnet", resolution=96, width=0.35)``); user spaces come from
    :func:`load_space` or :meth:`from_dict`.

    Args:
        name: Space name (stored in every architecture).
        stages: Stage dicts (see module docstring).
        version: Version of this space definition.
        resolution: Default input resolution.
        in_channels: Input image channels.
        num_classes: Classifier outputs.
        width: Width multiplier.
        stem: Stem dict.
        head: Head dict.
        resolution_choices: Allowed resolutions (``None``: only ``resolution``).
        description: Free text.
        options: Keyword arguments that rebuild this space with
            ``get_space(name, resolution=..., width=..., **options)``.

    Attributes:
        layers: :class:`LayerSpec` per searchable layer.
    """

    def __init__(
        self,
        name: str,
        stages: Sequence[Mapping[str, Any]],
        *,
        version: int = 1,
        resolution: int = 224,
        in_channels: int = 3,
        num_classes: int = 1000,
        width: float = 1.0,
        stem: Mapping[str, Any] | None = None,
        head: Mapping[str, Any] | None = None,
        resolution_choices: Sequence[int] | None = None,
        description: str = "",
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = str(name)
        self.version = _positive_int("space version", version)
        self.resolution = _positive_int("resolution", resolution)
        self.in_channels = _positive_int("in_channels", in_channels)
        self.num_classes = _positive_int("num_classes", num_classes)
        if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
            raise ValueError(f"width multiplier must be a positive number, got {width!r}")
        self.width = float(width)
        self.description = description
        self.options = dict(options or {})
        self.resolution_choices = None
        if resolution_choices is not None:
            self.resolution_choices = [_positive_int("resolution choice", r) for r in resolution_choices]
            if self.resolution not in self.resolution_choices:
                raise ValueError(f"resolution {self.resolution} is not among resolution_choices {self.resolution_choices}")

        for part, value in (("stem", stem), ("head", head)):
            if value is not None and not isinstance(value, Mapping):
                raise ValueError(f"space {self.name!r}: {part} must be a dict, got {value!r}")
        stem = dict(stem or {"out_channels": 16, "kernel": 3, "stride": 2, "activation": "relu"})
        _check_keys(f"space {self.name!r} stem", stem, _STEM_KEYS)
        self.stem_spec = {
            "out_channels": _positive_int("stem out_channels", stem.get("out_channels", 16)),
            "kernel": _positive_int("stem kernel", stem.get("kernel", 3)),
            "stride": _positive_int("stem stride", stem.get("stride", 2)),
            "activation": _activation_name(f"space {self.name!r} stem", stem.get("activation", "relu")),
        }
        if self.stem_spec["kernel"] % 2 == 0:
            # The stem pads by kernel // 2 ('same' size): an even kernel cannot be built.
            raise ValueError(f"space {self.name!r} stem kernel must be odd, got {self.stem_spec['kernel']}")
        head = dict(head or {})
        _check_keys(f"space {self.name!r} head", head, _HEAD_KEYS)
        head_channels = head.get("out_channels", 1984)
        if isinstance(head_channels, bool) or not isinstance(head_channels, int) or head_channels < 0:
            raise ValueError(f"head out_channels must be a non-negative integer, got {head_channels!r}")
        shrink = head.get("shrink_with_width", True)
        if not isinstance(shrink, bool):  # bool("false") would be True
            raise ValueError(f"head shrink_with_width must be true or false, got {shrink!r}")
        dropout = head.get("dropout", 0.0)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"head dropout must be a number in [0, 1), got {dropout!r}")
        self.head_spec = {
            "out_channels": head_channels,
            "activation": _activation_name(f"space {self.name!r} head", head.get("activation", "relu")),
            "shrink_with_width": shrink,
            "dropout": float(dropout),
        }
        if isinstance(stages, (str, bytes, Mapping)) or not isinstance(stages, Sequence):
            raise ValueError(f"space {self.name!r}: stages must be a list of stage dicts, got {stages!r}")
        if not stages:
            raise ValueError(f"space {self.name!r} has no stages")
        self.stage_specs = [self._normalise_stage(i, s) for i, s in enumerate(stages)]
        self.layers = self._make_layers()

    # ------------------------------------------------------------------ definition

    def _normalise_stage(self, index: int, stage: Mapping[str, Any]) -> dict[str, Any]:
        where = f"space {self.name!r} stage {index}"
        if not isinstance(stage, Mapping):
            raise ValueError(f"{where}: expected a dict, got {stage!r}")
        _check_keys(where, stage, _STAGE_KEYS)
        for key in ("out_channels", "layers"):
            if key not in stage:
                raise ValueError(f"{where}: missing {key!r}")
        out_channels = _positive_int(f"{where} out_channels", stage["out_channels"])
        num_layers = _positive_int(f"{where} layers", stage["layers"])
        first_stride = _positive_int(f"{where} first_stride", stage.get("first_stride", 1))
        if ("choices" in stage) == ("layer_choices" in stage):
            raise ValueError(f"{where}: give exactly one of 'choices' (all layers) or 'layer_choices' (per layer)")
        if "choices" in stage:
            layer_choices = [as_name_list(f"{where} choices", stage["choices"]) for _ in range(num_layers)]
        else:
            given = stage["layer_choices"]
            if isinstance(given, (str, bytes)) or not isinstance(given, Sequence):
                raise ValueError(f"{where}: layer_choices must be one list of block names per layer, got {given!r}")
            layer_choices = [as_name_list(f"{where} layer_choices[{j}]", c) for j, c in enumerate(given)]
            if len(layer_choices) != num_layers:
                raise ValueError(f"{where}: layer_choices has {len(layer_choices)} lists for {num_layers} layers")
        for j, names in enumerate(layer_choices):
            if not names:
                raise ValueError(f"{where} layer {j}: empty choice list")
            if len(set(names)) != len(names):
                raise ValueError(f"{where} layer {j}: duplicate choices in {names}")
            for block in names:
                try:
                    parse_block_name(block)
                except ValueError as exc:
                    raise ValueError(f"{where} layer {j}: {exc}") from None
        channel_choices = stage.get("channel_choices")
        if channel_choices is not None:
            channel_choices = [_positive_int(f"{where} channel choice", c) for c in channel_choices]
            if not channel_choices:
                raise ValueError(f"{where}: channel_choices is empty")
        return {
            "out_channels": out_channels,
            "layers": num_layers,
            "first_stride": first_stride,
            "layer_choices": layer_choices,
            "channel_choices": channel_choices,
        }

    def scale(self, channels: int) -> int:
        """Applies this space's width multiplier (see module docstring)."""
        return scale_channels(channels, self.width)

    @property
    def stem_channels(self) -> int:
        return self.scale(self.stem_spec["out_channels"])

    @property
    def head_channels(self) -> int:
        nominal = self.head_spec["out_channels"]
        if nominal == 0:
            return 0
        width = self.width if self.head_spec["shrink_with_width"] else max(self.width, 1.0)
        return scale_channels(nominal, width)

    @property
    def stage_lengths(self) -> list[int]:
        return [s["layers"] for s in self.stage_specs]

    def _stage_channel_options(self, stage: Mapping[str, Any]) -> Optional[list[int]]:
        if stage["channel_choices"] is None:
            return None
        return sorted({self.scale(c) for c in stage["channel_choices"]})

    def _make_layers(self, resolution: int | None = None, channels: Sequence[int] | None = None) -> list[LayerSpec]:
        size = conv_output_size(resolution or self.resolution, self.stem_spec["stride"])
        c_in = self.stem_channels
        layers: list[LayerSpec] = []
        for stage_index, stage in enumerate(self.stage_specs):
            options = self._stage_channel_options(stage)
            for j in range(stage["layers"]):
                index = len(layers)
                stride = stage["first_stride"] if j == 0 else 1
                if channels is not None:
                    c_out = int(channels[index])
                elif options is not None:
                    c_out = max(options)
                else:
                    c_out = self.scale(stage["out_channels"])
                layers.append(
                    LayerSpec(index, stage_index, c_in, c_out, stride, (size, size), list(stage["layer_choices"][j]), options)
                )
                size = conv_output_size(size, stride)
                c_in = c_out
        return layers

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        return (
            f"SearchSpace(name={self.name!r}, version={self.version}, layers={len(self.layers)}, "
            f"resolution={self.resolution}, width={self.width:g}, size={self.size():.3e})"
        )

    def size(self) -> int:
        """Number of distinct architectures (exact integer)."""
        total = 1
        for layer in self.layers:
            total *= len(layer.choices) * (len(layer.channel_choices) if layer.channel_choices else 1)
        if self.resolution_choices:
            total *= len(self.resolution_choices)
        return total

    def resolve_layers(self, arch: Architecture | None = None) -> list[LayerSpec]:
        """Layer specs with the concrete shapes of ``arch`` (its resolution and channel widths)."""
        if arch is None:
            return self.layers
        self.validate(arch)
        return self._make_layers(arch.resolution, arch.extras.get("channels"))

    def layer_input_shape(self, i: int, arch: Architecture | None = None) -> tuple[int, int, int]:
        """``(C, H, W)`` of the input of searchable layer ``i`` (for ``arch`` if given)."""
        if not -len(self.layers) <= i < len(self.layers):
            raise ValueError(f"layer index {i} out of range for space {self.name!r} with {len(self.layers)} layers")
        layer = self.resolve_layers(arch)[i]
        return (layer.c_in, layer.in_hw[0], layer.in_hw[1])

    # ------------------------------------------------------------------ architectures

    def validate(self, arch: Architecture) -> None:
        """Checks that ``arch`` belongs to this space.

        Raises:
            ValueError: Naming the offending field, or the layer index and bad choice.
        """
        if not isinstance(arch, Architecture):
            raise ValueError(f"expected an Architecture, got {type(arch).__name__}")
        if arch.space != self.name:
            raise ValueError(f"architecture is for space {arch.space!r}, this space is {self.name!r}")
        if arch.space_version != self.version:
            raise ValueError(
                f"architecture is for version {arch.space_version} of space {self.name!r}, this space is version {self.version}"
            )
        allowed_res = self.resolution_choices or [self.resolution]
        if arch.resolution not in allowed_res:
            raise ValueError(f"architecture resolution {arch.resolution} is not allowed by space {self.name!r} (allowed: {allowed_res})")
        if not math.isclose(arch.width, self.width, rel_tol=0, abs_tol=1e-12):
            raise ValueError(f"architecture width {arch.width:g} differs from the space's width multiplier {self.width:g}")
        if len(arch.choices) != len(self.layers):
            raise ValueError(
                f"architecture has {len(arch.choices)} choices but space {self.name!r} has {len(self.layers)} searchable layers"
            )
        for layer, choice in zip(self.layers, arch.choices):
            if choice not in layer.choices:
                raise ValueError(
                    f"layer {layer.index} (stage {layer.stage}): choice {choice!r} is not allowed; allowed: {layer.choices}"
                )
        channels = arch.extras.get("channels")
        has_channel_choices = any(layer.channel_choices for layer in self.layers)
        if channels is None and has_channel_choices:
            raise ValueError(f"space {self.name!r} searches channel widths: architecture needs extras['channels']")
        if channels is not None:
            if not has_channel_choices:
                raise ValueError(f"space {self.name!r} has fixed channel widths; remove extras['channels']")
            if len(channels) != len(self.layers):
                raise ValueError(f"extras['channels'] has {len(channels)} entries for {len(self.layers)} layers")
            for layer, c in zip(self.layers, channels):
                allowed = layer.channel_choices or [layer.c_out]
                if c not in allowed:
                    raise ValueError(f"layer {layer.index} (stage {layer.stage}): channel width {c!r} is not allowed; allowed: {allowed}")
        problem = self._options_difference(arch)
        if problem:
            raise ValueError(f"architecture was made for space {arch.space!r} with options {dict(arch.space_options)}, "
                             f"which give {problem}; this space has options {self.options}")
        # Blocks that cannot take the concrete shape (e.g. grouped convs on odd widths) fail here, not at build time.
        concrete = self._make_layers(arch.resolution, channels)
        for layer, choice in zip(concrete, arch.choices):
            spec = parse_block_name(choice)
            if spec.groups > 1 and (layer.c_in % spec.groups or layer.c_out % spec.groups):
                raise ValueError(
                    f"layer {layer.index}: block {choice!r} needs channels divisible by {spec.groups}, got {layer.c_in}->{layer.c_out}"
                )
            splits = layer.stride == 1 and layer.c_in == layer.c_out
            if spec.family in ("choice", "choicex") and (layer.c_out % 2 or (splits and layer.c_in % 2)):
                # ShuffleNetV2 units shuffle their output in two groups, and a unit that keeps
                # its shape splits its input in two halves.
                raise ValueError(f"layer {layer.index}: block {choice!r} needs an even output channel count "
                                 f"(and an even input when it keeps the shape), got {layer.c_in}->{layer.c_out}")
            if spec.family in ("choice", "choicex") and layer.changes_shape and layer.c_out <= layer.c_in:
                raise ValueError(f"layer {layer.index}: block {choice!r} cannot reduce channels {layer.c_in}->{layer.c_out}")

    def _options_difference(self, arch: Architecture) -> str | None:
        """What the architecture's ``space_options`` change in this space's shape (input
        channels, classes, head, per-layer candidates and widths), or ``None``.

        Why: a model built from this space would otherwise silently take this space's
        shape (3 input channels, 10 classes) for an architecture searched with others.
        """
        def normalized(options: Any) -> str:
            return json.dumps(dict(options), sort_keys=True, default=repr)

        theirs = normalized(arch.space_options)
        mine = normalized(self.options)
        if theirs == mine:
            return None  # the usual case, and the only one for user spaces (they record none)
        return _shape_difference(arch.space, self.name, self.version, arch.resolution, self.resolution, arch.width,
                                 self.width, theirs, mine)

    def make_arch(self, choices: Sequence[str] | str, *, resolution: int | None = None, channels: Sequence[int] | None = None) -> Architecture:
        """Makes (and validates) an architecture of this space.

        Args:
            choices: Block name per layer, or the compact string form
                (``"k3_e1 | k3_e6 skip ..."``; stage bars are optional but must
                match the space's stages when present).
            resolution: Input resolution (default: the space's).
            channels: Per-layer output widths for channel-searchable spaces.
        """
        if choices is None or not isinstance(choices, (str, Sequence)):
            raise ValueError(f"choices must be a compact architecture string or a list of block names, got {choices!r}")
        if isinstance(choices, str):
            names, lengths = parse_compact(choices)
            if len(lengths) > 1 and lengths != self.stage_lengths:
                raise ValueError(f"architecture string has stages of {lengths} layers; space {self.name!r} has {self.stage_lengths}")
            choices = names
        choices = as_name_list("choices", choices)
        if len(choices) != len(self.layers):
            raise ValueError(f"{len(choices)} choices given; space {self.name!r} has {len(self.layers)} searchable layers")
        extras: dict[str, Any] = {}
        if channels is not None:
            extras["channels"] = [int(c) for c in channels]
        arch = Architecture(
            space=self.name,
            space_version=self.version,
            choices=list(choices),
            resolution=self.resolution if resolution is None else resolution,
            width=self.width,
            stage_lengths=self.stage_lengths,
            space_options=dict(self.options),
            extras=extras,
        )
        self.validate(arch)
        return arch

    def sample(self, seed: int | None = None, rng: Any = None, probs: Any = None) -> Architecture:
        """Draws a random architecture.

        Args:
            seed: Seed of a fresh ``random.Random`` (same seed, same architecture).
            rng: Alternatively, a generator with a ``random()`` method returning
                floats in [0, 1) (``random.Random`` or ``numpy.random.Generator``).
            probs: Block probabilities (default uniform). One of: a mapping
                ``{block_name: weight}`` applied to every layer (names a layer
                does not offer are ignored; absent names weigh 0); a sequence
                of weights aligned with the choices (when all layers share the
                same choice list); or one such sequence per layer. NumPy arrays
                (any numeric dtype) and torch tensors are accepted as the
                sequences, or as one array of shape ``[num_choices]`` or
                ``[num_layers, num_choices]``. Weights are normalised per layer.
                Channel and resolution choices are uniform.

        Raises:
            ValueError: Both ``seed`` and ``rng`` given, or bad ``probs`` (an array
                of another shape, a negative or non-finite weight, a layer whose
                weights are all zero).
        """
        if seed is not None and rng is not None:
            raise ValueError("give either seed or rng, not both")
        if rng is None:
            rng = random.Random(seed)

        def is_array(value: Any) -> bool:
            # NumPy arrays and scalars (float32 is not a Python float), torch tensors.
            return hasattr(value, "shape") and hasattr(value, "tolist")

        if probs is not None and not isinstance(probs, Mapping):
            if is_array(probs):
                shape = [int(n) for n in probs.shape]
                counts = sorted({len(layer.choices) for layer in self.layers})
                if len(counts) > 1:
                    raise ValueError(f"probs is an array of shape {shape}, but the layers of space {self.name!r} have "
                                     f"{counts} choices: give one sequence of weights per layer")
                expected = ([counts[0]], [len(self.layers), counts[0]])
                if shape not in expected:
                    raise ValueError(f"probs has shape {shape}; expected {expected[0]} (one weight per choice) or "
                                     f"{expected[1]} (one row per layer)")
                probs = probs.tolist()
            elif isinstance(probs, (str, bytes)):
                raise ValueError(f"probs must be a mapping of block names to weights or a sequence of weights, "
                                 f"got {probs!r}")
            else:
                try:
                    probs = [p.tolist() if is_array(p) else p for p in probs]
                except TypeError:
                    raise ValueError(f"probs must be a mapping of block names to weights or a sequence of weights, "
                                     f"got {probs!r}") from None
        per_layer = self._layer_weights(probs)

        def draw(weights: Sequence[float]) -> int:
            total = float(sum(weights))
            threshold = float(rng.random()) * total
            running = 0.0
            for k, w in enumerate(weights):
                running += w
                if threshold < running:
                    return k
            return max(k for k, w in enumerate(weights) if w > 0)  # float round-off at the top end

        choices = [layer.choices[draw(w)] for layer, w in zip(self.layers, per_layer)]
        channels = None
        if any(layer.channel_choices for layer in self.layers):
            channels = []
            for layer in self.layers:
                options = layer.channel_choices or [layer.c_out]
                channels.append(options[draw([1.0] * len(options))])
        resolution = None
        if self.resolution_choices:
            resolution = self.resolution_choices[draw([1.0] * len(self.resolution_choices))]
        return self.make_arch(choices, resolution=resolution, channels=channels)

    def _layer_weights(self, probs: Any) -> list[list[float]]:
        if probs is None:
            return [[1.0] * len(layer.choices) for layer in self.layers]
        if isinstance(probs, Mapping):
            unknown = [name for name in probs if not any(name in layer.choices for layer in self.layers)]
            if unknown:
                raise ValueError(f"probs names block(s) {unknown} that no layer of space {self.name!r} offers")
            weights = [[float(probs.get(name, 0.0)) for name in layer.choices] for layer in self.layers]
        else:
            probs = list(probs)
            if probs and all(isinstance(p, (int, float)) for p in probs):
                lengths = {len(layer.choices) for layer in self.layers}
                if lengths != {len(probs)}:
                    raise ValueError(
                        f"probs has {len(probs)} weights but the layers have {sorted(lengths)} choices; give one list per layer"
                    )
                weights = [[float(p) for p in probs] for _ in self.layers]
            else:
                if len(probs) != len(self.layers):
                    raise ValueError(f"probs has {len(probs)} per-layer lists for {len(self.layers)} layers")
                weights = [[float(p) for p in row] for row in probs]
                for layer, row in zip(self.layers, weights):
                    if len(row) != len(layer.choices):
                        raise ValueError(f"layer {layer.index}: {len(row)} weights for {len(layer.choices)} choices")
        for layer, row in zip(self.layers, weights):
            if any(not math.isfinite(w) or w < 0 for w in row):
                raise ValueError(f"layer {layer.index}: weights must be finite and non-negative, got {row}")
            if sum(row) <= 0:
                raise ValueError(f"layer {layer.index}: all choice weights are zero")
        return weights

    # ------------------------------------------------------------------ modules

    def build_stem(self) -> nn.Module:
        """The fixed stem: ``(N, in_channels, R, R) -> (N, stem_channels, R', R')``."""
        s = self.stem_spec
        return ConvBNAct(self.in_channels, self.stem_channels, s["kernel"], stride=s["stride"], act=s["activation"])

    def build_head(self, c_in: int | None = None) -> nn.Module:
        """The fixed head: ``(N, c_in, H, W) -> (N, num_classes)``; ``c_in`` defaults to the last layer's widest output."""
        c_in = self.layers[-1].c_out if c_in is None else c_in
        h = self.head_spec
        return ClassifierHead(c_in, self.head_channels, self.num_classes, act=h["activation"], dropout=h["dropout"])

    def build(self, arch: Architecture) -> SpaceNet:
        """The standalone model of ``arch`` (validated first)."""
        layers = self.resolve_layers(arch)
        blocks = [build_block(choice, l.c_in, l.c_out, l.stride) for l, choice in zip(layers, arch.choices)]
        return SpaceNet(self.build_stem(), blocks, self.build_head(layers[-1].c_out))

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        """The space in the JSON schema of the module docstring."""
        stages = []
        for s in self.stage_specs:
            entry: dict[str, Any] = {"out_channels": s["out_channels"], "layers": s["layers"], "first_stride": s["first_stride"]}
            if all(c == s["layer_choices"][0] for c in s["layer_choices"]):
                entry["choices"] = list(s["layer_choices"][0])
            else:
                entry["layer_choices"] = [list(c) for c in s["layer_choices"]]
            if s["channel_choices"] is not None:
                entry["channel_choices"] = list(s["channel_choices"])
            stages.append(entry)
        return {
            "format": SPACE_FORMAT,
            "version": SPACE_FORMAT_VERSION,
            "name": self.name,
            "space_version": self.version,
            "description": self.description,
            "resolution": self.resolution,
            "resolution_choices": None if self.resolution_choices is None else list(self.resolution_choices),
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "width": self.width,
            "stem": dict(self.stem_spec),
            "stages": stages,
            "head": dict(self.head_spec),
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "search space") -> "SearchSpace":
        """Builds a space from the JSON schema; raises ``ValueError`` on a bad document."""
        check_format(data, SPACE_FORMAT, (SPACE_FORMAT_VERSION,), source)
        _check_keys(source, data, _TOP_KEYS)
        if "name" not in data or "stages" not in data:
            raise ValueError(f"{source}: a search space needs 'name' and 'stages'")
        return cls(
            data["name"],
            data["stages"],
            version=data.get("space_version", 1),
            resolution=data.get("resolution", 224),
            in_channels=data.get("in_channels", 3),
            num_classes=data.get("num_classes", 1000),
            width=data.get("width", 1.0),
            stem=data.get("stem"),
            head=data.get("head"),
            resolution_choices=data.get("resolution_choices"),
            description=data.get("description", ""),
        )

    def save(self, path: str | os.PathLike) -> None:
        """Writes the space as JSON (atomically)."""
        atomic_write_text(path, dumps(self.to_dict()))


# ---------------------------------------------------------------------- registry

_SPACE_FACTORIES: dict[str, Callable[..., SearchSpace]] = {}


def register_space(name: str, factory: Callable[..., SearchSpace] | None = None, overwrite: bool = False):
    """Registers ``factory(**kwargs) -> SearchSpace`` under ``name``; usable as a decorator."""

    def decorate(fn: Callable[..., SearchSpace]) -> Callable[..., SearchSpace]:
        if name in _SPACE_FACTORIES and not overwrite:
            raise ValueError(f"search space {name!r} is already registered")
        _SPACE_FACTORIES[name] = fn
        return fn

    return decorate if factory is None else decorate(factory)


def list_spaces() -> list[str]:
    """Registered space names."""
    return sorted(_SPACE_FACTORIES)


def _shape_signature(space: "SearchSpace") -> dict[str, Any]:
    """What makes two shapes of a registered space different networks: stem, head and
    every layer's candidates, channels, stride and input size."""
    return {"input channels": space.in_channels, "classes": space.num_classes, "head channels": space.head_channels,
            "stem": dict(space.stem_spec), "head": dict(space.head_spec),
            "per-layer candidates": [l.choices for l in space.layers],
            "per-layer channels": [(l.c_in, l.c_out) for l in space.layers],
            "per-layer strides and input sizes": [(l.stride, tuple(l.in_hw)) for l in space.layers]}


@functools.lru_cache(maxsize=256)
def _shape_difference(arch_space: str, name: str, version: int, arch_resolution: int, resolution: int,
                      arch_width: float, width: float, theirs: str, mine: str) -> str | None:
    """:meth:`SearchSpace._options_difference` for options that differ as written (JSON
    texts ``theirs`` and ``mine``), cached: spaces are rebuilt here, and validation runs
    for every sampled architecture."""
    try:
        their_space = get_space(arch_space, resolution=arch_resolution, width=arch_width, **json.loads(theirs))
        my_space = get_space(name, resolution=arch_resolution, width=width, **json.loads(mine))
    except (TypeError, ValueError) as exc:
        return f"no space this one can be compared with ({exc})"
    a, b = _shape_signature(their_space), _shape_signature(my_space)
    for what in a:
        if a[what] != b[what]:
            return f"other {what} ({a[what]} there, {b[what]} here)"
    return None  # the same shape, written differently (e.g. a default given explicitly)


def _activation_name(where: str, name: Any) -> Any:
    """``name`` if it is an activation the builder knows (checked when the space is made,
    not when its first model is built)."""
    try:
        make_activation(name)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return name


def get_space(name: str, **kwargs: Any) -> SearchSpace:
    """Builds the registered space ``name`` with keyword options (e.g. ``resolution``, ``width``)."""
    if name not in _SPACE_FACTORIES:
        raise ValueError(f"unknown search space {name!r}; known: {list_spaces()} (a user-defined space: give its JSON file; in Python, load_space(path))")
    factory = _SPACE_FACTORIES[name]
    # Options come from files (an architecture's space_options): an unknown one is named
    # here instead of surfacing as the factory's TypeError.
    parameters = inspect.signature(factory).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        unknown = sorted(set(kwargs) - set(parameters))
        if unknown:
            raise ValueError(f"search space {name!r} has no option {', '.join(map(repr, unknown))}; "
                             f"its options: {', '.join(parameters)}")
    return factory(**kwargs)


#: Fields an architecture holds itself: its space_options must not give them again.
_ARCH_OWN_FIELDS = ("width",)


def space_for_architecture(arch: Architecture) -> SearchSpace:
    """Rebuilds the registered space an architecture was made in.

    Raises:
        ValueError: Unknown space, an option the space does not have, or an option that
            repeats one of the architecture's own fields (``width``).
    """
    options = dict(arch.space_options)
    repeated = [k for k in _ARCH_OWN_FIELDS if k in options]
    if repeated:
        raise ValueError(f"the architecture's space_options repeat {', '.join(map(repr, repeated))}, which the "
                         f"architecture gives itself (width={arch.width:g}); remove it from space_options")
    return get_space(arch.space, resolution=options.pop("resolution", arch.resolution), width=arch.width, **options)


def load_space(path: str | os.PathLike, **overrides: Any) -> SearchSpace:
    """Loads a user-defined space from a ``.json`` or ``.yaml``/``.yml`` file.

    Args:
        path: The file.
        **overrides: Top-level keys of the document replaced before the space is built
            (e.g. ``resolution=8, width=0.5, in_channels=1``): the file's space shaped for
            a run's data, as searches, retraining and latency tables use it.

    Raises:
        ValueError: Bad document, unknown format version, or YAML without PyYAML.
    """
    path = os.fspath(path)
    text = read_text(path)
    if path.lower().endswith((".yaml", ".yml")):
        try:
            import yaml  # type: ignore[import-not-found]
        except ImportError:
            raise ValueError(
                f"{path}: reading YAML search spaces needs PyYAML (pip install pyyaml); or write the space as JSON"
            ) from None
        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if overrides:
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a search space document must be a mapping")
        data = {**data, **overrides}
    return SearchSpace.from_dict(data, source=path)
