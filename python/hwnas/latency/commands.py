"""``hwnas latency build|validate|overhead`` command-line handlers.

Wire into the main CLI with ``hwnas.latency.commands.add_subparser(subparsers)``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any, Optional

from hwnas._argtypes import calibration_models, compared_models, non_negative_float, positive_float, positive_int, thread_count
from hwnas._figures import figure_format

__all__ = ["add_subparser", "main", "MAX_FLUSH_MB"]

#: Largest ``--flush-mb``: the flush buffer is allocated in full, and a few GiB already
#: outgrow any CPU cache many times over.
MAX_FLUSH_MB = 4096


def _physical_memory_mb() -> Optional[float]:
    """This machine's memory in MiB, where the OS says (``None`` elsewhere)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 20)
    except (AttributeError, OSError, ValueError):  # pragma: no cover - platforms without sysconf
        return None


def _flush_mb(text: str) -> float:
    """``--flush-mb``: 0 (no flushing) up to :data:`MAX_FLUSH_MB` and half the machine's memory."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of MiB, got {text!r}") from None
    memory = _physical_memory_mb()
    cap = float(MAX_FLUSH_MB) if memory is None else min(float(MAX_FLUSH_MB), memory / 2)
    if not (math.isfinite(value) and 0 <= value <= cap):
        limit = f"{cap:g}" + ("" if cap == MAX_FLUSH_MB else " (half of this machine's memory)")
        raise argparse.ArgumentTypeError(f"must be a number of MiB from 0 to {limit}, got {text}")
    return value


def _space(name_or_file: str, resolution: int, width: float | None, **shape: Any) -> Any:
    """A registered space by name, or a user-defined space's JSON file, at ``resolution``
    (and ``width``, ``in_channels``, ``num_classes`` where given), shaped as a search shapes it."""
    from hwnas.spaces import get_space, load_space

    kwargs: dict[str, Any] = {"resolution": resolution}
    if width is not None:
        kwargs["width"] = width
    kwargs.update({k: v for k, v in shape.items() if v is not None})
    return (load_space if os.path.isfile(name_or_file) else get_space)(name_or_file, **kwargs)


def _table_space(table: Any, table_path: str, space_file: Optional[str]) -> Any:
    """The space ``table`` was built for, at its shape: resolution, width, input
    channels, classes and the options of a registered space.

    A registered space is rebuilt from the name and options the table stores (tables
    written before the options were stored: the ``in_channels`` and ``num_classes``
    their stem and head keys name). A user-defined space comes from ``space_file``,
    shaped like the table. Architectures of a registered space are checked against
    its registered definition (see ``LatencyTable.predict``), so a ``space_file``
    under a registered name must describe the registered space at the table's shape.

    Raises:
        ValueError: Not a registered space and no ``space_file``; a ``space_file`` of
            another space or shape; or a rebuilt space whose entry keys differ from
            the table's. The messages name the files.
    """
    from hwnas.spaces import get_space, list_spaces, load_space

    shape: dict[str, Any] = {"resolution": table.resolution, "width": table.width}
    registered = table.space in list_spaces()
    file_space = None
    if space_file is not None:
        # The file's space at the table's shape, as the build shaped it (--resolution,
        # --width, --in-channels, --num-classes override the file's own values).
        file_space = load_space(space_file, **shape, **table.fixed_part_shape())
        if file_space.name != table.space:
            raise ValueError(f"--space-file {space_file} defines space {file_space.name!r}, the table "
                             f"{table_path} is of {table.space!r}")
        try:
            table.check_space(file_space)
        except ValueError as exc:
            raise ValueError(f"--space-file {space_file} does not define the space of the table {table_path}: "
                             f"{exc}") from None
        if not registered:
            return file_space
    elif not registered:
        raise ValueError(f"the table {table_path} is of space {table.space!r}, which is not registered (known: "
                         f"{', '.join(list_spaces())}): for a user-defined space, give its JSON file with --space-file")
    options = table.space_shape_options()
    for own in ("resolution", "width"):
        options.pop(own, None)
    if table.space_options is None:
        # Inferred options (an older table): give only those the space's defaults miss,
        # so a registered space without such an option is still rebuilt.
        default = get_space(table.space, **shape)
        options = {k: v for k, v in options.items() if getattr(default, k, None) != v}
    space = get_space(table.space, **shape, **options)
    try:
        table.check_space(space)
    except ValueError as exc:
        if file_space is not None:
            raise ValueError(f"--space-file {space_file} names the registered space {table.space!r}, which rebuilt "
                             f"with the table's options {options} does not match the table {table_path} ({exc}); "
                             "architectures of a registered space are checked against its registered definition: "
                             "give the space in the file another name, and build its table from the file") from None
        raise ValueError(f"cannot rebuild the space of the table {table_path} from its name {table.space!r} and "
                         f"options {options}: {exc}. Give the space's JSON file with --space-file") from None
    return space


def _target(args: argparse.Namespace) -> Any:
    from .targets import get_target

    return get_target(args.target, threads=args.threads, batch=args.batch)


def _timing(args: argparse.Namespace, base: Any, clock: str) -> Any:
    """``base`` with the clock and the command line's timing options."""
    from dataclasses import replace

    base = replace(base, clock=clock)
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
    from .build import DEFAULT_TABLE_TIMING, build_table, check_overwritable, check_resumable
    from .fingerprint import machine_line
    from .table import LatencyTable

    _refuse_folder(args.out, "--out")
    # Before anything is measured: never write over a file that is not a table, and
    # never continue a table with measurements that would not add up with its own.
    check_overwritable(args.out)
    existing = None
    if not args.restart and os.path.exists(args.out):
        existing = LatencyTable.load(args.out)
    # A continued table keeps its clock unless --clock says otherwise (then refused below).
    clock = args.clock or (existing.timing_clock() if existing is not None else "steady")
    if existing is not None:
        check_resumable(existing, clock, args.drift_correction, source=args.out)
    if clock == "thread_cpu" and args.threads != 1:
        raise ValueError(f"--clock thread_cpu times the calling thread only: it needs --threads 1 "
                         f"(got {args.threads}); use --clock steady for more threads")
    space = _space(args.space, args.resolution, args.width, in_channels=args.in_channels,
                   num_classes=args.num_classes)
    target = _target(args)
    config = _timing(args, DEFAULT_TABLE_TIMING, clock)
    notes = None
    if args.drift_correction:
        # A resumed build keeps the scale of the entries already measured.
        stored = existing.notes.get("drift_correction") if existing is not None else None
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


