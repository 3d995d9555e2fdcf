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

import copy
import functools
import json
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import torch

from hwnas._io import check_format, read_json, write_json
from .fingerprint import fingerprint_differences, fingerprint_id

__all__ = ["LatencyTable", "TableEntry", "entry_key", "TABLE_FORMAT", "TABLE_FORMAT_VERSION", "layer_entry_keys",
           "check_correction", "LOCATION_STATISTICS", "scale_difference"]

TABLE_FORMAT = "hwnas.latency_table"
TABLE_FORMAT_VERSION = 1

#: The timing statistics (``<name>_us`` in the entries' stats) that locate a latency, and
#: so may stand for an entry's cost (:meth:`LatencyTable.with_statistic`). The spreads
#: (``std``, ``iqr``) are stored too, but a sum of spreads is no model's latency.
LOCATION_STATISTICS = ("min", "p10", "p25", "median", "mean", "p75", "p90", "max")


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


# ---------------------------------------------------------------------- checked reading of JSON documents

_REQUIRED = object()
_KIND_NAMES = {"int": "an integer", "number": "a finite number", "str": "a string", "object": "a JSON object",
               "list": "a list"}


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _field(data: Mapping[str, Any], key: str, kind: str, source: str, prefix: str = "", *,
           default: Any = _REQUIRED, minimum: Optional[float] = None) -> Any:
    """``data[key]`` checked to be of ``kind``, for readers of hwnas JSON files.

    Args:
        data: The JSON object holding the field.
        key: The field.
        kind: ``"int"`` (an integral number; ``32.0`` reads as 32, ``32.9`` is refused),
            ``"number"`` (finite; returned as a float), ``"str"``, ``"object"`` (returned
            as a dict) or ``"list"``.
        source: Where ``data`` came from (the file), first in every message.
        prefix: Path of ``data`` inside the document, e.g. ``"entries['stem|c3-16|s1|32x32']."``.
        default: Returned when the field is absent or null; without it the field is required.
        minimum: Smallest allowed value (numbers).

    Raises:
        ValueError: Naming ``source`` and the field, e.g. ``"t.json: resolution must be
            an integer >= 1, got 'abc'"``.
    """
    label = f"{prefix}{key}"
    value = data.get(key) if isinstance(data, Mapping) else None
    if value is None:
        if default is not _REQUIRED:
            return default
        if not isinstance(data, Mapping) or key not in data:
            raise ValueError(f"{source}: missing field {label}")
    ok = True
    if kind == "int":
        if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) and float(value).is_integer():
            value = int(value)
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        value = int(value) if ok else value
    elif kind == "number":
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    elif kind == "str":
        ok = isinstance(value, str)
    elif kind == "object":
        ok = isinstance(value, Mapping)
        value = dict(value) if ok else value
    elif kind == "list":
        ok = isinstance(value, (list, tuple))
        value = list(value) if ok else value
    else:  # pragma: no cover - a programming error
        raise ValueError(f"unknown field kind {kind!r}")
    if ok and minimum is not None:
        ok = value >= minimum
    if not ok:
        bound = f" >= {minimum:g}" if minimum is not None else ""
        raise ValueError(f"{source}: {label} must be {_KIND_NAMES[kind]}{bound}, got {_short(value)}")
    return value


