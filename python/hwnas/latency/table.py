"""Latency lookup tables (FBNet): one measured cost per distinct (input shape, block).

Every searchable layer of a space maps each candidate block to an entry key,
a stable name made of the block and its shapes::

    k3_e6|c16-24|s2|32x32      block k3_e6, 16 -> 24 channels, stride 2, 32x32 input

Layers that share a shape share entries, so a table holds each distinct pair once.
The fixed parts have the keys ``stem|...`` and ``head|...``.

Predictions:

* :meth:`LatencyTable.predict` - FBNet eq. 3: ``stem + sum_l LUT(l, a_l) + head``,
  optionally corrected (see :mod:`hwnas.latency.validation`).
* :meth:`LatencyTable.expected_latency` - FBNet eq. 9: the differentiable
  ``sum_l sum_i p_{l,i} LUT(l, i)`` of the supernet's sampling probabilities.

JSON form: ``format`` ``hwnas.latency_table``, ``version`` 1. Also used for energy
(``metric`` ``"energy"``, ``unit`` e.g. ``"mJ"``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import torch

from hwnas._io import check_format, read_json, write_json
from .fingerprint import fingerprint_differences, fingerprint_id

__all__ = ["LatencyTable", "TableEntry", "entry_key", "TABLE_FORMAT", "TABLE_FORMAT_VERSION", "layer_entry_keys"]

TABLE_FORMAT = "hwnas.latency_table"
TABLE_FORMAT_VERSION = 1


def entry_key(block: str, c_in: int, c_out: int, stride: int, in_hw: Sequence[int]) -> str:
    """The stable name of a (block, shape) pair, e.g. ``"k3_e6|c16-24|s2|32x32"``."""
    return f"{block}|c{int(c_in)}-{int(c_out)}|s{int(stride)}|{int(in_hw[0])}x{int(in_hw[1])}"


def stem_key(space: Any) -> str:
    return f"stem|c{space.in_channels}-{space.stem_channels}|s{space.stem_spec['stride']}|{space.resolution}x{space.resolution}"


def head_key(space: Any) -> str:
    last = space.layers[-1]
    h, w = last.out_hw
    return f"head|c{last.c_out}-{space.num_classes}|s1|{h}x{w}"


def layer_entry_keys(space: Any, layers: Optional[Sequence[Any]] = None) -> list[dict[str, str]]:
    """Per searchable layer, ``{choice: entry key}`` (at the space's own shapes unless ``layers`` given)."""
    layers = space.layers if layers is None else layers
    return [
        {choice: entry_key(choice, layer.c_in, layer.c_out, layer.stride, layer.in_hw) for choice in layer.choices}
        for layer in layers
    ]


@dataclass
class TableEntry:
    """One measured (or fitted) cost.

    Attributes:
        value: The cost (median latency in ``unit``, or energy).
        block: Block name (``"stem"``/``"head"`` for the fixed parts).
        c_in, c_out, stride, in_hw: The shape the block was measured at.
        stats: Timing statistics (``TimingResult.summary()``), or ``{}``.
    """

    value: float
    block: str
    c_in: int
    c_out: int
    stride: int
    in_hw: tuple[int, int]
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "block": self.block,
            "c_in": self.c_in,
            "c_out": self.c_out,
            "stride": self.stride,
            "in_hw": list(self.in_hw),
            "stats": self.stats,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TableEntry":
        return cls(
            value=float(data["value"]),
            block=str(data["block"]),
            c_in=int(data["c_in"]),
            c_out=int(data["c_out"]),
            stride=int(data["stride"]),
            in_hw=(int(data["in_hw"][0]), int(data["in_hw"][1])),
            stats=dict(data.get("stats") or {}),
        )


@dataclass
class LatencyTable:
    """A lookup table for one space, resolution and target fingerprint.

    Attributes:
        space: Space name; ``space_version``, ``resolution``, ``width``: its definition.
        fingerprint: Device fingerprint of the measurements.
        layers: Per searchable layer, ``{choice: entry key}``.
        stem_key, head_key: Entry keys of the fixed parts.
        entries: ``{entry key: TableEntry}``.
        metric, unit: ``"latency"``/``"us"`` or e.g. ``"energy"``/``"mJ"``.
        call_overhead: Cost every separately measured call pays once (per-run
            overhead of the target and the harness), or ``None`` if not measured.
        correction: Fitted correction ``{"kind": "linear", "a": .., "b": ..}`` (with
            ``"depth": c`` when it has a depth term, see :func:`apply_correction`) or ``None``.
        source: ``"measured"``, ``"least_squares"``, ``"refined"`` or ``"user"``.
        complete: Whether every key of :meth:`required_keys` has an entry.
    """

    space: str
    space_version: int
    resolution: int
    width: float
    fingerprint: dict[str, Any]
    layers: list[dict[str, str]]
    stem_key: str
    head_key: str
    entries: dict[str, TableEntry] = field(default_factory=dict)
    metric: str = "latency"
    unit: str = "us"
    call_overhead: Optional[float] = None
    correction: Optional[dict[str, Any]] = None
    source: str = "measured"
    notes: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction

    @classmethod
    def for_space(cls, space: Any, fingerprint: Mapping[str, Any], **kwargs: Any) -> "LatencyTable":
        """An empty table with the keys of ``space`` (at its default resolution and widths)."""
        return cls(
            space=space.name,
            space_version=space.version,
            resolution=space.resolution,
            width=space.width,
            fingerprint=dict(fingerprint),
            layers=layer_entry_keys(space),
            stem_key=stem_key(space),
            head_key=head_key(space),
            **kwargs,
        )

    def required_keys(self) -> list[str]:
        """Every entry key the table needs, each once, in first-use order (stem, layers, head)."""
        seen: dict[str, None] = {self.stem_key: None}
        for layer in self.layers:
            for key in layer.values():
                seen.setdefault(key, None)
        seen.setdefault(self.head_key, None)
        return list(seen)

    def missing_keys(self) -> list[str]:
        return [k for k in self.required_keys() if k not in self.entries]

    @property
    def complete(self) -> bool:
        return not self.missing_keys()

    def value(self, key: str) -> float:
        """The cost of ``key``; a ``KeyError`` names the key and says how to fill it."""
        try:
            return self.entries[key].value
        except KeyError:
            raise KeyError(f"latency table has no entry {key!r}; build (or resume building) the table first") from None

    # ------------------------------------------------------------------ prediction

    def _check_arch(self, arch: Any) -> None:
        if arch.space != self.space:
            raise ValueError(f"architecture of space {arch.space!r} given to a table for space {self.space!r}")
        if len(arch.choices) != len(self.layers):
            raise ValueError(f"architecture has {len(arch.choices)} layers, the table {len(self.layers)}")
        if arch.resolution != self.resolution:
            raise ValueError(
                f"architecture resolution {arch.resolution} differs from the table's {self.resolution}; "
                "build a table at that resolution or use a learned predictor"
            )
        if arch.extras.get("channels") is not None:
            widest = [int(layer_key_c_out(next(iter(layer.values())))) for layer in self.layers]
            if list(map(int, arch.extras["channels"])) != widest:
                raise ValueError(
                    "architecture chooses channel widths the table was not built for; use a learned "
                    "predictor (hwnas.latency.predictors) for channel-searchable spaces"
                )

    def raw_sum(self, arch: Any) -> float:
        """FBNet eq. 3 without correction: stem + sum over layers + head."""
        self._check_arch(arch)
        total = self.value(self.stem_key) + self.value(self.head_key)
        for index, (layer, choice) in enumerate(zip(self.layers, arch.choices)):
            if choice not in layer:
                raise ValueError(f"layer {index} has no candidate {choice!r}; candidates: {sorted(layer)}")
            total += self.value(layer[choice])
        return total

    def smallest_sum(self) -> float:
        """The smallest :meth:`raw_sum` of any architecture: stem + head + each layer's cheapest entry."""
        return self.value(self.stem_key) + self.value(self.head_key) + sum(
            min(self.value(key) for key in layer.values()) for layer in self.layers)

    def timing_clock(self) -> str:
        """The clock the entries were timed with (``"steady"`` unless the build recorded another):
        whole models must be timed on it too, or they would not compare."""
        return self.notes.get("timing", {}).get("clock", "steady")

    def num_blocks(self, arch: Any) -> int:
        """Layers of ``arch`` that run a block rather than a skip (the depth term's count)."""
        from hwnas.spaces.blocks import parse_block_name

        self._check_arch(arch)
        return sum(not parse_block_name(choice).is_skip for choice in arch.choices)

    def num_units(self) -> int:
        """Separately measured calls summed per architecture: stem + layers + head."""
        return len(self.layers) + 2

    def predict(self, arch: Any, correction: str = "auto") -> float:
        """Predicted cost of ``arch``.

        Args:
            arch: An :class:`~hwnas.spaces.Architecture` of this table's space.
            correction: ``"none"`` (eq. 3 as is), ``"overhead"`` (remove the
                per-call overhead that every table entry paid but a whole model
                pays once: ``raw - (units - 1) * call_overhead``), ``"linear"``
                (the fitted ``a * raw + b``, plus its depth term, in :attr:`correction`),
                or ``"auto"`` (linear if fitted, else none).

        Raises:
            ValueError: Unknown correction, or one the table has no data for.
        """
        raw = self.raw_sum(arch)
        if correction == "auto":
            correction = "linear" if self.correction else "none"
        if correction == "none":
            return raw
        if correction == "overhead":
            if self.call_overhead is None:
                raise ValueError("this table has no measured call_overhead; use correction='none' or 'linear'")
            return raw - (self.num_units() - 1) * self.call_overhead
        if correction == "linear":
            if not self.correction:
                raise ValueError("this table has no fitted correction; run validation with calibration first")
            depth = self.num_blocks(arch) ** 2 if self.correction.get("depth") else None
            return apply_correction(self.correction, raw, depth)
        raise ValueError(f"correction must be 'none', 'overhead', 'linear' or 'auto', got {correction!r}")

    def layer_costs(self, layer: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Costs of layer ``layer``'s candidates, in its choice order (a constant tensor)."""
        keys = list(self.layers[layer].values())
        return torch.tensor([self.value(k) for k in keys], dtype=dtype)

    def expected_latency(self, probs: Sequence[torch.Tensor] | torch.Tensor, include_fixed: bool = True) -> torch.Tensor:
        """FBNet eq. 9: ``sum_l sum_i probs[l][i] * LUT(l, i)`` (+ stem + head), differentiable.

        Args:
            probs: Per layer, a tensor of candidate probabilities in the layer's
                choice order, shaped ``[num_choices]`` or ``[batch, num_choices]``;
                or one ``[num_layers, num_choices]`` tensor when layers share a count.
            include_fixed: Add the (constant) stem and head costs.

        Returns:
            A scalar (or ``[batch]``) tensor; gradients flow to ``probs``.
        """
        if isinstance(probs, torch.Tensor):
            if probs.dim() < 2 or probs.shape[0] != len(self.layers):
                raise ValueError(f"probs tensor must be [num_layers={len(self.layers)}, num_choices], got {tuple(probs.shape)}")
            probs = list(probs.unbind(0))
        if len(probs) != len(self.layers):
            raise ValueError(f"got probabilities for {len(probs)} layers, the table has {len(self.layers)}")
        total = None
        for index, p in enumerate(probs):
            costs = self.layer_costs(index, dtype=p.dtype).to(p.device)
            if p.shape[-1] != costs.numel():
                raise ValueError(f"layer {index}: {p.shape[-1]} probabilities for {costs.numel()} candidates")
            term = p @ costs
            total = term if total is None else total + term
        if include_fixed:
            total = total + (self.value(self.stem_key) + self.value(self.head_key))
        return total

    def with_statistic(self, statistic: str) -> "LatencyTable":
        """A copy whose values are another statistic of the same measurements.

        Args:
            statistic: ``"median"``, ``"p10"``, ``"p25"``, ``"min"``, ``"mean"``...: any
                ``<name>_us`` field stored in the entries' timing statistics. Low
                quantiles are steadier than the median on a machine shared with other
                jobs, since interference only ever adds time.

        Raises:
            ValueError: An entry has no such statistic (e.g. a fitted or user table).
        """
        import copy

        out = copy.deepcopy(self)
        for key, entry in out.entries.items():
            value = entry.stats.get(f"{statistic}_us")
            if value is None:
                raise ValueError(f"entry {key!r} has no statistic {statistic!r} (stored: "
                                 f"{sorted(k[:-3] for k in entry.stats if k.endswith('_us'))})")
            entry.value = float(value)
        out.notes["statistic"] = statistic
        out.correction = None
        return out

    # ------------------------------------------------------------------ combination

    def check_compatible(self, other: "LatencyTable", allow_mixed: bool = False) -> None:
        """Refuses to combine tables of different spaces or (unless allowed) fingerprints."""
        same_space = (self.space, self.space_version, self.resolution, self.width) == (
            other.space, other.space_version, other.resolution, other.width)
        if not same_space:
            raise ValueError(
                f"tables are for different spaces: {self.space} v{self.space_version} @ {self.resolution} width "
                f"{self.width} vs {other.space} v{other.space_version} @ {other.resolution} width {other.width}"
            )
        if (self.metric, self.unit) != (other.metric, other.unit):
            raise ValueError(f"tables measure different things: {self.metric}/{self.unit} vs {other.metric}/{other.unit}")
        diffs = fingerprint_differences(self.fingerprint, other.fingerprint)
        if diffs and not allow_mixed:
            raise ValueError(
                "refusing to mix tables measured on different devices/settings (pass allow_mixed=True / "
                "--allow-mixed to combine them anyway): " + "; ".join(diffs)
            )

    def merge(self, other: "LatencyTable", allow_mixed: bool = False) -> "LatencyTable":
        """Adds ``other``'s entries that this table lacks (this table's values win)."""
        self.check_compatible(other, allow_mixed)
        for key, entry in other.entries.items():
            self.entries.setdefault(key, entry)
        if allow_mixed and fingerprint_differences(self.fingerprint, other.fingerprint):
            self.notes.setdefault("mixed_fingerprints", []).append(other.fingerprint)
        return self

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TABLE_FORMAT,
            "version": TABLE_FORMAT_VERSION,
            "space": self.space,
            "space_version": self.space_version,
            "resolution": self.resolution,
            "width": self.width,
            "metric": self.metric,
            "unit": self.unit,
            "source": self.source,
            "fingerprint": self.fingerprint,
            "fingerprint_id": fingerprint_id(self.fingerprint),
            "complete": self.complete,
            "call_overhead": self.call_overhead,
            "correction": self.correction,
            "stem_key": self.stem_key,
            "head_key": self.head_key,
            "layers": self.layers,
            "entries": {k: e.to_dict() for k, e in self.entries.items()},
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "table") -> "LatencyTable":
        check_format(data, TABLE_FORMAT, (TABLE_FORMAT_VERSION,), source)
        try:
            return cls(
                space=str(data["space"]),
                space_version=int(data["space_version"]),
                resolution=int(data["resolution"]),
                width=float(data["width"]),
                fingerprint=dict(data["fingerprint"]),
                layers=[dict(layer) for layer in data["layers"]],
                stem_key=str(data["stem_key"]),
                head_key=str(data["head_key"]),
                entries={k: TableEntry.from_dict(v) for k, v in data["entries"].items()},
                metric=str(data.get("metric", "latency")),
                unit=str(data.get("unit", "us")),
                call_overhead=None if data.get("call_overhead") is None else float(data["call_overhead"]),
                correction=data.get("correction"),
                source=str(data.get("source", "measured")),
                notes=dict(data.get("notes") or {}),
            )
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"{source}: malformed latency table ({exc!r})") from exc

    def save(self, path: str | os.PathLike, fsync: bool = True) -> None:
        """Writes the table atomically (``fsync=False``: see :func:`hwnas._io.atomic_write_text`)."""
        write_json(path, self.to_dict(), fsync=fsync)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LatencyTable":
        return cls.from_dict(read_json(path, TABLE_FORMAT, (TABLE_FORMAT_VERSION,)), source=os.fspath(path))

    def __repr__(self) -> str:
        return (
            f"LatencyTable(space={self.space!r}, resolution={self.resolution}, target={self.fingerprint.get('target')!r}, "
            f"entries={len(self.entries)}/{len(self.required_keys())}, metric={self.metric}/{self.unit})"
        )


