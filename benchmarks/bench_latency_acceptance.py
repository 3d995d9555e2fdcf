"""Acceptance benchmark of issue 5: harness overhead and agreement, tables, validation.

Usage::

    python benchmarks/bench_latency_acceptance.py --out runs/latency_acceptance [--resolution 64]
        [--archs 30] [--calibration 40] [--clock thread_cpu] [--targets eager onnxruntime] [--restart]

Prints (and writes to ``<out>/acceptance.txt``):

1. the harness's own per-iteration overhead and the agreement of its medians with
   ``torch.utils.benchmark.Timer`` on a few ops;
2. per target: the table build, then whole-model validation on spread-out random
   architectures (MAPE, max error, Kendall tau; raw, overhead- and linear-corrected);
3. a Figure-5-like table of blocks that the two targets rank differently;
4. held-out error of the learned block predictors fitted on the eager table.

Tables and reports (JSON) and predicted-versus-measured plots (PNG) go to ``--out``.
A table found there is continued, with the drift reference and baseline it was started
with (stored in the table before its first measurement), so an interrupted run
continues where it stopped when run again with the same options; ``--restart`` builds
the tables again from scratch. Every option, and whether the tables found can be
continued with it, is checked before anything is measured or any folder is made.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from dataclasses import replace

import torch

from hwnas._argtypes import calibration_models, compared_models, positive_int
from hwnas.latency import (
    DEFAULT_MODEL_TIMING,
    DEFAULT_TABLE_TIMING,
    BlockCostPredictor,
    DriftCorrectedTarget,
    LatencyTable,
    TimingConfig,
    build_table,
    get_target,
    harness_overhead,
    list_targets,
    machine_line,
    measure_architectures,
    python_call_overhead,
    reference_model,
    table_training_data,
    time_callable,
    time_module,
    validate_table,
)
from hwnas.latency.build import check_overwritable
from hwnas.latency.drift import drift_corrected_target
from hwnas.latency.harness import clock_pair_cost_ns
from hwnas.latency.table import scale_difference
from hwnas.spaces import get_space, list_spaces

LINES: list[str] = []


def say(text: str = "") -> None:
    print(text, flush=True)
    LINES.append(text)


def harness_section() -> None:
    say("== 1. harness overhead and agreement with torch.utils.benchmark.Timer (wall clock, 1 thread)")
    say(f"empty-body overhead per iteration: {harness_overhead().median_us * 1e3:.2f} ns (target < 1000 ns)")
    say(f"Python no-op call through time_callable: {python_call_overhead().median_us * 1e3:.1f} ns")
    say(f"steady_clock::now() pair: {clock_pair_cost_ns():.1f} ns")
    from torch.utils.benchmark import Timer

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval()
    dw = torch.nn.Conv2d(128, 128, 3, padding=1, groups=128).eval()
    x64 = torch.randn(1, 64, 32, 32)
    x128 = torch.randn(1, 128, 32, 32)
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    big = torch.randn(1 << 20)
    cases = [
        ("conv3x3 64->64 @32x32", lambda: conv(x64), "conv(x)", {"conv": conv, "x": x64}, (conv, [x64])),
        ("depthwise3x3 128 @32x32", lambda: dw(x128), "dw(x)", {"dw": dw, "x": x128}, (dw, [x128])),
        ("matmul 256x256", lambda: torch.mm(a, b), "torch.mm(a, b)", {"torch": torch, "a": a, "b": b}, None),
        ("relu 1M", lambda: torch.relu(big), "torch.relu(big)", {"torch": torch, "big": big}, None),
    ]
    # Many short interleaved rounds rather than a few long ones: this machine's speed
    # drifts by tens of percent over seconds, and only alternation close in time puts
    # both timers under the same drift (3 rounds of 1 s: ratios 0.89-1.12).
    config = TimingConfig(num_threads=1, budget_s=0.25, target_rel_ci=0.01, warmup_s=0.05)
    # Timer.blocked_autorange reports the median of block means over blocks of many
    # calls (about 10 ms here); the harness's default samples are single calls. The
    # median of single calls sits below a median of block means whenever the
    # distribution has a slow tail (page faults of a fresh 4 MiB output, interrupts),
    # so the like-for-like comparison times blocks of >= 10 ms too; both are printed.
    blocked = replace(config, min_sample_s=0.01, min_samples=5)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    say(f"{'op':<26}{'harness us':>12}{'blocks us':>12}{'Timer us':>12}{'ratio':>8}{'blocks/Timer':>13}{'script us':>12}")
    try:
        with torch.inference_mode():
            for name, fn, stmt, env, scripted in cases:
                ours, ours_blocked, theirs = [], [], []
                for _ in range(9):  # interleaved rounds: drift and neighbours hit both alike
                    ours.append(time_callable(fn, config).median_us)
                    ours_blocked.append(time_callable(fn, blocked).median_us)
                    theirs.append(Timer(stmt, globals=env, num_threads=1).blocked_autorange(min_run_time=0.25).median * 1e6)
                o, ob, t = statistics.median(ours), statistics.median(ours_blocked), statistics.median(theirs)
                script = ""
                if scripted is not None:
                    script = f"{time_module(scripted[0], scripted[1], config).median_us:12.2f}"
                say(f"{name:<26}{o:12.2f}{ob:12.2f}{t:12.2f}{o / t:8.3f}{ob / t:13.3f}{script}")
    finally:
        torch.set_num_threads(previous)


def figure5_section(tables: dict[str, LatencyTable], space) -> None:
    say("== 3. blocks ranked differently by the two targets (FBNet Fig. 5 style)")
    eager, ort = tables["eager"], tables["onnxruntime"]
    rows = []
    seen = set()
    for index, layer in enumerate(space.layers):
        keys = eager.layers[index]
        signature = tuple(keys.values())
        if signature in seen:
            continue
        seen.add(signature)
        choices = [c for c in layer.choices]
        e = {c: eager.value(keys[c]) for c in choices}
        o = {c: ort.value(keys[c]) for c in choices}
        rank_e = {c: r for r, c in enumerate(sorted(choices, key=e.get))}
        rank_o = {c: r for r, c in enumerate(sorted(choices, key=o.get))}
        moved = max(choices, key=lambda c: abs(rank_e[c] - rank_o[c]))
        rows.append((index, layer, e, o, rank_e, rank_o, moved))
    say(f"{'layer':>5} {'shape':<22} {'block':<9} {'eager us':>9} {'rank':>4} {'ORT us':>8} {'rank':>4}   "
        f"(rank 0 = fastest of {len(space.layers[0].choices)})")
    for index, layer, e, o, rank_e, rank_o, moved in rows:
        shape = f"{layer.c_in}->{layer.c_out} s{layer.stride} {layer.in_hw[0]}x{layer.in_hw[1]}"
        if rank_e[moved] == rank_o[moved]:
            continue
        say(f"{index:>5} {shape:<22} {moved:<9} {e[moved]:9.1f} {rank_e[moved]:>4} {o[moved]:8.1f} {rank_o[moved]:>4}")
    say("full rankings per distinct layer shape (fastest first):")
    for index, layer, e, o, rank_e, rank_o, moved in rows:
        say(f"  layer {index:>2} eager: {' < '.join(sorted(e, key=e.get))}")
        say(f"           ORT  : {' < '.join(sorted(o, key=o.get))}")


def predictor_section(table: LatencyTable) -> None:
    say("== 4. learned block predictors on the eager table entries (25% held out)")
    configs, values = table_training_data(table)
    for kind in BlockCostPredictor.KINDS:
        m = BlockCostPredictor(kind).evaluate_holdout(configs, values, test_fraction=0.25, seed=0)
        say(f"  {kind:<17} held-out n={m['n']:>3} (train {m['n_train']}): MAPE {m['mape_pct']:.1f}%  "
            f"max {m['max_err_pct']:.1f}%  tau {m['kendall_tau']:.3f}")


def _l2_bytes() -> int:
    """The per-core L2 cache size the OS reports, or 512 KiB when it does not say."""
    try:
        size = os.sysconf("SC_LEVEL2_CACHE_SIZE")
    except (ValueError, OSError, AttributeError):
        size = 0
    return size if size and size > 0 else 512 * 1024


def _flush_mb(text: str) -> float:
    """``--flush-mb``: MiB from 0 up to half the machine's memory (where the OS says)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of MiB, got {text!r}") from None
    try:
        cap = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / (1 << 20) / 2
    except (ValueError, OSError, AttributeError):
        cap = math.inf
    if not (math.isfinite(value) and 0 <= value <= cap):
        limit = "" if cap == math.inf else f" up to {cap:.0f} (half of this machine's memory)"
        raise argparse.ArgumentTypeError(f"must be a number of MiB from 0{limit}, got {text}")
    return value


