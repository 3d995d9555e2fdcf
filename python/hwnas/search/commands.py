"""``hwnas search`` and ``hwnas train`` command-line handlers (registered by :mod:`hwnas.cli`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Optional

from hwnas._argtypes import available_cpus, non_negative_int, thread_count, thread_count_or_default

__all__ = ["configure_search", "run_search", "configure_train", "run_train"]

_SEARCH_EPILOG = """\
examples:
  hwnas search                                  # digits (8x8), fbnet_small x0.25, eager CPU: 9-12 min on 2 cores
  hwnas search --objective hard_target --target-us 400
  hwnas search --data ../shared/data/mnist-t10k --resolution 28 --target onnxruntime
  hwnas search --resume runs/search-20261121-101500   # continue an interrupted run

The latency table of the space on the target is measured once and cached in
$HWNAS_CACHE_DIR/latency (default ~/.cache/hwnas/latency). Latencies are in microseconds.
"""


def _warn_ignored_with_resume(args: argparse.Namespace, command: str, kept: tuple[str, ...],
                              positional: tuple[str, ...] = ()) -> None:
    """Names what a user typed besides ``--resume`` that the run's saved settings override
    (``args._argv``: the command line as typed, kept by :func:`hwnas.cli.main`)."""
    typed = [word.split("=", 1)[0] for word in getattr(args, "_argv", []) if word.startswith("--")]
    ignored = [option for option in dict.fromkeys(typed) if option not in kept]
    ignored += [name.upper() for name in positional if getattr(args, name, None)]
    if ignored:
        print(f"hwnas {command}: --resume continues with the run's saved settings; ignored: {', '.join(ignored)}",
              file=sys.stderr)


def _keep_checkpoints(args: argparse.Namespace) -> Optional[int] | str:
    """``--keep-checkpoints`` for the pipeline: not given, ``"run"`` (the default for a new
    run, the run's own setting on resume); 0, ``None`` (keep all)."""
    if args.keep_checkpoints is None:
        return "run"
    return args.keep_checkpoints or None


def _add_data_args(parser: argparse.ArgumentParser, resolution: bool = True) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--data", default="digits",
                       help="'digits' (scikit-learn's bundled 8x8 digits, the default), an MNIST-format IDX folder or "
                            "images file, a .npz with x/y arrays, or an image folder (one sub-folder per class)")
    if resolution:
        group.add_argument("--resolution", type=int, default=8,
                           help="side length images are resized to, bilinearly (default 8: digits' own size; "
                                "search time grows ~2x per doubling)")
    group.add_argument("--data-seed", type=int, default=0, help="seed of the train/val/test split (70/15/15)")
    group.add_argument("--limit", type=int, default=None, help="use only this many examples (quick trials)")


def _add_train_args(group: Any, default_epochs: int) -> None:
    from .retrain import TrainConfig

    d = TrainConfig()
    group.add_argument("--train-epochs", type=int, default=default_epochs,
                       help=f"epochs of training from scratch (default {default_epochs})")
    group.add_argument("--train-lr", type=float, default=d.lr, help=f"peak SGD learning rate, cosine-annealed (default {d.lr:g})")
    group.add_argument("--train-batch-size", type=int, default=d.batch_size, help=f"batch size (default {d.batch_size})")
    group.add_argument("--train-weight-decay", type=float, default=d.weight_decay,
                       help=f"weight decay (default {d.weight_decay:g})")
    group.add_argument("--train-threads", type=thread_count_or_default, default=1,
                       help="torch threads while training (default 1: fastest for these small models, and robust on a "
                            "shared machine; 0: torch's default)")


