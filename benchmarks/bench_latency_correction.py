"""Which correction turns a search table's sums into whole-model latencies: held-out models.

A search table stores the calibration models its correction was fitted on and what
they measured. This script refits every candidate form on those same models, then
measures other models (never used in any fit) on the table's scale
(:func:`hwnas.latency.table_scale.measure_on_table_scale`: beside the calibration
models, scaled by how much faster those ran when the table was calibrated) and
prints how far each form's predictions miss them. Forms, with ``raw`` the table sum,
``offset`` the per-call overheads a whole model pays once and ``n`` its number of
non-skip blocks:

* ``proportional``: ``a * (raw - offset)``;
* ``affine``: ``a * raw + b`` (held above a tenth of the smallest sum);
* ``blocks^2``: ``a * (raw - offset) + depth * n**2`` (hwnas' form before
  calibration version 6; fitted here with numpy);
* ``per block``: ``a * (raw - offset) + per_block * n`` (the form hwnas fits now).

Held-out models come in two draws with other seeds than the calibration's: one
spread in block sizes only, one spread in block sizes and in the share of skipped
layers (as the calibration models are drawn); ``--archs`` adds architectures of your
own (e.g. searched ones), one compact string per line. A model that is also a
calibration model is left out of every set.

Usage::

    python benchmarks/bench_latency_correction.py                      # the README search's table (built if not cached)
    python benchmarks/bench_latency_correction.py --width 0.5          # the acceptance experiment's space (README table)
    python benchmarks/bench_latency_correction.py --table runs/x/latency_table.json --archs searched.txt
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import machine_line  # noqa: E402

from hwnas._argtypes import positive_int  # noqa: E402
from hwnas.latency.table import LatencyTable  # noqa: E402
from hwnas.latency.table_scale import calibration_models, measure_on_table_scale  # noqa: E402
from hwnas.latency.targets import get_target  # noqa: E402
from hwnas.latency.validation import fit_linear_correction, sample_spread_architectures  # noqa: E402
from hwnas.search.tables import measuring_target  # noqa: E402
from hwnas.spaces import space_for_architecture  # noqa: E402


def _fit_blocks_squared(raw, measured, offset, blocks) -> tuple[float, float]:
    """``measured ~ a * (raw - offset) + depth * n**2``, relative least squares, ``depth >= 0``."""
    x, y, n = (np.asarray(v, dtype=float) for v in (raw, measured, blocks))
    w = 1.0 / y
    (a, depth), *_ = np.linalg.lstsq(np.stack([(x - offset) * w, n ** 2 * w], axis=1), np.ones_like(y), rcond=None)
    if not (a > 0 and depth >= 0):  # as hwnas' fit fell back: the proportional scale
        r = (x - offset) * w
        return float(r.sum() / (r @ r)), 0.0
    return float(a), float(depth)


def fitted_forms(table: LatencyTable) -> tuple[dict[str, Any], dict[str, str]]:
    """Every form fitted on ``table``'s stored calibration models: ``{name: predict(raw, n)}``."""
    calibration = calibration_models(table)
    raw = [table.predict(arch, correction="none") for arch, _ in calibration]
    measured = [us for _, us in calibration]
    blocks = [table.num_blocks(arch) for arch, _ in calibration]
    # As validate_table fits them: the overheads capped at 0.9 of the smallest sum.
    offset = min((table.num_units() - 1) * float(table.call_overhead or 0.0), 0.9 * table.smallest_sum(),
                 0.9 * min(raw))
    prop = fit_linear_correction(raw, measured, intercept=False, offset=offset)
    smallest = min(table.smallest_sum(), min(raw))
    affine = fit_linear_correction(raw, measured, intercept=True, floor=smallest if smallest > 0 else None)
    a2, depth = _fit_blocks_squared(raw, measured, offset, blocks)
    per = fit_linear_correction(raw, measured, intercept=False, offset=offset, blocks=blocks)
    return {
        "proportional": lambda x, n: prop["a"] * x + prop["b"],
        "affine": lambda x, n: affine["a"] * x + affine["b"],
        "blocks^2": lambda x, n: a2 * (x - offset) + depth * n * n,
        "per block": lambda x, n: per["a"] * x + per["b"] + per["per_block"] * n,
    }, {"blocks^2": f"a {a2:.3f} depth {depth:.2f} us", "per block": f"a {per['a']:.3f} per_block {per['per_block']:.1f} us",
        "affine": f"a {affine['a']:.3f} b {affine['b']:.0f} us", "proportional": f"a {prop['a']:.3f}"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", help="a calibrated search table (a run's latency_table.json or a cached one); "
                                   "default: the cached table of `hwnas search` on digits at --resolution/--width, "
                                   "built and calibrated if missing")
    p.add_argument("--resolution", type=positive_int, default=8, help="input side of the default table's space (8)")
    p.add_argument("--width", type=float, default=0.25, help="width of the default table's space (0.25, the README's)")
    p.add_argument("--cache-dir", help="latency-table cache (default: hwnas search's)")
    p.add_argument("--spread", type=positive_int, default=24, help="held-out models spread in block sizes (24)")
    p.add_argument("--skips", type=positive_int, default=30,
                   help="held-out models spread in block sizes and skipped layers, as the calibration is (30)")
    p.add_argument("--seed", type=int, default=7, help="seed of the held-out draws (7 and 7 + 1; the calibration uses 0)")
    p.add_argument("--archs", help="a file of further architectures, one compact string per line (e.g. searched ones)")
    p.add_argument("--target", default="eager", help="the target the table was built for (eager)")
    p.add_argument("--threads", type=positive_int, default=1, help="threads of the measurements, as the table's (1)")
    return p.parse_args(argv)


def _table(args) -> LatencyTable:
    if args.table:
        return LatencyTable.load(args.table)
    from hwnas.data import load_dataset
    from hwnas.search.pipeline import PipelineConfig, make_space, search_table

    config = PipelineConfig(resolution=args.resolution, width=args.width, cache_dir=args.cache_dir)
    data = load_dataset(config.data)
    space = make_space(config, data.in_channels, data.num_classes)
    return search_table(config, space)


def main(argv=None) -> int:
    args = parse_args(argv)
    table = _table(args)
    calibration = calibration_models(table)  # refuses a table without stored calibration models
    space = space_for_architecture(calibration[0][0])
    target = measuring_target(get_target(args.target, threads=args.threads), space, table)
    seen = {arch.to_string() for arch, _ in calibration}
    sets: dict[str, list] = {}
    for name, count, seed, vary in (("spread", args.spread, args.seed, False), ("spread+skips", args.skips, args.seed + 1, True)):
        archs = [a for a in sample_spread_architectures(space, count, seed=seed, vary_skips=vary) if a.to_string() not in seen]
        seen.update(a.to_string() for a in archs)
        sets[name] = archs
    if args.archs:
        with open(args.archs) as f:
            own = [space.make_arch(line.strip()) for line in f if line.strip()]
        kept = [a for a in own if a.to_string() not in {c.to_string() for c, _ in calibration}]
        if len(kept) < len(own):
            print(f"--archs: {len(own) - len(kept)} of them are calibration models, left out")
        sets["--archs"] = kept
    sets = {name: archs for name, archs in sets.items() if archs}
    models = [a for archs in sets.values() for a in archs]
    shape = (space.in_channels, space.resolution, space.resolution)
    print(machine_line())
    print(f"table: {space.name} at {space.resolution}x{space.resolution}, width {space.width:g}, {len(calibration)} "
          f"calibration models; measuring {len(models)} held-out models on its scale ...", flush=True)
    forms, params = fitted_forms(table)  # before minutes of measuring: a fit that fails, fails now
    result = measure_on_table_scale([(space.build(a), shape) for a in models], table, space, target, progress=True)
    measured = iter(result["table_scale_us"])
    print(f"scale {result['scale']:.3f} (median calibrated/now over the calibration models)")
    print(f"{'form':>13} {'fitted':>28} " + " ".join(f"{name + ' (' + str(len(a)) + ')':>28}" for name, a in sets.items()))
    print(f"{'':>13} {'':>28} " + " ".join(f"{'rms   max   mean err':>28}" for _ in sets))
    per_set = {name: [(table.predict(a, correction="none"), table.num_blocks(a), next(measured)) for a in archs]
               for name, archs in sets.items()}
    for form, predict in forms.items():
        cells = []
        for rows in per_set.values():
            err = np.array([m / predict(x, n) - 1 for x, n, m in rows])
            cells.append(f"{100 * np.sqrt(np.mean(err ** 2)):5.1f}% {100 * np.abs(err).max():5.1f}% {100 * err.mean():+5.1f}%")
        print(f"{form:>13} {params[form]:>28} " + " ".join(f"{c:>28}" for c in cells))
    print("err = measured / predicted - 1; every form fitted on the table's own calibration models only")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
