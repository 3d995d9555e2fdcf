"""Architecture encoding: which candidate every searchable layer uses.

An :class:`Architecture` is plain data (JSON-serialisable, exact round trip).
It names the space it belongs to (name + version), so a file written today is
refused, with a clear message, by a space whose definition changed.

JSON form (``format`` ``hwnas.architecture``, ``version`` 1)::

    {"format": "hwnas.architecture", "version": 1,
     "space": "fbnet", "space_version": 1, "resolution": 224, "width": 1.0,
     "choices": ["skip", "k3_e3", ...], "stage_lengths": [1, 4, 4, 4, 4, 4, 1],
     "space_options": {"head_channels": 1504}, "extras": {}}

Compact string form: the choices with stages separated by ``|``, e.g.
``"skip | k3_e3 k3_e1 skip skip | ..."`` (the FBNet paper's notation).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from hwnas._io import atomic_write_text, check_format, dumps, read_text

__all__ = ["Architecture", "parse_compact", "ARCHITECTURE_FORMAT", "ARCHITECTURE_FORMAT_VERSION"]

ARCHITECTURE_FORMAT = "hwnas.architecture"
ARCHITECTURE_FORMAT_VERSION = 1


def parse_compact(text: str) -> tuple[list[str], list[int]]:
    """Splits ``"a | b c | d"`` into choices ``[a, b, c, d]`` and stage lengths ``[1, 2, 1]``.

    Raises:
        ValueError: A stage between two ``|`` is empty.
    """
    stages = [part.split() for part in str(text).split("|")]
    for i, stage in enumerate(stages):
        if not stage:
            raise ValueError(f"architecture string {text!r}: stage {i} is empty")
    choices = [name for stage in stages for name in stage]
    return choices, [len(stage) for stage in stages]


@dataclass
class Architecture:
    """One point of a search space.

    Attributes:
        space: Name of the search space (as given to :func:`hwnas.spaces.get_space`).
        space_version: Version of that space's definition.
        choices: Block name per searchable layer, in layer order.
        resolution: Input image side length (square inputs).
        width: Width multiplier of the space.
        stage_lengths: Number of layers per stage (for the compact form and
            tables); ``None`` means one group.
        space_options: Extra keyword arguments needed to rebuild the space with
            ``get_space(space, resolution=..., width=..., **space_options)``
            (e.g. FBNet-A's ``head_channels=1504``).
        extras: Space-specific per-architecture data, e.g. ``{"channels": [...]}``
            for the per-layer output widths of an FBNetV2-style space.
    """

    space: str
    space_version: int
    choices: list[str]
    resolution: int
    width: float = 1.0
    stage_lengths: Optional[list[int]] = None
    space_options: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.choices, (str, bytes)):
            # list("skip") would be four one-letter blocks; the compact string form is
            # read by SearchSpace.make_arch.
            raise ValueError(f"architecture choices must be a list of block names, got the string {self.choices!r} "
                             "(for the compact form use space.make_arch)")
        self.choices = [str(c) for c in self.choices]
        if not isinstance(self.resolution, int) or isinstance(self.resolution, bool) or self.resolution < 1:
            if isinstance(self.resolution, float) and self.resolution.is_integer() and self.resolution >= 1:
                self.resolution = int(self.resolution)
            else:
                raise ValueError(f"architecture resolution must be a positive integer, got {self.resolution!r}")
        if isinstance(self.width, bool) or not isinstance(self.width, (int, float)) or not math.isfinite(self.width) or self.width <= 0:
            raise ValueError(f"architecture width must be a positive number, got {self.width!r}")
        self.width = float(self.width)
        if isinstance(self.space_version, bool) or not isinstance(self.space_version, int) or self.space_version < 1:
            raise ValueError(f"architecture space_version must be a positive integer, got {self.space_version!r}")
        if self.stage_lengths is not None:
            if isinstance(self.stage_lengths, (str, bytes)) or not all(
                    isinstance(n, int) and not isinstance(n, bool) for n in self.stage_lengths):
                raise ValueError(f"architecture stage_lengths must be a list of integers, got {self.stage_lengths!r}")
            self.stage_lengths = list(self.stage_lengths)
            if sum(self.stage_lengths) != len(self.choices) or any(n < 1 for n in self.stage_lengths):
                raise ValueError(
                    f"stage_lengths {self.stage_lengths} do not partition the {len(self.choices)} choices"
                )
        for name in ("space_options", "extras"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"architecture {name} must be a dict, got {getattr(self, name)!r}")
        self.space_options = dict(self.space_options)
        self.extras = dict(self.extras)

    # ------------------------------------------------------------------ forms

    @property
    def num_layers(self) -> int:
        return len(self.choices)

    def stages(self) -> list[list[str]]:
        """Choices grouped by stage."""
        lengths = self.stage_lengths or [len(self.choices)]
        groups, start = [], 0
        for n in lengths:
            groups.append(self.choices[start : start + n])
            start += n
        return groups

    def to_string(self) -> str:
        """Compact form, e.g. ``"skip | k3_e3 k3_e1 skip skip | ..."``."""
        return " | ".join(" ".join(stage) for stage in self.stages())

    def key(self) -> tuple:
        """A hashable key identifying the architecture (for sets and dict keys)."""
        return (
            self.space,
            self.space_version,
            tuple(self.choices),
            self.resolution,
            self.width,
            json.dumps(self.space_options, sort_keys=True),
            json.dumps(self.extras, sort_keys=True),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with ``format`` and ``version``."""
        return {
            "format": ARCHITECTURE_FORMAT,
            "version": ARCHITECTURE_FORMAT_VERSION,
            "space": self.space,
            "space_version": self.space_version,
            "resolution": self.resolution,
            "width": self.width,
            "choices": list(self.choices),
            "stage_lengths": None if self.stage_lengths is None else list(self.stage_lengths),
            "space_options": dict(self.space_options),
            "extras": dict(self.extras),
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "architecture") -> "Architecture":
        """Inverse of :meth:`to_dict`; raises ``ValueError`` on an unknown format/version or bad field."""
        check_format(data, ARCHITECTURE_FORMAT, (ARCHITECTURE_FORMAT_VERSION,), source)
        missing = [k for k in ("space", "space_version", "choices", "resolution") if k not in data]
        if missing:
            raise ValueError(f"{source}: missing field(s) {missing}")
        choices = data["choices"]
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            raise ValueError(f"{source}: 'choices' must be a list of block names, got {choices!r}")
        try:
            return cls(
                space=str(data["space"]),
                space_version=data["space_version"],
                choices=list(choices),
                resolution=data["resolution"],
                width=data.get("width", 1.0),
                stage_lengths=data.get("stage_lengths"),
                space_options=data.get("space_options") or {},
                extras=data.get("extras") or {},
            )
        except ValueError as exc:  # named after the file it came from
            raise ValueError(f"{source}: {exc}") from None

    def to_json(self) -> str:
        return dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str, source: str = "string") -> "Architecture":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}: not valid JSON ({exc})") from exc
        return cls.from_dict(data, source=source)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the JSON form atomically."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Architecture":
        return cls.from_json(read_text(path), source=os.fspath(path))

    # ------------------------------------------------------------------ display

    def __str__(self) -> str:
        channels = self.extras.get("channels")
        header = f"Architecture '{self.space}' v{self.space_version}  resolution={self.resolution}  width={self.width:g}"
        if self.space_options:
            header += "  " + "  ".join(f"{k}={v}" for k, v in sorted(self.space_options.items()))
        rows = [header, f"{'layer':>5}  {'stage':>5}  block" + ("        channels" if channels else "")]
        index = 0
        for stage_index, stage in enumerate(self.stages()):
            for name in stage:
                row = f"{index:>5}  {stage_index:>5}  {name:<12}"
                if channels:
                    row += f" {channels[index]:>8}"
                rows.append(row.rstrip())
                index += 1
        rows.append(f"compact: {self.to_string()}")
        return "\n".join(rows)