def configure_search(parser: argparse.ArgumentParser) -> None:
    from .dnas import SearchConfig
    from .objectives import OBJECTIVES
    from .retrain import TrainConfig

    d = SearchConfig()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _SEARCH_EPILOG
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run in RUN_DIR (its config is used)")
    parser.add_argument("--out", metavar="RUN_DIR", help="run folder to create (default: RUNS_DIR/search-<timestamp>)")
    parser.add_argument("--runs-dir", default="runs", help="parent folder of new runs (default ./runs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the search and of the retraining (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--keep-checkpoints", type=non_negative_int, default=None, metavar="N",
                        help="epoch checkpoints kept per stage, the newest (default 2: enough to resume after a kill "
                             "at any moment; 0: keep every epoch's; with --resume: the run's own setting unless given)")
    _add_data_args(parser)
    space = parser.add_argument_group("search space and target")
    space.add_argument("--space", default="fbnet_small", help="registered space name or a space JSON file (default fbnet_small)")
    space.add_argument("--width", type=float, default=0.25, help="width multiplier of the space (default 0.25)")
    space.add_argument("--choices", help="comma-separated candidate blocks for every layer (default: the space's)")
    space.add_argument("--target", default="eager", help="latency target: eager, onnxruntime or torchscript (default eager)")
    space.add_argument("--threads", type=thread_count, default=1, help="threads of the latency measurements (default 1)")
    space.add_argument("--calibrate", type=non_negative_int, default=12,
                       help="whole models measured once per cached table (3 interleaved rounds of 1 s each) "
                            "to fit its correction "
                            "measured ~ a * (table_sum - overheads) + per_block * blocks (models spread in block sizes "
                            "and in skipped layers; a > 0, per_block >= 0), which then maps every latency of the search: "
                            "objective, --target-us, predictions (default 12; 0: none, plain table sums)")
    space.add_argument("--no-drift-correction", action="store_true",
                       help="measure without the drift reference (by default a fixed reference model is timed around "
                            "every measurement of the table, its calibration and the final model, and each result "
                            "is scaled to the reference's speed when the table was built)")
    space.add_argument("--scale-rounds", type=int, default=3,
                       help="measure the retrained model (and baseline) in this many rounds, round-robin with the "
                            "table's calibration models, and scale it by how much faster those ran when the "
                            "correction was fitted, so that it is compared with its prediction at the same machine "
                            "speed (default 3, 3 s per model in all; 0: one drift-corrected measurement)")
    space.add_argument("--cache-dir", help="latency-table cache folder (default $HWNAS_CACHE_DIR or ~/.cache/hwnas)")
    search = parser.add_argument_group("search (FBNet)")
    search.add_argument("--epochs", type=int, default=d.epochs, help=f"search epochs, warm-up included (default {d.epochs})")
    search.add_argument("--warmup-epochs", type=int, default=None,
                        help=f"leading epochs training weights only (default: a third of --epochs, "
                             f"{d.epochs // 3} for {d.epochs})")
    search.add_argument("--batch-size", type=int, default=d.batch_size,
                        help=f"batch size of the weight steps (default {d.batch_size})")
    search.add_argument("--arch-batch-size", type=int, default=d.arch_batch_size,
                        help=f"batch size of the architecture steps (default {d.arch_batch_size})")
    search.add_argument("--arch-lr", type=float, default=d.arch_lr,
                        help=f"Adam learning rate of the architecture (default {d.arch_lr:g})")
    search.add_argument("--weight-lr", type=float, default=d.weight_lr,
                        help=f"SGD learning rate of the supernet weights, cosine-annealed (default {d.weight_lr:g})")
    search.add_argument("--temperature", type=float, default=d.initial_temperature,
                        help=f"initial Gumbel temperature (default {d.initial_temperature:g})")
    search.add_argument("--temperature-decay", type=float, default=d.temperature_decay,
                        help=f"temperature factor per epoch (default {d.temperature_decay:g})")
    search.add_argument("--weight-mode", default=d.weight_mode, choices=("gumbel", "gumbel_hard"),
                        help="supernet mode of weight steps: FBNet's soft mixture of all candidates (gumbel, default) or "
                             "one sampled path per step (gumbel_hard: ~10x cheaper per step but needs far more steps "
                             "to learn)")
    search.add_argument("--samples", type=int, default=d.num_samples,
                        help=f"architectures sampled from the final distribution (default {d.num_samples})")
    objective = parser.add_argument_group("objective (latency LAT in microseconds)")
    objective.add_argument("--objective", default="fbnet", choices=tuple(OBJECTIVES),
                           help="fbnet: CE*alpha*log(LAT)^beta; additive: CE+lambda*LAT; proxyless: CE*(LAT/target)^beta; "
                                "hard_target: CE+lambda*relu(LAT/target-1); absolute (TuNAS): CE+lambda*|LAT/target-1|, "
                                "which also pulls a model under the target up to it")
    objective.add_argument("--alpha", type=float, default=0.2, help="fbnet alpha (default 0.2)")
    objective.add_argument("--beta", type=float, default=0.6, help="fbnet/proxyless exponent (default 0.6)")
    objective.add_argument("--lambda", dest="lam", type=float, default=None,
                           help="additive weight per us (default 1e-4) or hard_target/absolute penalty (default 2)")
    objective.add_argument("--target-us", type=float, default=None,
                           help="latency target of proxyless/hard_target/absolute, in us")
    objective.add_argument("--target-band", type=float, default=None,
                           help="with --target-us: pick the final architecture among the sampled candidates predicted "
                                "within this fraction of the target (hard_target: at most 1+band times it), the best "
                                "by objective; when none is, the best of all (default: all candidates compete on "
                                "their objective value)")
    train = parser.add_argument_group("retraining of the chosen architecture")
    train.add_argument("--no-retrain", action="store_true", help="stop after the search")
    _add_train_args(train, TrainConfig().epochs)
    train.add_argument("--baseline", action="store_true",
                       help="also train the cheapest MobileNetV2-style model (width x depth grid) whose measured latency "
                            "is at least the searched model's, with the same recipe (a registered space offering k3_e1, k3_e6 and "
                            "skip: fbnet_small, fbnet)")