def _refine_strength(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, e.g. 0.03 (negative: skip), got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, e.g. 0.03 (negative: skip), got {text}")
    return value


def table_path(args: argparse.Namespace, target: str) -> str:
    return os.path.join(args.out, f"table_{args.space}{args.resolution}_{target}.json")


def resume_problem(path: str, space, target_name: str, clock: str, drift_correction: bool,
                   reference_key: str) -> str | None:
    """Why this run cannot continue the table at ``path`` (``None``: it can, or there is none).

    The checks of :func:`hwnas.latency.build_table`, made before anything is measured and
    worded with this script's options.
    """
    if not os.path.exists(path):
        return None
    if os.path.isdir(path):
        return f"{path} is a folder where this run writes a table; move it away or give another --out"
    try:
        check_overwritable(path)
    except ValueError as exc:
        return str(exc)
    try:
        existing = LatencyTable.load(path)
    except ValueError as exc:
        return f"{path} cannot be continued: {exc}; build it again with --restart"
    fresh = LatencyTable.for_space(space, get_target(target_name, threads=1, batch=1).fingerprint())
    try:
        fresh.check_compatible(existing)
    except ValueError as exc:
        return (f"{path} cannot be continued by this run: {exc}. This script does not mix tables: build it "
                "again with --restart, or give another --out")
    # The rule build_table applies (hwnas.latency.table.scale_difference), worded with this
    # script's options; the reference is compared by name (its baseline is the table's own).
    difference = scale_difference(existing, clock, drift_correction)
    if difference is None:
        stored = existing.notes.get("drift_correction")
        if stored and stored.get("reference") not in (None, reference_key):
            return (f"{path}: its drift reference is another architecture ({stored.get('reference')}) than this "
                    f"version of the space gives ({reference_key}); build it again with --restart")
        return None
    what, old, _ = difference
    if what == "clock":
        return (f"{path}: its entries were timed with the {old} clock, this run would time with {clock}; "
                f"entries of two clocks do not add up. Continue it with --clock {old}, or build it again "
                "with --restart")
    if old:
        return (f"{path}: it was built with drift correction (entries scaled to the speed of its reference model), "
                "this run would measure without; continue it without --no-drift-correction, or build it again "
                "with --restart")
    # Measured entries and no drift note: a table of --no-drift-correction, or one killed under an
    # earlier version of this script, which drift-corrected but wrote the note only at the end.
    # Which it is cannot be told from the file, so the only safe way on is a fresh build.
    return (f"{path}: its entries carry no drift-correction note (built with --no-drift-correction, or killed "
            "under an earlier version of this script, which noted it only at the end); if you know it was "
            "built with --no-drift-correction, continue it with that option, else build it again with --restart")
    return None


def parse_args(argv: list[str] | None = None):
    """The options and the space they name; every problem is an argparse error, found
    before anything is measured or any folder is made."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/latency_acceptance",
                        help="folder of the tables, reports, plots and acceptance.txt (default runs/latency_acceptance)")
    parser.add_argument("--space", default="fbnet", choices=list_spaces(), help="registered search space (default fbnet)")
    parser.add_argument("--resolution", type=positive_int, default=64, help="input side length (default 64)")
    parser.add_argument("--archs", type=compared_models, default=30, help="validation architectures, at least 2 (default 30)")
    parser.add_argument("--calibration", type=calibration_models, default=40,
                        help="calibration architectures for the corrections: 0 (none, and no refined table: it "
                             "needs --refine-strength -1) or at least 2 (default 40: with 10, the ONNX Runtime "
                             "affine fit missed MAPE 5%% in three runs, 6.5-7.4%%; with 40 it gave 4.5%%)")
    parser.add_argument("--clock", choices=("steady", "thread_cpu"), default="thread_cpu",
                        help="clock of every measurement (default thread_cpu); a table is continued only with "
                             "the clock it was started with")
    parser.add_argument("--targets", nargs="+", default=["eager", "onnxruntime"], choices=list_targets(),
                        help="targets to build and validate tables for (default eager onnxruntime; section 3 "
                             "needs both)")
    parser.add_argument("--skip-harness", action="store_true", help="leave out section 1")
    parser.add_argument("--rounds", type=positive_int, default=3,
                        help="interleaved rounds of whole-model measurement (pooled samples; default 3)")
    parser.add_argument("--flush-mb", type=_flush_mb, default=None,
                        help="MiB written between block samples (0: none; default twice the per-core L2, 1 MiB "
                             "when the OS does not say). Inside a whole model a block finds its weights evicted "
                             "from L2 by the other blocks, but still in L3 (the model runs in a loop); a "
                             "standalone block in a hot loop finds them in L2. Twice L2 evicts L2 and leaves L3 "
                             "alone. On a 2-core AMD EPYC VM (512 KiB L2) 1 MiB gave table MAPE 2.5%%, tau 0.945; "
                             "on a Sapphire Rapids VM 8 MiB, which also pushed weights out of L3, gave 5.2%%, 0.844.")
    parser.add_argument("--no-drift-correction", action="store_true",
                        help="time without the reference model that cancels machine-speed drift; a table is "
                             "continued only with the setting it was started with")
    parser.add_argument("--restart", action="store_true",
                        help="build the tables again from scratch, replacing those at --out (without it, tables "
                             "found there are continued)")
    parser.add_argument("--refine-strength", type=_refine_strength, default=0.03,
                        help="also judge the table refined on the calibration models (refine_table_from_models) "
                             "with this strength (default 0.03); negative: skip. Needs --calibration of 2 or "
                             "more (a few dozen for a useful refinement)")
    parser.add_argument("--repeat-check", action="store_true",
                        help="measure the validation models a second time and report how well two measurements "
                             "of the same models agree (the resolution of the measurement itself)")
    args = parser.parse_args(argv)
    if args.refine_strength < 0:
        args.refine_strength = None
    if args.refine_strength is not None and args.calibration == 0:
        parser.error(f"--refine-strength {args.refine_strength:g} (default 0.03) refines the table on the "
                     "calibration models, and --calibration 0 leaves none: add --refine-strength -1 to skip the "
                     "refined table, or give --calibration 2 or more")
    repeated = sorted({name for name in args.targets if args.targets.count(name) > 1})
    if repeated:
        parser.error(f"argument --targets: each target once, got {' '.join(args.targets)} ({', '.join(repeated)} repeated)")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        parser.error(f"argument --out: {args.out} is a file; give a folder")
    try:
        space = get_space(args.space, resolution=args.resolution)
    except ValueError as exc:
        parser.error(f"--space {args.space} --resolution {args.resolution}: {exc}")
    reference_key = reference_model(space)[2]
    for name in args.targets:
        path = table_path(args, name)
        if args.restart:
            if os.path.isdir(path):
                parser.error(f"{path} is a folder where this run writes a table; move it away or give another --out")
            try:
                check_overwritable(path)
            except ValueError as exc:
                parser.error(str(exc))
            continue
        problem = resume_problem(path, space, name, args.clock, not args.no_drift_correction, reference_key)
        if problem is not None:
            parser.error(problem)
    if args.flush_mb is None:
        args.flush_mb = 2 * _l2_bytes() / (1 << 20)
    return args, space


def main(argv: list[str] | None = None) -> int:
    args, space = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    started = time.time()
    say(f"hwnas latency acceptance: space {args.space} @ 3x{args.resolution}x{args.resolution}, batch 1, 1 thread, "
        f"clock {args.clock}, block flush {args.flush_mb:g} MiB, {args.rounds} model rounds, {args.archs} validation + {args.calibration} calibration architectures")
    with open("/proc/loadavg", encoding="ascii") as handle:
        say(f"load average at start: {handle.read().strip()}")
    if not args.skip_harness:
        harness_section()
    table_timing = replace(DEFAULT_TABLE_TIMING, clock=args.clock, budget_s=1.0,
                           flush_bytes=int(args.flush_mb * (1 << 20)))
    model_timing = replace(DEFAULT_MODEL_TIMING, clock=args.clock, budget_s=2.0)
    tables = {}
    say("== 2. tables and whole-model validation")
    for name in args.targets:
        target = get_target(name, threads=1, batch=1)
        path = table_path(args, name)
        t0 = time.time()
        existing = LatencyTable.load(path) if not args.restart and os.path.exists(path) else None
        found = len(existing.entries) if existing is not None else 0
        notes = None
        if not args.no_drift_correction:
            # The drift reference and its baseline go into the table before its first
            # measurement (as `hwnas latency build --drift-correction` does), so that a
            # run killed mid-build continues on the same scale; a table found at `path`
            # with measurements lends its own baseline (None: a fresh one is timed now).
            measured = existing is not None and (existing.entries or existing.call_overhead is not None)
            stored = existing.notes.get("drift_correction") if measured else None
            target = drift_corrected_target(target, space, stored)
            target.calibrate(table_timing)
            notes = {"drift_correction": target.describe()}
        table = build_table(space, target, path, config=table_timing, resume=not args.restart, progress=False,
                            notes=notes)
        say(f"[{name}] machine: {machine_line(table.fingerprint)}")
        resumed = f" ({found} found at --out, {len(table.entries) - found} measured now)" if found else ""
        say(f"[{name}] table: {len(table.entries)} entries{resumed} in {time.time() - t0:.0f} s, per-call overhead "
            f"{table.call_overhead:.2f} us")
        report = validate_table(
            table, space, target, num_archs=args.archs, num_calibration=args.calibration, seed=0, config=model_timing,
            progress=False, plot_path=os.path.join(args.out, f"validation_{name}.png"),
            report_path=os.path.join(args.out, f"validation_{name}.json"), extra_statistics=("p10",), rounds=args.rounds,
            refine_strength=args.refine_strength,
        )
        if isinstance(target, DriftCorrectedTarget):
            say(f"[{name}] drift correction: reference {target.baseline_us:.0f} us when the table was started; "
                f"{target.factor_summary()}")
        table.save(path)
        if args.repeat_check:
            from scipy.stats import kendalltau

            from hwnas.latency import sample_spread_architectures

            # validate_table's draw: the first args.archs of the spread sample are the validation set.
            archs = sample_spread_architectures(space, args.archs + args.calibration, seed=0)[: args.archs]
            first = list(report.measured)
            again = [r.median_us for r in measure_architectures(space, archs, target, model_timing,
                                                                 progress=False, rounds=args.rounds)]
            diffs = [abs(a - b) / b for a, b in zip(first, again)]
            say(f"[{name}] repeatability: the same {len(first)} models measured twice agree to MAPE "
                f"{100 * statistics.mean(diffs):.2f}%, max {100 * max(diffs):.1f}%, tau {kendalltau(first, again)[0]:.3f}")
        for line in report.summary_lines()[1:]:
            say(f"[{name}] {line}")
        if "refined" in report.metrics:
            r = report.metrics["refined"]
            say(f"[{name}] refined table (calibration n={r['n_models']}, strength {r['strength']:g}): scale of the "
                f"standalone entries {r['a']:.3f}, fixed part {r['b']:.1f} us, calibration MAPE {r['residual_mape_pct']:.2f}%")
        for key in ("raw", "linear", "proportional", "refined", "p10/raw", "p10/linear"):
            if key in report.metrics:
                m = report.metrics[key]
                verdict = "PASS" if m["mape_pct"] <= 5 and m["kendall_tau"] >= 0.85 else "FAIL"
                say(f"[{name}] acceptance (MAPE <= 5%, tau >= 0.85), {key:<10}: {verdict}")
        tables[name] = table
    if {"eager", "onnxruntime"} <= set(tables):
        figure5_section(tables, space)
    if "eager" in tables:
        predictor_section(tables["eager"])
    with open("/proc/loadavg", encoding="ascii") as handle:
        say(f"load average at end: {handle.read().strip()}; total {time.time() - started:.0f} s")
    from hwnas._io import atomic_write_text

    atomic_write_text(os.path.join(args.out, "acceptance.txt"), "\n".join(LINES) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