def _shape_fields(data: Mapping[str, Any], source: str, prefix: str) -> tuple[str, int, int, int, tuple[int, int]]:
    """``(block, c_in, c_out, stride, in_hw)`` of a stored block shape (a table entry, a predictor row)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: {prefix.rstrip('.')} must be a JSON object, got {_short(data)}")
    block = _field(data, "block", "str", source, prefix)
    c_in, c_out, stride = (_field(data, k, "int", source, prefix, minimum=1) for k in ("c_in", "c_out", "stride"))
    in_hw = _field(data, "in_hw", "list", source, prefix)
    if len(in_hw) != 2:
        raise ValueError(f"{source}: {prefix}in_hw must be [height, width], got {_short(in_hw)}")
    hw = tuple(_field({"in_hw": v}, "in_hw", "int", source, prefix, minimum=1) for v in in_hw)
    return block, c_in, c_out, stride, hw


def check_correction(correction: Any, source: str = "latency table") -> dict[str, Any]:
    """``correction`` checked to be one :func:`apply_correction` can apply (a copy).

    A correction predicts ``a * raw + b + per_block * blocks + depth * blocks**2``
    (the block terms when present: ``per_block`` in the corrections hwnas fits now,
    ``depth`` in those fitted by hwnas before calibration version 6, which are still
    applied as fitted). ``a`` must be positive and the block terms ``>= 0``: a
    prediction then grows with the table sum and the number of blocks, so a search
    still favours faster models and its ``log(LAT)`` stays defined (``a <= 0`` would
    favour slower models or remove the latency signal). ``b`` may be any finite
    number: the fits remove per-call overhead that whole models do not pay (``b = -a
    * offset`` in the proportional and per-block fits, ``b >= -0.9 * a * floor`` in
    the affine one, see :func:`~hwnas.latency.validation.fit_linear_correction`), so
    a negative ``b`` is normal. That every prediction stays positive is the fits'
    part (the corrections :func:`~hwnas.latency.validation.validate_table` stores
    keep ``b >= -0.9 * a`` times the table's smallest sum); this check does not know
    the table.

    Raises:
        ValueError: Not an object, an unknown ``kind``, ``a`` not a finite number
            ``> 0``, ``b`` not a finite number, or ``per_block`` or ``depth`` (when
            present) not a finite number ``>= 0``; the message starts with ``source``.
    """
    if not isinstance(correction, Mapping):
        raise ValueError(f'{source}: correction must be a JSON object such as {{"kind": "linear", "a": 1.2, "b": -3.0}}, '
                         f"got {_short(correction)}")
    kind = correction.get("kind")
    if kind != "linear":
        raise ValueError(f"{source}: unknown correction kind {kind!r} (this hwnas applies 'linear')")
    a = _field(correction, "a", "number", source, "correction.")
    if a <= 0:
        raise ValueError(f"{source}: correction.a must be a finite number > 0 (the scale of the table sums; "
                         f"a <= 0 would make slower models look faster), got {_short(correction['a'])}")
    _field(correction, "b", "number", source, "correction.")
    _field(correction, "per_block", "number", source, "correction.", default=None, minimum=0)
    _field(correction, "depth", "number", source, "correction.", default=None, minimum=0)
    return dict(correction)


def scale_difference(table: "LatencyTable", clock: str, drift_correction: bool,
                     drift_notes: Optional[Mapping[str, Any]] = None) -> Optional[tuple[str, Any, Any]]:
    """How ``table``'s measurements would not add up with measurements taken another way.

    The one rule for putting measurements together in one table, shared by resuming a
    build (:func:`~hwnas.latency.build.check_resumable`) and merging tables
    (:meth:`LatencyTable.check_compatible`): entries are summed into model latencies,
    so they must share one clock (CPU time leaves out the waiting that wall time
    counts) and one drift scale (a drift-corrected entry is scaled to the speed its
    reference model had when the baseline was taken; an uncorrected one is not). A
    table with nothing measured has no scale yet and adds up with anything.

    Args:
        table: The table whose entries the others would join.
        clock: The clock of the other measurements (``TimingConfig.clock``).
        drift_correction: Whether the other measurements are drift-corrected.
        drift_notes: Their drift reference (``notes["drift_correction"]`` of a table,
            ``DriftCorrectedTarget.describe()``), compared with ``table``'s when both
            have one; ``None``: not compared.

    Returns:
        ``None`` when they add up; else ``(what, table's, other's)`` with ``what``
        ``"clock"`` (the two clocks), ``"drift_correction"`` (``table``'s drift notes or
        ``None``, and ``drift_correction``) or ``"drift_reference"`` (the two
        ``(reference, baseline_us)`` pairs).
    """
    if not table.entries and table.call_overhead is None:
        return None
    old_clock = table.timing_clock()
    if clock != old_clock:
        return "clock", old_clock, clock
    stored = table.notes.get("drift_correction")
    if bool(stored) != bool(drift_correction):
        return "drift_correction", stored or None, bool(drift_correction)
    if stored and drift_notes:
        old = (stored.get("reference"), stored.get("baseline_us"))
        new = (drift_notes.get("reference"), drift_notes.get("baseline_us"))
        if old != new:
            return "drift_reference", old, new
    return None


def _read_document(path: str | os.PathLike, expected_format: str, versions: tuple[int, ...]) -> dict[str, Any]:
    """:func:`hwnas._io.read_json`, with a folder named as a folder rather than a missing file."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{os.fspath(path)} is a folder; give the {expected_format} JSON file inside it")
    return read_json(path, expected_format, versions)