#: The objective options each objective takes; the others would be ignored without a word.
_OBJECTIVE_OPTIONS = {
    "fbnet": ("--alpha", "--beta"),
    "additive": ("--lambda",),
    "proxyless": ("--target-us", "--beta", "--target-band"),
    "hard_target": ("--target-us", "--lambda", "--target-band"),
    "absolute": ("--target-us", "--lambda", "--target-band"),
}


def _objective_from_args(args: argparse.Namespace) -> dict[str, Any]:
    name = args.objective
    typed = {word.split("=", 1)[0] for word in getattr(args, "_argv", []) if word.startswith("--")}
    unused = sorted({option for options in _OBJECTIVE_OPTIONS.values() for option in options
                     if option in typed and option not in _OBJECTIVE_OPTIONS[name]})
    if unused:
        raise ValueError(f"--objective {name} does not use {', '.join(unused)} (it takes "
                         f"{', '.join(_OBJECTIVE_OPTIONS[name])})")
    if name == "fbnet":
        return {"name": name, "alpha": args.alpha, "beta": args.beta}
    if name == "additive":
        return {"name": name, "lam": 1e-4 if args.lam is None else args.lam}
    if args.target_us is None:
        raise ValueError(f"--objective {name} needs --target-us (the latency target in microseconds)")
    if name == "proxyless":
        return {"name": name, "target": args.target_us, "beta": args.beta}
    return {"name": name, "target": args.target_us, "lam": 2.0 if args.lam is None else args.lam}


def run_search(args: argparse.Namespace) -> int:
    from .dnas import SearchConfig
    from .pipeline import PipelineConfig, search_pipeline
    from .retrain import TrainConfig

    if args.scale_rounds < 0:
        raise ValueError(f"--scale-rounds must be >= 0 (0: one drift-corrected measurement), got {args.scale_rounds}")
    if args.resume is not None:
        _warn_ignored_with_resume(args, "search", ("--resume", "--quiet", "--keep-checkpoints"))
        summary = search_pipeline(PipelineConfig(), resume=args.resume, progress=not args.quiet,
                                  keep_checkpoints=_keep_checkpoints(args))
    else:
        search = SearchConfig(
            epochs=args.epochs, batch_size=args.batch_size,
            warmup_epochs=args.warmup_epochs,
            arch_batch_size=args.arch_batch_size, weight_lr=args.weight_lr,
            arch_lr=args.arch_lr, initial_temperature=args.temperature, temperature_decay=args.temperature_decay,
            weight_mode=args.weight_mode, objective=_objective_from_args(args), num_samples=args.samples, seed=args.seed,
            target_band=args.target_band,
        )
        retrain = None if args.no_retrain else TrainConfig(
            epochs=args.train_epochs, batch_size=args.train_batch_size, lr=args.train_lr,
            weight_decay=args.train_weight_decay, seed=args.seed)
        choices = None
        if args.choices is not None:
            choices = [c.strip() for c in args.choices.split(",")]
            if not all(choices):
                raise ValueError(f"--choices needs comma-separated block names, got {args.choices!r}")
        config = PipelineConfig(
            data=args.data, resolution=args.resolution, data_seed=args.data_seed, limit=args.limit, space=args.space,
            width=args.width, choices=choices,
            target=args.target, threads=args.threads, train_threads=args.train_threads or None, search=search.to_dict(),
            retrain=None if retrain is None else retrain.to_dict(), baseline=args.baseline, calibrate=args.calibrate,
            drift_correction=not args.no_drift_correction, scale_rounds=args.scale_rounds,
            cache_dir=args.cache_dir,
        )
        summary = search_pipeline(config, out=args.out, runs_dir=args.runs_dir, progress=not args.quiet,
                                  keep_checkpoints=_keep_checkpoints(args))
    _print_summary(summary)
    return 0


def _print_summary(summary: dict[str, Any]) -> None:
    print(f"architecture: {summary['architecture']}")
    if "test_accuracy" in summary:
        print(f"test accuracy {summary['test_accuracy']:.4f}, measured latency {summary['measured_latency_us']:.0f} us "
              f"on {summary['target']}"
              + (f" (predicted {summary['predicted_latency_us']:.0f} us)" if summary.get("predicted_latency_us") else ""))
    if "baseline" in summary:
        b = summary["baseline"]
        print(f"baseline MobileNetV2-style w{b['width']:g} d{b['depth']:g}: test accuracy {b['test_accuracy']:.4f}, "
              f"measured latency {b['measured_latency_us']:.0f} us"
              + ("" if b.get("not_faster", True) else
                 f" ({1 - b['latency_ratio']:.0%} faster than the searched model: not an equal-latency comparison)"))
    for kind, path in summary.get("exported", {}).items():
        print(f"{kind}: {path}")
    print(f"results: {summary['run']}")