def layer_key_c_out(key: str) -> int:
    """The output channels encoded in an entry key."""
    channels = key.split("|")[1]
    return int(channels.split("-")[1])


def apply_correction(correction: Mapping[str, Any], raw: Any, blocks_squared: Any = None) -> Any:
    """Applies a fitted correction to a raw table sum: ``a * raw + b + depth * blocks_squared``.

    The depth term (``correction["depth"]``, absent or 0 in corrections without one)
    is what a whole model pays beyond the sum of its blocks timed alone, growing with
    the square of its number of blocks: each block runs slower the more blocks
    there are (see :func:`~hwnas.latency.validation.fit_linear_correction`).

    Args:
        correction: A fitted correction (``kind`` ``"linear"``).
        raw: Table sum(s): a float or a tensor (then the result is a differentiable tensor).
        blocks_squared: The squared number of non-skip blocks (or its expectation);
            required when the correction has a depth term.

    Raises:
        ValueError: Unknown kind, or a depth term without ``blocks_squared``.
    """
    kind = correction.get("kind")
    if kind != "linear":
        raise ValueError(f"unknown correction kind {kind!r}")
    value = raw * float(correction["a"]) + float(correction["b"])
    depth = float(correction.get("depth") or 0.0)
    if depth:
        if blocks_squared is None:
            raise ValueError("this correction has a depth term: pass the (expected) squared number of blocks")
        value = value + depth * blocks_squared
    return value

