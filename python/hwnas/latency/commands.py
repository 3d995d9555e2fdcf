"""``hwnas latency build|validate|overhead`` command-line handlers.

Wire into the main CLI with ``hwnas.latency.commands.add_subparser(subparsers)``.
"""

from __future__ import annotations

import argparse
import json
import sys
import os
from typing import Any

from hwnas._argtypes import non_negative_int, positive_float, positive_int, thread_count

__all__ = ["add_subparser", "main"]


def _space(name_or_file: str, resolution: int, width: float | None) -> Any:
    """A registered space by name, or a user-defined space's JSON file, at ``resolution``
    (and ``width``), shaped as a search shapes it."""
    from hwnas.spaces import get_space, load_space

    kwargs: dict[str, Any] = {"resolution": resolution}
    if width is not None:
        kwargs["width"] = width
    return (load_space if os.path.isfile(name_or_file) else get_space)(name_or_file, **kwargs)


def _target(args: argparse.Namespace) -> Any:
    from .targets import get_target

    return get_target(args.target, threads=args.threads, batch=args.batch)


def _timing(args: argparse.Namespace, base: Any, clock: str = "steady") -> Any:
    from dataclasses import replace

    base = replace(base, clock=args.clock or clock)
    if getattr(args, "flush_mb", None):
        base = replace(base, flush_bytes=int(args.flush_mb * (1 << 20)))
    # A short budget asks for a quick run: keep the warm-up in proportion.
    return replace(base, target_rel_ci=args.rel_ci, budget_s=args.budget, warmup_s=min(base.warmup_s, args.budget / 4),
                   warmup_iters=min(base.warmup_iters, max(2, int(args.budget * 1000))))


def _refuse_folder(path: str | None, option: str) -> None:
    """A file option given a folder is refused before anything is measured."""
    if path and os.path.isdir(path):
        raise ValueError(f"{option} {path} is a folder; give a file path")


def _cmd_build(args: argparse.Namespace) -> int:
    from .build import DEFAULT_TABLE_TIMING, build_table
    from .fingerprint import machine_line
    from .table import LatencyTable

    _refuse_folder(args.out, "--out")
    if args.clock == "thread_cpu" and args.threads != 1:
        raise ValueError(f"--clock thread_cpu times the calling thread only: it needs --threads 1 "
                         f"(got {args.threads}); use --clock steady for more threads")
    space = _space(args.space, args.resolution, args.width)
    target = _target(args)
    config = _timing(args, DEFAULT_TABLE_TIMING)
    notes = None
    if args.drift_correction:
        # A resumed build keeps the scale of the entries already measured.
        stored = None
        if not args.restart and os.path.exists(args.out):
            stored = LatencyTable.load(args.out).notes.get("drift_correction")
        from .drift import drift_corrected_target

        target = drift_corrected_target(target, space, stored)
        target.calibrate(config)
        notes = {"drift_correction": target.describe()}
    table = build_table(space, target, args.out, config=config, resume=not args.restart,
                        allow_mixed=args.allow_mixed, progress=not args.quiet, notes=notes)
    print(f"{table!r} -> {args.out}")
    print(f"machine: {machine_line(table.fingerprint)}")
    print(f"per-call overhead of the target: {table.call_overhead:.3f} {table.unit}")
    if args.drift_correction:
        print(f"drift correction: reference {target.baseline_us:.1f} {table.unit}; {target.factor_summary()}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from .table import LatencyTable
    from .targets import target_from_fingerprint
    from .validation import DEFAULT_MODEL_TIMING, validate_table

    _refuse_folder(args.table, "--table")
    _refuse_folder(args.plot, "--plot")
    _refuse_folder(args.report, "--report")
    table = LatencyTable.load(args.table)
    space = _space(args.space_file or table.space, table.resolution, table.width if table.width != 1.0 else None)
    if space.name != table.space:
        raise ValueError(f"--space-file {args.space_file} defines space {space.name!r}, the table is of {table.space!r}")
    target = target_from_fingerprint(table.fingerprint)
    stored = table.notes.get("drift_correction")
    if stored and not args.no_drift_correction:
        # Same reference and baseline as the build: models and entries share one scale.
        from .drift import drift_corrected_target

        target = drift_corrected_target(target, space, stored)
    report = validate_table(
        table, space, target, num_archs=args.num_archs, num_calibration=args.calibration, seed=args.seed,
        config=_timing(args, DEFAULT_MODEL_TIMING, table.notes.get("timing", {}).get("clock", "steady")),
        allow_mixed=args.allow_mixed, progress=not args.quiet,
        plot_path=args.plot, report_path=args.report, refine_strength=args.refine_strength,
    )
    if args.calibration and args.store_correction:
        table.save(args.table)
    print("\n".join(report.summary_lines()))
    if args.plot:
        print(f"plot: {args.plot}")
    if args.report:
        print(f"report: {args.report}")
    return 0


def _cmd_overhead(args: argparse.Namespace) -> int:
    from .harness import clock_pair_cost_ns, harness_overhead, python_call_overhead

    out = {
        "harness_empty_body_ns": harness_overhead().median_us * 1e3,
        "python_call_ns": python_call_overhead().median_us * 1e3,
        "clock_pair_ns": clock_pair_cost_ns(),
    }
    print(json.dumps(out, indent=1))
    return 0


def _common(p: argparse.ArgumentParser, model: bool) -> None:
    p.add_argument("--rel-ci", type=positive_float, default=0.01, help="target relative CI width of each median (default 0.01)")
    p.add_argument("--budget", type=positive_float, default=3.0 if model else 1.5, help="seconds per measurement at most")
    p.add_argument("--allow-mixed", action="store_true", help="accept tables/targets with different fingerprints")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--clock", choices=("steady", "thread_cpu"), default=None,
                   help="steady (wall time, default for build) or thread_cpu (CPU time of the timing thread: "
                        "robust on a shared machine, needs --threads 1); validate defaults to the table's clock")