@functools.lru_cache(maxsize=64)
def _registered_space_keys(name: str, version: int, resolution: int, width: float,
                           options_json: str) -> Optional[tuple[str, str, list[dict[str, str]], int]]:
    """``(stem key, head key, layer_entry_keys, head channels)`` of a registered space, as an architecture
    names it (cached: callers must not modify the result); ``None`` when it is not
    registered at that version (a user-defined space cannot be rebuilt from an
    architecture alone)."""
    from hwnas.spaces import get_space, list_spaces

    if name not in list_spaces():
        return None
    options = json.loads(options_json)
    options.pop("resolution", None)
    try:
        space = get_space(name, resolution=resolution, width=width, **options)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot rebuild space {name!r} with the architecture's options {options} to check it "
                         f"against the latency table: {exc}") from None
    if space.version != version:
        return None
    return stem_key(space), head_key(space), layer_entry_keys(space), space.head_channels


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
    def from_dict(cls, data: Mapping[str, Any], source: str = "table entry", prefix: str = "",
                  allow_negative: bool = False) -> "TableEntry":
        """Reads an entry, checking every field.

        Args:
            data: The entry's JSON object.
            source, prefix: The file and the entry's path in it, for messages.
            allow_negative: Accept a negative value (a fitted fixed part), not only >= 0.

        Raises:
            ValueError: A missing or mistyped field, or a value that is not a finite
                number (>= 0 unless ``allow_negative``).
        """
        block, c_in, c_out, stride, in_hw = _shape_fields(data, source, prefix)
        return cls(
            value=_field(data, "value", "number", source, prefix, minimum=None if allow_negative else 0),
            block=block,
            c_in=c_in,
            c_out=c_out,
            stride=stride,
            in_hw=in_hw,
            stats=_field(data, "stats", "object", source, prefix, default={}),
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
            ``"per_block"`` or ``"depth"`` when it has a block term, see :func:`apply_correction`)
            or ``None``.
        source: ``"measured"``, ``"least_squares"``, ``"refined"`` or ``"user"``.
        complete: Whether every key of :meth:`required_keys` has an entry.
        head_channels: Width of the head's 1x1 convolution, which the head's entry key
            does not name (``None`` in tables written before it was stored).
        space_options: The options that rebuild a registered space as the table was
            built for it, ``get_space(space, resolution=..., width=..., **space_options)``
            (e.g. ``{"in_channels": 1}`` for a grayscale search), as the space's
            ``options`` say; ``None`` in tables written before they were stored (see
            :meth:`space_shape_options`).
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
    head_channels: Optional[int] = None
    space_options: Optional[dict[str, Any]] = None

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
            head_channels=space.head_channels,
            # Validation rebuilds a registered space from the table alone: without its
            # options a table of a 1-channel search was checked against 3 channels.
            space_options=dict(getattr(space, "options", None) or {}),
            **kwargs,
        )

    def fixed_part_shape(self) -> dict[str, int]:
        """``{"in_channels": .., "num_classes": ..}`` as the stem and head entry keys name them
        (``stem|c<in_channels>-..``, ``head|c..-<num_classes>|..``); ``{}`` for keys
        this module did not write."""
        try:
            return {"in_channels": int(self.stem_key.split("|")[1][1:].split("-")[0]),
                    "num_classes": int(self.head_key.split("|")[1].split("-")[1])}
        except (IndexError, ValueError):
            return {}

    def space_shape_options(self) -> dict[str, Any]:
        """The options that rebuild this table's (registered) space at the shape it was built for.

        :attr:`space_options` where stored; for tables written before they were, the
        ``in_channels`` and ``num_classes`` of :meth:`fixed_part_shape`, the options a
        search on another dataset changes. Other options (candidates, head width) are
        not in the keys: :meth:`check_space` tells when the rebuilt space differs.
        """
        if self.space_options is not None:
            return dict(self.space_options)
        return dict(self.fixed_part_shape())

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

    def _key_mismatch(self, stem: str, head: str, layers: Sequence[Any],
                      choices: Optional[Sequence[str]] = None) -> Optional[str]:
        """What differs between this table's entry keys and those of another space shape.

        Args:
            stem, head: The other shape's stem and head keys.
            layers: Per layer a ``{choice: key}`` mapping (or its ``(choice, key)`` pairs).
            choices: Compare only these choices' keys, one per layer (what one
                architecture needs); without them every layer must be the same,
                choice order included.

        Returns:
            A description of the first difference, or ``None``.
        """
        if stem != self.stem_key:
            return f"stem entry {stem!r} where the table has {self.stem_key!r} (different in_channels or stem?)"
        if head != self.head_key:
            return f"head entry {head!r} where the table has {self.head_key!r} (different num_classes or last layer?)"
        if len(layers) != len(self.layers):
            return f"{len(layers)} searchable layers where the table has {len(self.layers)}"
        for index, (mine, theirs) in enumerate(zip(self.layers, layers)):
            mine, theirs = list(mine.items()), list(dict(theirs).items())
            if choices is not None:
                # Only the chosen block's key; a choice missing on either side is reported elsewhere.
                mine, theirs = ([(c, k) for c, k in pairs if c == choices[index]] for pairs in (mine, theirs))
                if not mine or not theirs:
                    continue
            if mine == theirs:
                continue
            if [c for c, _ in mine] != [c for c, _ in theirs]:
                return f"layer {index} candidates {[c for c, _ in theirs]} where the table has {[c for c, _ in mine]}"
            (_, key), (_, table_key) = next((t, m) for t, m in zip(theirs, mine) if t != m)
            return f"layer {index} entry {key!r} where the table has {table_key!r} (different widths or shapes?)"
        return None

    def check_space(self, space: Any, require_complete: bool = False) -> None:
        """Raises ``ValueError`` unless this table was built for ``space`` as it is defined now.

        Compares the name, version, resolution and width, then every entry key the
        space needs (stem, each layer's candidates in order, head), which also covers
        ``in_channels``, ``num_classes``, stage shapes and candidate lists.

        Args:
            space: A :class:`~hwnas.spaces.SearchSpace`.
            require_complete: Also refuse a table with missing entries.
        """
        if (self.space, self.space_version, self.resolution) != (space.name, space.version, space.resolution):
            raise ValueError(
                f"latency table is for {self.space} v{self.space_version} at {self.resolution}x{self.resolution}, "
                f"the search space is {space.name} v{space.version} at {space.resolution}x{space.resolution}"
            )
        if not math.isclose(self.width, space.width, rel_tol=0, abs_tol=1e-12):
            raise ValueError(f"latency table is for width {self.width:g}, the search space has width {space.width:g}")
        problem = self._key_mismatch(stem_key(space), head_key(space), layer_entry_keys(space))
        if problem:
            raise ValueError(f"latency table keys do not match the search space's layer shapes: the space has "
                             f"{problem}; build a table for this space")
        if self.head_channels is not None and self.head_channels != space.head_channels:
            raise ValueError(f"latency table is for a head of {self.head_channels} channels, the search space's has "
                             f"{space.head_channels}; build a table for this space")
        if require_complete:
            missing = self.missing_keys()
            if missing:
                raise ValueError(f"latency table is incomplete: {len(missing)} entries missing, e.g. {missing[0]!r}")

    def _check_arch(self, arch: Any) -> None:
        """Raises ``ValueError`` unless ``arch`` belongs to the space shape this table was built for.

        Checks the fields the architecture carries (space, version, layer count,
        resolution, width, channel widths) and, for a registered space, the entry
        keys of the space rebuilt from the architecture's options (``in_channels``,
        ``num_classes``, candidates...). An architecture of a user-defined space
        carries no definition to rebuild: check the table against that space with
        :meth:`check_space`.
        """
        from hwnas.spaces import Architecture

        if not isinstance(arch, Architecture):
            # A dict or a compact string would fail on a missing attribute deep inside.
            raise ValueError(f"expected an hwnas.spaces.Architecture (e.g. space.make_arch(choices) or "
                             f"Architecture.from_dict(data)), got {type(arch).__name__} {_short(arch)}")
        if arch.space != self.space:
            raise ValueError(f"architecture of space {arch.space!r} given to a table for space {self.space!r}")
        version = getattr(arch, "space_version", self.space_version)
        if version != self.space_version:
            raise ValueError(f"architecture of {arch.space} v{version} given to a table for v{self.space_version}")
        if len(arch.choices) != len(self.layers):
            raise ValueError(f"architecture has {len(arch.choices)} layers, the table {len(self.layers)}")
        if arch.resolution != self.resolution:
            raise ValueError(
                f"architecture resolution {arch.resolution} differs from the table's {self.resolution}; "
                "build a table at that resolution or use a learned predictor"
            )
        width = float(getattr(arch, "width", self.width))
        if not math.isclose(width, self.width, rel_tol=0, abs_tol=1e-12):
            raise ValueError(f"architecture width {width:g} differs from the table's {self.width:g}; "
                             "build a table at that width")
        extras = getattr(arch, "extras", None) or {}
        if extras.get("channels") is not None:
            widest = [int(layer_key_c_out(next(iter(layer.values())))) for layer in self.layers]
            if list(map(int, extras["channels"])) != widest:
                raise ValueError(
                    "architecture chooses channel widths the table was not built for; use a learned "
                    "predictor (hwnas.latency.predictors) for channel-searchable spaces"
                )
        space_options = getattr(arch, "space_options", None)
        options = json.dumps(dict(space_options), sort_keys=True, default=repr) if space_options else "{}"
        keys = _registered_space_keys(arch.space, version, int(arch.resolution), width, options)
        if keys is not None and self.head_channels is not None and keys[3] != self.head_channels:
            raise ValueError(f"the architecture's space ({arch.space} with options {json.loads(options)}) has a head of "
                             f"{keys[3]} channels; this table was built for {self.head_channels}")
        if keys is not None and keys[:3] != (self.stem_key, self.head_key, self.layers):  # the same: nothing to compare
            problem = self._key_mismatch(*keys[:3], choices=arch.choices)
            if problem:
                raise ValueError(f"the architecture's space ({arch.space} with options {json.loads(options)}) has "
                                 f"{problem}; this table was built for another shape of the space")

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
        """Layers of ``arch`` that run a block rather than a skip (the block term's count)."""
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
                (the fitted ``a * raw + b``, plus its block term, in :attr:`correction`),
                or ``"auto"`` (linear if fitted, else none).

        Raises:
            ValueError: Unknown correction, or one the table has no data for; ``arch``
                not an :class:`~hwnas.spaces.Architecture`; or an architecture of another
                space, version, resolution or width, or (of a
                registered space) with other ``in_channels``, ``num_classes`` or
                layer shapes. An architecture of a user-defined space does not carry
                its definition: check the table with :meth:`check_space` once.
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
            fitted = check_correction(self.correction)
            blocks = self.num_blocks(arch)
            return apply_correction(fitted, raw, blocks=blocks, blocks_squared=blocks ** 2)
        raise ValueError(f"correction must be 'none', 'overhead', 'linear' or 'auto', got {correction!r}")

    def layer_costs(self, layer: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Costs of layer ``layer``'s candidates, in its choice order (a constant tensor)."""
        keys = list(self.layers[layer].values())
        return torch.tensor([self.value(k) for k in keys], dtype=dtype)

    def expected_latency(self, probs: Sequence[torch.Tensor] | torch.Tensor, include_fixed: bool = True) -> torch.Tensor:
        """FBNet eq. 9: ``sum_l sum_i probs[l][i] * LUT(l, i)`` (+ stem + head), differentiable.

        Probabilities carry no space: check the table against the supernet's space
        once with :meth:`check_space`.

        Args:
            probs: Per layer, a tensor of candidate probabilities in the layer's
                choice order, shaped ``[num_choices]`` or ``[batch, num_choices]``;
                or one ``[num_layers, num_choices]`` tensor when layers share a count.
            include_fixed: Add the (constant) stem and head costs.

        Returns:
            A scalar (or ``[batch]``) tensor; gradients flow to ``probs``.

        Raises:
            ValueError: ``probs`` is not a tensor or a list of tensors (a NumPy array
                neither: convert it with ``torch.as_tensor``), a tensor is not of a
                floating-point dtype (the costs would be cast to it and an integer
                dtype truncates them), or the shapes do not match the table's layers.
        """
        expected = (f"a floating-point torch tensor [num_layers={len(self.layers)}, num_choices] or a list of "
                    "per-layer tensors [num_choices] / [batch, num_choices] of probabilities")
        if isinstance(probs, torch.Tensor):
            if probs.dim() < 2 or probs.shape[0] != len(self.layers):
                raise ValueError(f"probs tensor must be [num_layers={len(self.layers)}, num_choices], got {tuple(probs.shape)}")
            probs = list(probs.unbind(0))
        elif not isinstance(probs, (list, tuple)):
            raise ValueError(f"probs must be {expected}, got {type(probs).__name__}")
        if len(probs) != len(self.layers):
            raise ValueError(f"got probabilities for {len(probs)} layers, the table has {len(self.layers)}")
        total = None
        for index, p in enumerate(probs):
            if not isinstance(p, torch.Tensor) or p.dim() < 1:
                raise ValueError(f"probs[{index}] must be a tensor of probabilities [num_choices] or "
                                 f"[batch, num_choices]; probs must be {expected}, got {_short(p)}")
            if not p.is_floating_point():
                # The costs are cast to the probabilities' dtype: an integer one would
                # truncate every cost (and carries no gradient).
                raise ValueError(f"probs must be floating-point probabilities (e.g. .float()), layer {index} has "
                                 f"dtype {p.dtype}")
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
            statistic: One of :data:`LOCATION_STATISTICS` (``"min"``, ``"p10"``, ``"p25"``,
                ``"median"``, ``"mean"``, ``"p75"``, ``"p90"``, ``"max"``), read from the
                ``<name>_us`` fields of the entries' timing statistics. Low quantiles are
                steadier than the median on a machine shared with other jobs, since
                interference only ever adds time.

        Raises:
            ValueError: Another statistic (a spread such as ``"std"`` or ``"iqr"`` is
                no latency: a table of them would predict sums of spreads), or an entry
                without it (e.g. a fitted or user table).
        """
        if not isinstance(statistic, str) or statistic not in LOCATION_STATISTICS:
            raise ValueError(f"no statistic {_short(statistic)} to predict with: statistic must be one of "
                             f"{list(LOCATION_STATISTICS)} (a latency an entry can stand for; spreads such as "
                             "'std' and 'iqr' do not add up to a model's latency)")
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
        """Refuses to combine tables of different spaces, clocks, drift corrections or (unless
        allowed) fingerprints.

        Tables are of the same space when name, version, resolution and width agree and
        so do all entry keys (a table of another ``in_channels``, ``num_classes`` or
        candidate list has other stem, head or layer keys). Their entries must also add
        up: one clock and one drift-correction setting (and reference), the rule a
        resumed build follows (:func:`scale_difference`), whatever ``allow_mixed`` says;
        a table with nothing measured adds up with any.

        Raises:
            ValueError: Naming what differs.
        """
        same_space = (self.space, self.space_version, self.resolution, self.width) == (
            other.space, other.space_version, other.resolution, other.width)
        if not same_space:
            raise ValueError(
                f"tables are for different spaces: {self.space} v{self.space_version} @ {self.resolution} width "
                f"{self.width} vs {other.space} v{other.space_version} @ {other.resolution} width {other.width}"
            )
        problem = self._key_mismatch(other.stem_key, other.head_key, other.layers)
        if not problem and None not in (self.head_channels, other.head_channels) and \
                self.head_channels != other.head_channels:
            problem = f"a head of {other.head_channels} channels, this one {self.head_channels}"
        if problem:
            raise ValueError(f"tables are for different shapes of space {self.space!r}: the other has {problem}")
        if (self.metric, self.unit) != (other.metric, other.unit):
            raise ValueError(f"tables measure different things: {self.metric}/{self.unit} vs {other.metric}/{other.unit}")
        self._check_same_scale(other)
        diffs = fingerprint_differences(self.fingerprint, other.fingerprint)
        if diffs and not allow_mixed:
            raise ValueError(
                "refusing to mix tables measured on different devices/settings (pass allow_mixed=True / "
                "--allow-mixed to combine them anyway): " + "; ".join(diffs)
            )

    def _measured_anything(self) -> bool:
        return bool(self.entries) or self.call_overhead is not None

    def _check_same_scale(self, other: "LatencyTable") -> None:
        """Refuses ``other`` unless its entries add up with this table's (see :func:`scale_difference`)."""
        if not self._measured_anything():
            return
        drift = self.notes.get("drift_correction")
        difference = scale_difference(other, self.timing_clock(), bool(drift), drift)
        if difference is None:
            return
        what, theirs, mine = difference
        if what == "clock":
            raise ValueError(f"tables were timed with different clocks: this one with {mine!r}, the other with "
                             f"{theirs!r}; entries of two clocks do not add up (build both with one --clock)")
        if what == "drift_correction":
            this, that = ("with", "without") if mine else ("without", "with")
            raise ValueError(f"this table was built {this} drift correction, the other {that}: their entries are "
                             "on different scales and do not add up (build both with or both without "
                             "--drift-correction)")
        raise ValueError(f"tables were drift-corrected to different references and baselines: this one "
                         f"{mine}, the other {theirs}; their entries are on different scales and do not add up")

    def merge(self, other: "LatencyTable", allow_mixed: bool = False) -> "LatencyTable":
        """Adds ``other``'s entries that this table lacks (this table's values win).

        Raises:
            ValueError: See :meth:`check_compatible`.
        """
        self.check_compatible(other, allow_mixed)
        if not self._measured_anything() and other._measured_anything():
            # The entries taken over are the only measurements: the merged table must
            # report their clock and drift scale, not the defaults of an empty one.
            for note in ("timing", "drift_correction"):
                if note in other.notes:
                    self.notes[note] = copy.deepcopy(other.notes[note])
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
            "head_channels": self.head_channels,
            "space_options": self.space_options,
            "layers": self.layers,
            "entries": {k: e.to_dict() for k, e in self.entries.items()},
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "table") -> "LatencyTable":
        """Reads a table document, checking every field.

        Entry values must be finite and >= 0; only the stem entry of a ``"refined"``
        table (a fitted fixed part, see
        :func:`~hwnas.latency.predictors.refine_table_from_models`) may be negative.

        Raises:
            ValueError: Another format or version, or a missing or malformed field;
                the message names ``source`` and the field.
        """
        check_format(data, TABLE_FORMAT, (TABLE_FORMAT_VERSION,), source)
        try:
            layers = _field(data, "layers", "list", source)
            for index, layer in enumerate(layers):
                if not isinstance(layer, Mapping) or not all(isinstance(v, str) for v in layer.values()):
                    raise ValueError(f"{source}: layers[{index}] must be an object {{choice: entry key}}, "
                                     f"got {_short(layer)}")
            stored = _field(data, "entries", "object", source)
            table_source = _field(data, "source", "str", source, default="measured")
            stem = _field(data, "stem_key", "str", source)
            entries = {
                key: TableEntry.from_dict(value, source, f"entries[{key!r}].",
                                          allow_negative=key == stem and table_source == "refined")
                for key, value in stored.items()
            }
            correction = data.get("correction")
            return cls(
                space=_field(data, "space", "str", source),
                space_version=_field(data, "space_version", "int", source, minimum=1),
                resolution=_field(data, "resolution", "int", source, minimum=1),
                width=_field(data, "width", "number", source, minimum=1e-12),
                fingerprint=_field(data, "fingerprint", "object", source),
                layers=[dict(layer) for layer in layers],
                stem_key=stem,
                head_key=_field(data, "head_key", "str", source),
                head_channels=_field(data, "head_channels", "int", source, default=None, minimum=0),
                space_options=_field(data, "space_options", "object", source, default=None),
                entries=entries,
                metric=_field(data, "metric", "str", source, default="latency"),
                unit=_field(data, "unit", "str", source, default="us"),
                call_overhead=_field(data, "call_overhead", "number", source, default=None, minimum=0),
                correction=None if correction is None else check_correction(correction, source),
                source=table_source,
                notes=_field(data, "notes", "object", source, default={}),
            )
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            raise ValueError(f"{source}: malformed latency table ({exc!r})") from exc

    def save(self, path: str | os.PathLike, fsync: bool = True) -> None:
        """Writes the table atomically (``fsync=False``: see :func:`hwnas._io.atomic_write_text`)."""
        write_json(path, self.to_dict(), fsync=fsync)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LatencyTable":
        """Reads a table file (see :meth:`from_dict` for what is checked).

        Raises:
            FileNotFoundError: No such file.
            IsADirectoryError: ``path`` is a folder.
            ValueError: Not JSON, another format or version, or a malformed field;
                the message names the file and the field.
        """
        return cls.from_dict(_read_document(path, TABLE_FORMAT, (TABLE_FORMAT_VERSION,)), source=os.fspath(path))

    def __repr__(self) -> str:
        return (
            f"LatencyTable(space={self.space!r}, resolution={self.resolution}, target={self.fingerprint.get('target')!r}, "
            f"entries={len(self.entries)}/{len(self.required_keys())}, metric={self.metric}/{self.unit})"
        )