def _fill_from_search_run(args: argparse.Namespace) -> None:
    """``--data``, ``--data-seed``, ``--limit``, ``--target`` and ``--threads`` not given: a
    search run folder's own (said on stderr), else digits, 0, none, eager and 1."""
    import os

    from hwnas.runs import RunDir

    own: dict[str, Any] = {}
    if args.arch and os.path.isfile(os.path.join(args.arch, "config.json")):
        try:
            stored = RunDir(args.arch).read_config()
            if stored.get("command") == "search":
                pipeline = stored["pipeline"]
                own = {"data": pipeline["data"], "data_seed": pipeline["data_seed"], "limit": pipeline["limit"],
                       "target": pipeline["target"]}
                # The threads its table was measured with, so that the model is measured on
                # the table's scale (a run from a machine with more cores: this one's default).
                if isinstance(pipeline.get("threads"), int) and 1 <= pipeline["threads"] <= available_cpus():
                    own["threads"] = pipeline["threads"]
        except (OSError, ValueError, KeyError, TypeError):
            own = {}  # not a readable search run: the plain defaults
    defaults = {"data": "digits", "data_seed": 0, "limit": None, "target": "eager", "threads": 1}
    taken = []
    for key, default in defaults.items():
        if getattr(args, key) is None:
            value = own.get(key, default)
            setattr(args, key, value)
            if key in own and value is not None:
                taken.append(f"--{key.replace('_', '-')} {value}")
    if taken:
        print(f"hwnas train: as the search run {args.arch} was: {', '.join(taken)}", file=sys.stderr)


def configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("arch", nargs="?", help="architecture JSON file, or a search run folder (its architecture.json)")
    parser.add_argument("--space-file", help="search-space JSON of an architecture from a user-defined space")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted 'hwnas train' run")
    parser.add_argument("--out", metavar="RUN_DIR", help="run folder to create (default: RUNS_DIR/train-<timestamp>)")
    parser.add_argument("--runs-dir", default="runs", help="parent folder of new runs (default ./runs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation and batch order (default 0)")
    parser.add_argument("--target", default=None,
                        help="latency target measured after training (default: a search run's own, else eager)")
    parser.add_argument("--threads", type=thread_count, default=None,
                        help="threads of the latency measurement (default: a search run's own, else 1)")
    parser.add_argument("--scale-rounds", type=non_negative_int, default=3,
                        help="for a search run's architecture on the run's own target and threads: measure it as the "
                             "search measured its own, in this many rounds round-robin with the run's latency-table "
                             "calibration models and on the table's scale, and report its prediction (default 3, "
                             "about 40 s; 0: one measurement, still drift-corrected as the table was)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--keep-checkpoints", type=non_negative_int, default=None, metavar="N",
                        help="epoch checkpoints kept per stage, the newest (default 2: enough to resume after a kill "
                             "at any moment; 0: keep every epoch's; with --resume: the run's own setting unless given)")
    _add_data_args(parser, resolution=False)
    # Retraining a search run defaults to the data, split and target it was searched on:
    # the architecture's classes and channels are those of that data.
    parser.set_defaults(data=None, data_seed=None)
    for option, text in (("--data", "(default: a search run's own data, else digits)"),
                         ("--data-seed", "(default: a search run's own, else 0)"),
                         ("--limit", "(default: a search run's own)")):
        action = parser._option_string_actions[option]
        action.help = action.help.replace(", the default)", ")") + " " + text
    _add_train_args(parser.add_argument_group("recipe (SGD + cosine schedule)"), 8)


def run_train(args: argparse.Namespace) -> int:
    from .pipeline import train_pipeline
    from .retrain import TrainConfig

    if not args.arch and args.resume is None:
        raise ValueError("give an architecture JSON file or search run folder, or --resume RUN_DIR")
    if args.resume is not None:
        _warn_ignored_with_resume(args, "train", ("--resume", "--quiet", "--train-threads", "--keep-checkpoints"),
                                  ("arch",))
    if args.resume is None:
        _fill_from_search_run(args)
    config = TrainConfig(epochs=args.train_epochs, batch_size=args.train_batch_size, lr=args.train_lr,
                         weight_decay=args.train_weight_decay, seed=args.seed)
    if args.train_threads:
        import torch

        torch.set_num_threads(args.train_threads)
    summary = train_pipeline(args.arch or "", args.data, args.out, args.runs_dir, config, args.target, args.threads,
                             args.data_seed, args.limit, args.space_file, args.resume, progress=not args.quiet,
                             keep_checkpoints=_keep_checkpoints(args), scale_rounds=args.scale_rounds)
    _print_summary(summary)
    return 0