def add_subparser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds ``latency`` with sub-commands ``build``, ``validate`` and ``overhead``."""
    latency = subparsers.add_parser("latency", help="latency tables: build, validate, harness overhead")
    sub = latency.add_subparsers(dest="latency_command", required=True)

    build = sub.add_parser("build", help="measure a latency table (resumable)")
    build.add_argument("--space", required=True, help="search space name (e.g. fbnet, fbnet_small) or a space JSON file")
    build.add_argument("--resolution", type=int, required=True, help="input side length, e.g. 32 or 64")
    build.add_argument("--width", type=float, default=None, help="width multiplier of the space")
    build.add_argument("--target", default="eager", help="eager, torchscript or onnxruntime")
    build.add_argument("--threads", type=thread_count, default=1, help="intra-op threads of the measurements (default 1)")
    build.add_argument("--batch", type=positive_int, default=1, help="batch size of the measured inputs (default 1)")
    build.add_argument("--out", required=True, help="table JSON path (continued if it exists)")
    build.add_argument("--restart", action="store_true", help="discard an existing table at --out")
    build.add_argument("--flush-mb", type=float, default=0.0,
                       help="MiB written between block samples to evict caches (e.g. 2x the per-core L2, so a "
                            "block finds its weights out of L2 as inside a whole model, yet still in L3); default 0")
    build.add_argument("--drift-correction", action="store_true",
                       help="time a fixed reference model of the space between measurements and scale each "
                            "measurement to the machine's speed at the start of the build: cancels the "
                            "speed changes of a shared machine (stored in the table; validate reuses it)")
    _common(build, model=False)
    build.set_defaults(handler=_cmd_build)

    validate = sub.add_parser("validate", help="measure random whole models and compare with the table")
    validate.add_argument("--table", required=True, help="table JSON built by `hwnas latency build`")
    validate.add_argument("--space-file", default=None,
                          help="the space JSON file of a table built for a user-defined space (a registered "
                               "space is found by the name the table stores)")
    validate.add_argument("--num-archs", type=positive_int, default=30, help="random architectures measured end to end (default 30)")
    validate.add_argument("--calibration", type=non_negative_int, default=10, help="extra architectures to fit the correction on")
    validate.add_argument("--seed", type=int, default=0, help="seed of the architecture sample (default 0)")
    validate.add_argument("--refine-strength", type=float, default=None,
                          help="also report the table refined on the calibration models (every entry fitted to "
                               "whole-model costs, pulled towards the scaled standalone entries with this "
                               "strength, e.g. 0.03); needs a few dozen --calibration models")
    validate.add_argument("--plot", default=None, help="predicted-versus-measured PNG path")
    validate.add_argument("--report", default=None, help="JSON report path")
    validate.add_argument("--no-store-correction", dest="store_correction", action="store_false",
                          help="do not write the fitted correction back into the table")
    validate.add_argument("--no-drift-correction", action="store_true",
                          help="measure without the drift correction the table was built with")
    _common(validate, model=True)
    validate.set_defaults(handler=_cmd_validate)

    overhead = sub.add_parser("overhead", help="the timing harness's own per-iteration overhead")
    overhead.set_defaults(handler=_cmd_overhead)
    return latency


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: ``python -m hwnas.latency.commands latency build ...``."""
    parser = argparse.ArgumentParser(prog="hwnas")
    add_subparser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ValueError, OSError) as exc:
        print(f"hwnas latency: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