def layer_key_c_out(key: str) -> int:
    """The output channels encoded in an entry key."""
    channels = key.split("|")[1]
    return int(channels.split("-")[1])


def apply_correction(correction: Mapping[str, Any], raw: Any, *, blocks: Any = None, blocks_squared: Any = None) -> Any:
    """Applies a fitted correction to a raw table sum: ``a * raw + b + per_block * blocks + depth * blocks_squared``.

    The block terms are what a whole model pays beyond the sum of its blocks timed
    alone. ``per_block`` (us per non-skip block) is the one hwnas fits (see
    :func:`~hwnas.latency.validation.fit_linear_correction`); ``depth`` (us per
    squared block count) is kept for corrections fitted before calibration version 6,
    so that a table saved then still predicts what it predicted. A term absent or 0
    needs no count. The counts are keyword-only: before version 6 the third argument
    was the squared count, and a caller still passing it would be read wrongly.

    Args:
        correction: A fitted correction (``kind`` ``"linear"``).
        raw: Table sum(s): a float or a tensor (then the result is a differentiable tensor).
        blocks: The number of non-skip blocks (or its expectation); required when
            the correction has a ``per_block`` term.
        blocks_squared: The squared number of non-skip blocks (or its expectation);
            required when the correction has a ``depth`` term.

    Raises:
        ValueError: Not a valid correction (see :func:`check_correction`), or a block
            term without its count.
    """
    correction = check_correction(correction)
    value = raw * float(correction["a"]) + float(correction["b"])
    per_block = float(correction.get("per_block") or 0.0)
    if per_block:
        if blocks is None:
            raise ValueError("this correction has a per-block term: pass the (expected) number of blocks")
        value = value + per_block * blocks
    depth = float(correction.get("depth") or 0.0)
    if depth:
        if blocks_squared is None:
            raise ValueError("this correction has a depth term: pass the (expected) squared number of blocks")
        value = value + depth * blocks_squared
    return value
