"""Building latency tables by measuring every distinct (input shape, block) pair once.

The build is resumable: after every measurement the table is written atomically to
its path, so an interrupted build (Ctrl-C, a crash, a killed job) loses at most
the measurement in flight; running the build again with the same path continues
with the missing entries. A table on disk measured under another fingerprint is
refused unless ``allow_mixed=True``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping, Optional

import torch

from hwnas._io import read_text

from .harness import TimingConfig
from .table import TABLE_FORMAT, LatencyTable, TableEntry, scale_difference
from .targets import Target

__all__ = ["build_table", "DEFAULT_TABLE_TIMING", "check_overwritable", "check_resumable"]

#: Timing settings of table entries: 1% CI of the median at 95%, at most 1.5 s each.
DEFAULT_TABLE_TIMING = TimingConfig(warmup_iters=20, warmup_s=0.05, min_samples=15, target_rel_ci=0.01, budget_s=1.5)


def _module_for_key(space: Any, table: LatencyTable, key: str) -> tuple[torch.nn.Module, tuple[int, int, int]]:
    """The module and its input shape ``(C, H, W)`` that entry ``key`` measures."""
    from hwnas.spaces import build_block

    if key == table.stem_key:
        return space.build_stem(), (space.in_channels, space.resolution, space.resolution)
    if key == table.head_key:
        last = space.layers[-1]
        return space.build_head(last.c_out), (last.c_out, *last.out_hw)
    for layer, keys in zip(space.layers, table.layers):
        for choice, layer_key in keys.items():
            if layer_key == key:
                return build_block(choice, layer.c_in, layer.c_out, layer.stride), (layer.c_in, *layer.in_hw)
    raise ValueError(f"entry key {key!r} belongs to no layer of space {space.name!r}")


def _entry_shape(space: Any, table: LatencyTable, key: str, module_shape: tuple[int, int, int]) -> dict[str, Any]:
    block, channels, stride, _ = key.split("|")
    c_in, c_out = (int(c) for c in channels[1:].split("-"))
    return {"block": block, "c_in": c_in, "c_out": c_out, "stride": int(stride[1:]), "in_hw": module_shape[1:]}


def check_overwritable(path: str | os.PathLike) -> None:
    """Refuses to write a table at ``path`` when a file there is not a latency table.

    A build writes its table over ``path`` (a restarted build from scratch): a mistyped
    path must not replace a run's ``config.json`` or any other file. A JSON document of
    the latency-table format may be replaced, even one whose fields are damaged;
    anything else, including a file that is not JSON (a truncated table too: it can no
    longer be told from other files), is refused.

    Raises:
        ValueError: ``path`` holds a file that is not a latency table; the message
            names it and its format.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        return
    try:
        data = json.loads(read_text(path))
    except ValueError:  # not UTF-8 text (read_text), or not JSON (json.JSONDecodeError)
        what = "not a JSON document"
    else:
        found = data.get("format") if isinstance(data, dict) else None
        if found == TABLE_FORMAT:
            return
        what = f"a document of format {found!r}" if found is not None else "JSON without a latency table's format"
    raise ValueError(f"{path} exists and is not a latency table ({what}, where a table has format "
                     f"{TABLE_FORMAT!r}): refusing to write a table over it, with or without --restart; give "
                     "another output path (--out), or move the file away")


def check_resumable(existing: LatencyTable, clock: str, drift_correction: bool,
                    drift_notes: Optional[Mapping[str, Any]] = None, source: str = "latency table") -> None:
    """Refuses to continue ``existing`` with measurements that would not add up with its own.

    Entries of one table are summed into model latencies, so they must share one
    clock (CPU time leaves out the waiting that wall time counts) and one drift
    scale (a drift-corrected entry is scaled to the speed its reference model had
    when the table's baseline was taken; an uncorrected one is not). A table with
    nothing measured yet may be continued with any setting. The rule is
    :func:`~hwnas.latency.table.scale_difference`, which merging tables applies too.

    Args:
        existing: The table on disk.
        clock: The clock the build would time with (``TimingConfig.clock``).
        drift_correction: Whether the build scales its measurements to a drift reference.
        drift_notes: The drift reference of the build (``DriftCorrectedTarget.describe()``),
            compared with the table's when both have one; ``None``: not compared.
        source: The table's file, first in the message.

    Raises:
        ValueError: The clock or the drift correction differs from the table's; the
            message says which setting continues the table.
    """
    difference = scale_difference(existing, clock, drift_correction, drift_notes)
    if difference is None:
        return
    what, old, new = difference
    if what == "clock":
        raise ValueError(
            f"{source}: its entries were timed with the {old!r} clock, this build would time with "
            f"{new!r}; entries of two clocks do not add up. Continue it with clock={old!r} "
            f"(--clock {old}), or build it again from scratch (resume=False / --restart)")
    if what == "drift_correction":
        if old:
            raise ValueError(
                f"{source}: it was built with drift correction (entries scaled to the speed of its reference "
                f"model, baseline {old.get('baseline_us')} us), this build would measure without; continue it "
                "with drift correction (--drift-correction), or build it again from scratch (--restart)")
        raise ValueError(
            f"{source}: it was built without drift correction, this build would scale its measurements to a "
            "drift reference; continue it without --drift-correction, or build it again from scratch (--restart)")
    raise ValueError(
        f"{source}: its drift reference and baseline {old} differ from this build's {new}: the new "
        "entries would be on another scale; continue it with the table's reference (drift_corrected_target"
        "(target, space, table.notes['drift_correction'])), or build it again from scratch")