def _run_folder_of(table_path: str) -> Optional[str]:
    """The hwnas run folder ``table_path`` lies in (a readable run ``config.json`` beside
    it), else ``None``."""
    from hwnas.runs import RunDir

    folder = os.path.dirname(os.path.abspath(table_path))
    try:
        RunDir(folder).read_config()
    except (OSError, ValueError):  # no config.json, or not a run's
        return None
    return folder


def _cmd_validate(args: argparse.Namespace) -> int:
    from .table import LatencyTable
    from .targets import target_from_fingerprint
    from .validation import DEFAULT_MODEL_TIMING, validate_table

    if args.refine_strength is not None and not args.calibration:
        raise ValueError("--refine-strength fits the table to the calibration models: it needs --calibration 2 "
                         "or more (a few dozen for a useful refinement), got --calibration 0")
    _refuse_folder(args.table, "--table")
    _refuse_folder(args.plot, "--plot")
    if args.plot:
        figure_format(args.plot)  # refused now, not after minutes of measuring
    _refuse_folder(args.report, "--report")
    table = LatencyTable.load(args.table)
    # Whole models are timed on the clock of the table's entries unless --clock says otherwise.
    clock = args.clock or table.timing_clock()
    threads = table.fingerprint.get("threads", 1)
    if clock == "thread_cpu" and threads != 1:
        given = "--clock thread_cpu" if args.clock else "the table's clock, thread_cpu,"
        raise ValueError(f"{given} times the calling thread only: it needs a table measured with 1 thread, and "
                         f"{args.table} was measured with {threads} (the --threads of its build); use --clock "
                         "steady, or build a table with --threads 1")
    space = _table_space(table, args.table, args.space_file)
    target = target_from_fingerprint(table.fingerprint)
    stored = table.notes.get("drift_correction")
    if stored and not args.no_drift_correction:
        # Same reference and baseline as the build: models and entries share one scale.
        from .drift import drift_corrected_target

        target = drift_corrected_target(target, space, stored)
    store = bool(args.calibration and args.store_correction)
    run_folder = _run_folder_of(args.table)
    if store and run_folder is not None:
        # A run's table holds the correction its search optimised and predicted with: a new
        # fit would change what a resumed run predicts and what its summary says.
        store = False
        print(f"{args.table} belongs to the run {run_folder}: its correction is left as it is "
              "(copy the table elsewhere to store a new one)", file=sys.stderr)
    before = table.correction
    report = validate_table(
        table, space, target, num_archs=args.num_archs, num_calibration=args.calibration, seed=args.seed,
        config=_timing(args, DEFAULT_MODEL_TIMING, clock),
        allow_mixed=args.allow_mixed, progress=not args.quiet,
        plot_path=args.plot, report_path=args.report, refine_strength=args.refine_strength,
        store_correction=store,
    )
    if store and table.correction is not before:
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
    budget = 3.0 if model else 1.5
    p.add_argument("--rel-ci", type=positive_float, default=0.01, help="target relative CI width of each median (default 0.01)")
    p.add_argument("--budget", type=positive_float, default=budget,
                   help=f"seconds per measurement at most (default {budget:g})")
    p.add_argument("--allow-mixed", action="store_true", help="accept tables/targets with different fingerprints")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    if model:
        clock_help = ("steady (wall time) or thread_cpu (CPU time of the timing thread: robust on a shared "
                      "machine; needs a table measured with one thread); default: the clock the table's entries "
                      "were timed with")
    else:
        clock_help = ("steady (wall time) or thread_cpu (CPU time of the timing thread: robust on a shared "
                      "machine; needs --threads 1); default: steady, or the clock of the table continued at --out "
                      "(a continued table cannot change its clock)")
    p.add_argument("--clock", choices=("steady", "thread_cpu"), default=None, help=clock_help)


