"""Building latency tables by measuring every distinct (input shape, block) pair once.

The build is resumable: after every measurement the table is written atomically to
its path, so an interrupted build (Ctrl-C, a crash, a killed job) loses at most
the measurement in flight; running the build again with the same path continues
with the missing entries. A table on disk measured under another fingerprint is
refused unless ``allow_mixed=True``.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

import torch

from .harness import TimingConfig
from .table import LatencyTable, TableEntry
from .targets import Target

__all__ = ["build_table", "DEFAULT_TABLE_TIMING"]

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
        ValueError: The table at ``path`` is for another space, or was measured
            under another fingerprint and ``allow_mixed`` is false.
    """
    config = config or DEFAULT_TABLE_TIMING
    fingerprint = target.fingerprint()
    table = LatencyTable.for_space(space, fingerprint)
    if path is not None and resume and os.path.exists(path):
        existing = LatencyTable.load(path)
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

    from dataclasses import asdict

    # Validation measures whole models with the same clock; keep what the entries used.
    table.notes["timing"] = asdict(config)
    if notes:
        table.notes.update(notes)

    def save(final: bool = False) -> None:
        # Every entry is saved (atomically) as soon as it is measured; only the final
        # save waits for the disk, which would otherwise dominate builds of fast blocks.
        if path is not None:
            table.save(path, fsync=final)

    if table.call_overhead is None:
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