def build_table(
    space: Any,
    target: Target,
    path: Optional[str | os.PathLike] = None,
    config: Optional[TimingConfig] = None,
    resume: bool = True,
    allow_mixed: bool = False,
    progress: bool = True,
    seed: int = 0,
    on_entry: Optional[Callable[[str, TableEntry], None]] = None,
    notes: Optional[dict[str, Any]] = None,
) -> LatencyTable:
    """Measures the latency table of ``space`` on ``target``.

    Args:
        space: A :class:`~hwnas.spaces.SearchSpace` (its default resolution and widths).
        target: Where to measure (:func:`~hwnas.latency.targets.get_target`).
        path: JSON file written after every entry; with ``resume`` an existing
            file there is continued rather than rebuilt.
        config: Timing settings per entry (default :data:`DEFAULT_TABLE_TIMING`).
        resume: Continue the table found at ``path``. If false, an existing file
            is replaced by a fresh build.
        allow_mixed: Continue a table measured under a different fingerprint.
        progress: Show a progress bar (tqdm, on stderr).
        seed: Seed for the blocks' random weights (latency does not depend on
            them for dense kernels, but reproducibility costs nothing).
        on_entry: Called as ``on_entry(key, entry)`` after each measurement
            (after it is saved), e.g. for logging or to stop a build in tests.
        notes: Merged into ``table.notes`` before the first measurement (and so
            saved with every entry), e.g. the drift-correction baseline.

    Returns:
        The complete table (also saved at ``path`` if given).

    Raises:
        ValueError: The table at ``path`` is for another space, was measured under
            another fingerprint and ``allow_mixed`` is false, or with another clock or
            drift correction (see :func:`check_resumable`); or ``path`` holds a file that
            is not a latency table (see :func:`check_overwritable`).
    """
    from dataclasses import asdict

    from .drift import DriftCorrectedTarget

    config = config or DEFAULT_TABLE_TIMING
    fingerprint = target.fingerprint()
    table = LatencyTable.for_space(space, fingerprint)
    if path is not None:
        check_overwritable(path)
    drift_notes = (notes or {}).get("drift_correction")
    if drift_notes is None and isinstance(target, DriftCorrectedTarget):
        # Without a baseline yet, its first measurement sets one: another scale than a
        # stored baseline, which the comparison below then refuses.
        drift_notes = target.describe()
    resumed = False
    if path is not None and resume and os.path.exists(path):
        existing = LatencyTable.load(path)
        check_resumable(existing, config.clock, bool(drift_notes), drift_notes, source=os.fspath(path))
        # The fresh table's fingerprint goes first: the comparison says what the
        # file on disk was measured with versus what this build would measure with.
        try:
            table.check_compatible(existing, allow_mixed=allow_mixed)  # also compares every entry key
        except ValueError as exc:
            raise ValueError(f"{os.fspath(path)}: {exc}") from None
        table.entries.update(existing.entries)
        table.call_overhead = existing.call_overhead
        table.notes = existing.notes
        # A fitted correction belongs to the entries it was fitted on: keep it.
        table.correction = existing.correction
        resumed = bool(existing.entries) or existing.call_overhead is not None

    if notes:
        table.notes.update(notes)
    timing = asdict(config)
    # The settings of this build's measurements: None until it measures something, so a
    # table with nothing left to measure keeps the notes of those who measured it.
    this_run: Optional[dict[str, Any]] = None

    def note_timing(key: Optional[str] = None) -> None:
        """Records the settings ``key`` (or the call overhead) is about to be measured with."""
        nonlocal this_run
        if this_run is None:
            stored = table.notes.get("timing")
            if not resumed:
                # Validation times whole models with the clock stored here.
                table.notes["timing"] = timing
                this_run = {}
            elif stored == timing:
                this_run = {}
            else:
                # The entries already measured keep the settings they were measured with
                # (the clock is the same, see check_resumable); these are noted apart.
                this_run = {"timing": timing, "entries": []}
                table.notes.setdefault("timing_resumed", []).append(this_run)
        if key is not None and "entries" in this_run:
            this_run["entries"].append(key)

    def save(final: bool = False) -> None:
        # Every entry is saved (atomically) as soon as it is measured; only the final
        # save waits for the disk, which would otherwise dominate builds of fast blocks.
        if path is not None:
            table.save(path, fsync=final)

    if table.call_overhead is None:
        note_timing()
        shape = (space.in_channels, space.resolution, space.resolution)
        table.call_overhead = target.call_overhead(shape, config).median_us
        save()

    missing = table.missing_keys()
    bar = None
    if progress and missing:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(table.required_keys()), initial=len(table.required_keys()) - len(missing),
                   desc=f"latency table {space.name}@{space.resolution} on {target.name}", unit="entry")
    try:
        for key in missing:
            torch.manual_seed(seed)
            note_timing(key)
            module, shape = _module_for_key(space, table, key)
            result = target.measure(module, shape, config)
            info = _entry_shape(space, table, key, shape)
            entry = TableEntry(value=result.median_us, stats=result.summary(), **info)
            table.entries[key] = entry
            save()
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{info['block']} {result.median_us:.1f}us")
            if on_entry is not None:
                on_entry(key, entry)
    finally:
        if bar is not None:
            bar.close()
    save(final=True)
    return table