def add_subparser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds ``latency`` with sub-commands ``build``, ``validate`` and ``overhead``."""
    latency = subparsers.add_parser("latency", help="latency tables: build, validate, harness overhead")
    # Not required: `hwnas latency` alone prints this help (naming the sub-commands)
    # rather than argparse's "the following arguments are required: latency_command".
    sub = latency.add_subparsers(dest="latency_command", title="commands", metavar="{build,validate,overhead}")

    def no_command(args: argparse.Namespace) -> int:
        latency.print_help()
        return 2

    latency.set_defaults(handler=no_command)

    build = sub.add_parser("build", help="measure a latency table (resumable)")
    build.add_argument("--space", required=True, help="search space name (e.g. fbnet, fbnet_small) or a space JSON file")
    build.add_argument("--resolution", type=int, required=True, help="input side length, e.g. 32 or 64")
    build.add_argument("--width", type=float, default=None, help="width multiplier of the space (default: the space's)")
    build.add_argument("--in-channels", type=positive_int, default=None,
                       help="input image channels, e.g. 1 for a grayscale dataset such as digits (default: the "
                            "space's, 3 for the registered spaces); a search's table has its dataset's")
    build.add_argument("--num-classes", type=positive_int, default=None,
                       help="classifier outputs (default: the space's, e.g. 10 for fbnet_small)")
    build.add_argument("--target", default="eager", help="eager, torchscript or onnxruntime (default eager)")
    build.add_argument("--threads", type=thread_count, default=1, help="intra-op threads of the measurements (default 1)")
    build.add_argument("--batch", type=positive_int, default=1, help="batch size of the measured inputs (default 1)")
    build.add_argument("--out", required=True,
                       help="table JSON path (continued if it exists; a file that is not a latency table is "
                            "never overwritten)")
    build.add_argument("--restart", action="store_true", help="discard an existing table at --out")
    build.add_argument("--flush-mb", type=_flush_mb, default=0.0,
                       help="MiB written between block samples to evict caches (e.g. 2x the per-core L2, so a "
                            "block finds its weights out of L2 as inside a whole model, yet still in L3); from 0 "
                            f"(default: no flushing) to {MAX_FLUSH_MB}, and at most half the machine's memory")
    build.add_argument("--drift-correction", action="store_true",
                       help="time a fixed reference model of the space between measurements and scale each "
                            "measurement to the machine's speed at the start of the build: cancels the "
                            "speed changes of a shared machine (stored in the table; validate reuses it). A "
                            "table is continued only with the setting it was built with")
    _common(build, model=False)
    build.set_defaults(handler=_cmd_build)

    validate = sub.add_parser("validate", help="measure random whole models and compare with the table")
    validate.add_argument("--table", required=True,
                          help="table JSON built by `hwnas latency build` or saved by a search (a run's table keeps "
                               "its own correction: the new fit is reported, not stored)")
    validate.add_argument("--space-file", default=None,
                          help="the space JSON file of a table built for a user-defined space (a registered "
                               "space is rebuilt from the name and options the table stores)")
    validate.add_argument("--num-archs", type=compared_models, default=30,
                          help="random architectures measured end to end, at least 2 (default 30)")
    validate.add_argument("--calibration", type=calibration_models, default=10,
                          help="extra architectures to fit the correction on: 0 (no correction) or at least 2 "
                               "(default 10)")
    validate.add_argument("--seed", type=int, default=0, help="seed of the architecture sample (default 0)")
    validate.add_argument("--refine-strength", type=non_negative_float, default=None,
                          help="also report the table refined on the calibration models (every entry fitted to "
                               "whole-model costs, pulled towards the scaled standalone entries with this "
                               "strength, e.g. 0.03); needs a few dozen --calibration models")
    validate.add_argument("--plot", default=None, help="predicted-versus-measured figure: a .png, .svg or .pdf path")
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
