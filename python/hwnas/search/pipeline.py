"""The end-to-end pipelines behind ``hwnas search`` and ``hwnas train``.

``search_pipeline``: data -> search space -> latency table (cached) -> FBNet search
-> retrain the chosen architecture from scratch -> measure it on the target ->
export it -> (optionally) train a MobileNetV2-style baseline scaled to its latency
-> plots and ``summary.json``. Every step writes into one run folder::

    RUN/config.json                    resolved configuration (format hwnas.run_config)
    RUN/latency_table.json             the table the search used (copy of the cached one)
    RUN/checkpoints/                   search-/retrain-/baseline-epoch-NNNN.pt + *-latest.json
    RUN/history.json                   per-epoch architecture distribution (hwnas.search_history)
    RUN/candidates.json                architectures evaluated at the end (hwnas.search_candidates)
    RUN/architecture.json              the chosen architecture (hwnas.architecture)
    RUN/model/                         model.torchscript.pt, model.pt2, model.onnx, architecture.json
    RUN/plots/                         architecture.png, distribution.png, accuracy_latency.png
    RUN/summary.json                   accuracies, latencies, timings, paths (hwnas.run_summary)

``resume`` re-reads ``config.json`` and continues each step from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from hwnas._argtypes import available_cpus
from hwnas._io import read_json
from hwnas.data import DataSplits, load_dataset, prepare_splits
from hwnas.runs import DEFAULT_KEEP_CHECKPOINTS, RunDir, atomic_write_json

from ._config import DictConfig
from .dnas import FBNetSearch, SearchConfig, arch_split_size
from .retrain import TrainConfig, export_model, measure_model_latency, seed_everything, train_model

__all__ = ["PipelineConfig", "search_pipeline", "train_pipeline", "load_splits", "make_space", "architecture_space",
           "SUMMARY_FORMAT"]

SUMMARY_FORMAT = "hwnas.run_summary"


@dataclass
class PipelineConfig(DictConfig):
    """Everything a ``hwnas search`` run needs (stored as the run's ``config.json``).

    Attributes:
        data: ``"digits"`` or a path (see :func:`hwnas.data.load_dataset`).
        resolution: Input side length; images are resized to it bilinearly. The default 8
            is digits' own size: upsampling adds no information, and every doubling
            costs ~2x in search time (the soft supernet runs all candidates).
        data_seed: Seed of the train/val/test split.
        limit: Use only this many examples (quick runs).
        space: Registered space name, or the path of a space JSON file.
        width: Width multiplier of the space.
        choices: Candidate blocks of every layer (``None``: the space's own).
        target: Latency target name (``eager``, ``onnxruntime``, ``torchscript``).
        threads: Intra-op threads of the target's measurements.
        train_threads: torch threads while training (``None``: leave torch's default). The
            default 1 is deliberate: these tensors are small, and on a loaded machine
            torch's default (one thread per core) spins in OpenMP barriers while another
            process holds a core: a supernet step measured 30x slower with 2 threads
            than with 1 on the project's shared 2-core machine.
        search: :class:`SearchConfig` as a dict.
        retrain: :class:`TrainConfig` as a dict, or ``None`` to skip retraining.
        baseline: Also train a MobileNetV2-style baseline scaled to the searched model's latency.
        calibrate: Whole models measured to fit the table's linear correction (0: none).
        drift_correction: Time the table, its calibration models, the searched model and
            the baseline through one :class:`~hwnas.latency.drift.DriftCorrectedTarget`
            (a reference model timed around each measurement), so that they share one
            scale even when the machine's speed drifts between them.
        scale_rounds: The retrained models' final measurement runs in this many rounds,
            round-robin with the table's calibration models, and is scaled by how much
            faster those ran when the correction was fitted (see
            :mod:`hwnas.latency.table_scale`; 0: one drift-corrected measurement).
        cache_dir: Latency-table cache folder (``None``: :func:`hwnas.search.tables.default_cache_dir`).
    """

    config_name = "run config"

    data: str = "digits"
    resolution: int = 8
    data_seed: int = 0
    limit: Optional[int] = None
    space: str = "fbnet_small"
    width: float = 0.25
    choices: Optional[list[str]] = None
    target: str = "eager"
    threads: int = 1
    train_threads: Optional[int] = 1
    search: dict = field(default_factory=lambda: SearchConfig().to_dict())
    retrain: Optional[dict] = field(default_factory=lambda: TrainConfig().to_dict())
    baseline: bool = False
    calibrate: int = 12
    drift_correction: bool = True
    scale_rounds: int = 3
    cache_dir: Optional[str] = None



def load_splits(config: PipelineConfig) -> DataSplits:
    """The data splits of a run."""
    return prepare_splits(load_dataset(config.data), config.resolution, seed=config.data_seed, limit=config.limit)


def make_space(config: PipelineConfig, in_channels: int, num_classes: int):
    """The search space of a run, shaped for the data."""
    from hwnas.spaces import get_space, load_space

    if os.path.exists(config.space):
        shape: dict[str, Any] = dict(resolution=config.resolution, in_channels=in_channels, num_classes=num_classes,
                                     width=config.width)
        if config.choices:
            # Every layer of every stage offers the given blocks (per-layer choices dropped).
            stages = load_space(config.space).to_dict()["stages"]
            shape["stages"] = [{**{k: v for k, v in stage.items() if k != "layer_choices"},
                                "choices": list(config.choices)} for stage in stages]
        return load_space(config.space, **shape)
    kwargs: dict[str, Any] = dict(resolution=config.resolution, in_channels=in_channels, num_classes=num_classes,
                                  width=config.width)
    if config.choices:
        kwargs["choices"] = list(config.choices)
    return get_space(config.space, **kwargs)


def _log_default(line: str) -> None:
    print(line, flush=True)


def search_table(config: PipelineConfig, space: Any, target: Any = None, progress: bool = True):
    """The (cached, calibrated) latency table a search with ``config`` starts from.

    ``target`` defaults to ``config.target`` at ``config.threads`` threads.
    """
    from hwnas.latency.targets import get_target

    from .tables import cached_table

    target = target if target is not None else get_target(config.target, threads=config.threads)
    return cached_table(space, target, config.cache_dir, progress=progress, calibrate=config.calibrate,
                        seed=config.data_seed, drift_correction=config.drift_correction)


def _new_run_keep(keep_checkpoints: Optional[int] | str) -> Optional[int]:
    """What a new run keeps: ``"run"`` (no setting given) means the default."""
    return DEFAULT_KEEP_CHECKPOINTS if keep_checkpoints == "run" else keep_checkpoints


def _existing_run(path: str, command: str, keep_checkpoints: Optional[int] | str = "run") -> RunDir:
    """The run folder ``path`` of an ``hwnas <command>`` run, to resume (clear errors otherwise).

    ``keep_checkpoints`` ``"run"``: the run's own setting (stored in its config; runs
    written before it was stored kept :data:`DEFAULT_KEEP_CHECKPOINTS`); another value
    replaces the stored one, for later resumes too.
    """
    if not path:
        raise ValueError("--resume needs a run folder, got an empty path")
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"--resume {path}: a file, not a run folder")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such run folder")
    stored = RunDir(path).read_config()
    if stored.get("command") != command:
        raise ValueError(f"{path} is a '{stored.get('command')}' run folder, not a 'hwnas {command}' one; "
                         f"resume it with hwnas {stored.get('command')} --resume {path}")
    if keep_checkpoints == "run":
        keep_checkpoints = stored.get("keep_checkpoints", DEFAULT_KEEP_CHECKPOINTS)
    return RunDir(path, keep_checkpoints=keep_checkpoints)


def _continue_run(run: RunDir) -> None:
    """Takes the unfinished ``run`` for this process (:meth:`RunDir.lock`), removes the
    temporary files of writes that a kill interrupted, and stores a ``keep_checkpoints``
    given on this resume, so that a later resume without the option keeps it."""
    run.lock()
    run.remove_temporaries()
    stored = run.read_config()
    if stored.get("keep_checkpoints", DEFAULT_KEEP_CHECKPOINTS) != run.keep_checkpoints:
        run.write_config({**stored, "keep_checkpoints": run.keep_checkpoints})


def _refuse_existing_run(out: Optional[str], runs_dir: Optional[str] = None) -> None:
    """A new run goes into a new or empty folder: never into one that holds a run (its
    config and checkpoints would be mixed) or other files (they could be overwritten).
    Without ``out`` it is made in ``runs_dir``, which must then be a folder (or not exist yet)."""
    if not out:
        if runs_dir and os.path.exists(runs_dir) and not os.path.isdir(runs_dir):
            raise NotADirectoryError(f"--runs-dir {os.path.abspath(runs_dir)} is a file; give a folder for new runs")
        return
    if not os.path.exists(out):
        return
    path = os.path.abspath(out)
    if os.path.isfile(os.path.join(out, "config.json")):
        raise ValueError(f"{path} already holds a run; continue it with --resume {path} or choose another --out")
    if not os.path.isdir(out):
        raise ValueError(f"--out {path} is a file; give a new or empty folder")
    if os.listdir(out):
        raise ValueError(f"--out {path} is not empty; a new run needs a new or empty folder")


def _absolute(path: Optional[str]) -> Optional[str]:
    """``path`` made absolute when it names an existing file or folder (so that a run
    resumed from another working directory finds it); names such as ``digits`` unchanged."""
    if path is None or not os.path.exists(os.path.expanduser(path)):
        return path
    return os.path.abspath(os.path.expanduser(path))


def _with_absolute_paths(config: PipelineConfig) -> PipelineConfig:
    cache = os.path.abspath(os.path.expanduser(config.cache_dir)) if config.cache_dir else None
    return dataclasses.replace(config, data=_absolute(config.data), space=_absolute(config.space), cache_dir=cache)


def architecture_space(arch: Any, space_file: Optional[str] = None, run_folder: Optional[str] = None,
                       in_channels: Optional[int] = None, num_classes: Optional[int] = None,
                       source: Optional[str] = None):
    """The space ``arch`` was made in.

    Args:
        arch: The architecture.
        space_file: A user space's JSON/YAML file, shaped as a search shapes it: the
            architecture's resolution and width (and ``in_channels`` / ``num_classes``
            when given).
        run_folder: A search or train run folder: when the architecture's space is not a
            registered one (a user space), the space saved in the run's ``config.json``.
        source: The architecture's file, named in the error when its space cannot be
            rebuilt.

    Without a ``space_file``: the registered space the architecture names, else the run's.
    """
    from hwnas.spaces import SearchSpace, load_space, space_for_architecture

    if space_file:
        if not os.path.isfile(space_file):
            raise FileNotFoundError(f"{space_file}: no such search-space file")
        shape = {k: v for k, v in (("in_channels", in_channels), ("num_classes", num_classes)) if v is not None}
        return load_space(space_file, resolution=arch.resolution, width=arch.width, **shape)
    try:
        return space_for_architecture(arch)
    except ValueError as exc:
        # Not a registered space (or not with these options): a run keeps its own.
        config_file = os.path.join(run_folder, "config.json") if run_folder else ""
        stored = RunDir(run_folder).read_config() if os.path.isfile(config_file) else {}
        if "space" not in stored:
            if source is None:
                raise
            raise ValueError(f"{source}: {exc}") from None
        return SearchSpace.from_dict(stored["space"], source=config_file)


def _stored_summary(run: RunDir) -> dict[str, Any]:
    """A finished run's summary, its paths pointing into the run where it is now (it may have
    been moved or copied since it was written)."""
    summary = read_json(run.file("summary.json"), SUMMARY_FORMAT)
    old = summary.get("run")
    if not isinstance(old, str) or old == run.path:
        return summary

    def relocated(value: Any) -> Any:
        if isinstance(value, str) and (value == old or value.startswith(old + os.sep)):
            return run.path + value[len(old):]
        if isinstance(value, dict):
            return {key: relocated(item) for key, item in value.items()}
        if isinstance(value, list):
            return [relocated(item) for item in value]
        return value

    return relocated(summary)


def search_pipeline(config: PipelineConfig, out: Optional[str] = None, runs_dir: str = "runs",
                    resume: Optional[str] = None, progress: bool = True, log: Callable[[str], None] = _log_default,
                    keep_checkpoints: Optional[int] | str = "run") -> dict[str, Any]:
    """Runs (or resumes) a whole search; returns the summary (also ``RUN/summary.json``).

    Args:
        config: The run's configuration (ignored when resuming: the run's own is used).
        out: Run folder to create/use (default: a new ``runs_dir/search-<timestamp>``).
        runs_dir: Parent of new run folders.
        resume: An existing run folder to continue (a finished one: its stored summary is
            returned and nothing is measured again).
        progress: Progress bars.
        log: Receives progress lines.
        keep_checkpoints: Epoch checkpoints kept per stage (``None``: all; ``"run"``: a new
            run keeps :data:`DEFAULT_KEEP_CHECKPOINTS`, a resumed one its own setting).
    """
    from hwnas.latency.targets import get_target
    from hwnas.spaces.figure import draw_architecture

    from .plots import plot_accuracy_latency, plot_distribution_history
    from .tables import measuring_target

    started = time.perf_counter()
    if resume is not None:
        run = _existing_run(resume, "search", keep_checkpoints)
        config = PipelineConfig.from_dict(run.read_config()["pipeline"])
        if os.path.isfile(run.file("summary.json")):
            # Finished: its results stand (measuring again would only rewrite them with new noise).
            log(f"run {run.path} has finished; its summary is unchanged")
            return _stored_summary(run)
        _continue_run(run)
        log(f"resuming run {run.path}")
    else:
        _refuse_existing_run(out, runs_dir)
        config = _with_absolute_paths(config)
    if config.train_threads is not None and int(config.train_threads) < 1:
        raise ValueError(f"train_threads must be >= 1 (or None for torch's default), got {config.train_threads}")
    if config.train_threads:
        # A run resumed on a machine with fewer cores than it started on trains on those it has.
        threads = min(int(config.train_threads), available_cpus())
        if threads < int(config.train_threads):
            log(f"training with {threads} threads: the run asked for {config.train_threads}, "
                f"this machine has {threads} cores")
        torch.set_num_threads(threads)
    # Everything that can be refused is checked before a new run folder is made.
    search_config = SearchConfig.from_dict(config.search)
    if config.retrain is not None:
        TrainConfig.from_dict(config.retrain)
    splits = load_splits(config)
    arch_split_size(len(splits.train), search_config.arch_fraction)
    space = make_space(config, splits.in_channels, splits.num_classes)
    if config.baseline:
        try:
            _check_baseline(config, splits)
        except ValueError as exc:
            if resume is None:
                raise
            # A run begun by an earlier version, which accepted this: it goes on without one.
            log(f"warning: {exc}; this run continues without a baseline")
            config = dataclasses.replace(config, baseline=False)
    target = get_target(config.target, threads=config.threads)
    if resume is None:
        keep = _new_run_keep(keep_checkpoints)
        run = RunDir(out, keep) if out else RunDir.create(runs_dir, "search", keep_checkpoints=keep)
        run.lock()
        run.write_config({"command": "search", "pipeline": config.to_dict(), "data": splits.info,
                          "space": space.to_dict(), "keep_checkpoints": keep, "hwnas_version": _version()})
    size = f"{splits.info['original_size'][0]}x{splits.info['original_size'][1]}"
    shape = (f"at its own {size}" if splits.info["resize"] == "none" else
             f"{size} resized to {config.resolution}x{config.resolution} ({splits.info['resize']})")
    log(f"data: {splits.info['source']} {shape}; train/val/test {len(splits.train)}/{len(splits.val)}/{len(splits.test)}")
    log(f"run folder: {run.path}")
    log(f"space: {space!r}")

    table_started = time.perf_counter()
    own_table = run.file("latency_table.json")
    if resume is not None and os.path.isfile(own_table):
        # The table the run started with, not the cache's current one (which a later
        # calibration or rebuild may have changed): a resumed search must see the same costs.
        from hwnas.latency.table import LatencyTable

        table = LatencyTable.load(own_table)
    else:
        table = search_table(config, space, target, progress=progress)
        table.save(own_table)
    # Models are measured on the table's scale (its drift reference and baseline, if any).
    target = measuring_target(target, space, table)
    table_seconds = time.perf_counter() - table_started

    search = FBNetSearch(space, table, splits, search_config, run=run, progress=progress, log=log)
    result = search.run(resume=True)
    arch = result.architecture
    chosen = result.candidates[0]
    log(f"chosen architecture: {arch.to_string()}")
    log(f"  supernet val accuracy {chosen['val_accuracy']:.3f}, predicted latency {chosen['predicted_latency_us']:.0f} us")
    source = splits.info["source"]
    plots = {
        # A subtitle, so that the default title's space, resolution and width stay.
        "architecture": draw_architecture(arch, run.file("plots", "architecture.png"), space=space,
                                          subtitle=f"searched on {source} for {config.target}"),
        # The chosen block per layer: the final epoch's most likely one is not always it.
        "distribution": plot_distribution_history(
            result.history, [l.choices for l in space.layers], run.file("plots", "distribution.png"),
            title=f"architecture distribution per layer over the search epochs ({source}, {config.target})",
            chosen=list(arch.choices)),
    }
    summary: dict[str, Any] = {
        "format": SUMMARY_FORMAT, "version": 1, "run": run.path, "architecture": arch.to_string(),
        "target": config.target, "objective": search_config.objective,
        "supernet_val_accuracy": chosen["val_accuracy"], "predicted_latency_us": chosen["predicted_latency_us"],
        "predicted_latency_raw_us": table.predict(arch, correction="none"),
        "latency_correction": {k: v for k, v in table.correction.items() if k != "models"} if table.correction else None,
        "table_seconds": table_seconds, "search_seconds": result.search_seconds,
    }
    # Candidates are scored with the supernet's shared weights (hollow markers in the plot,
    # the baseline too: it is not retrained here); one without a predicted latency cannot be placed.
    points = [{"latency": c["predicted_latency_us"], "accuracy": c["val_accuracy"],
               "kind": "chosen" if c is chosen else c["kind"],
               "label": "MobileNetV2-style" if c["kind"] == "baseline" else None}
              for c in result.candidates if c["predicted_latency_us"] is not None]

    if config.retrain is not None:
        train_config = TrainConfig.from_dict(config.retrain)
        trained = train_architecture(space, arch, splits, train_config, run, target, stage="retrain",
                                     export_folder=os.path.join(run.path, "model"), progress=progress, log=log)
        summary.update({"test_accuracy": trained["test_accuracy"], "val_accuracy": trained["val_accuracy"],
                        "measured_latency_us": trained["latency"]["median_us"], "exported": trained["exported"],
                        "retrain_seconds": trained["seconds"]})
        base = None
        if config.baseline:
            from .baselines import scale_baseline_to_latency

            kwargs = dict(resolution=config.resolution, in_channels=splits.in_channels, num_classes=splits.num_classes)
            picked = scale_baseline_to_latency(space.name, kwargs, target, trained["latency"]["median_us"], log=log,
                                               pick="at_least")
            base = train_architecture(picked["space"], picked["arch"], splits, train_config, run, target,
                                      stage="baseline", export_folder=None, progress=progress, log=log)
            summary["baseline"] = {"width": picked["width"], "depth": picked["depth"], "arch": picked["arch"].to_string(),
                                   "test_accuracy": base["test_accuracy"], "measured_latency_us": base["latency"]["median_us"]}
        timed = [trained] + ([base] if base else [])
        scaled = _measure_on_table_scale(timed, table, space, target, config.scale_rounds, log)
        if scaled is not None:
            _put_on_table_scale(summary, scaled)
            if base:
                summary["baseline"]["single_measurement_us"] = summary["baseline"]["measured_latency_us"]
                summary["baseline"]["measured_latency_us"] = scaled["table_scale_us"][1]
        summary["latency_error"] = summary["measured_latency_us"] / summary["predicted_latency_us"] - 1.0
        if base:
            summary["baseline"].update(_baseline_comparison(summary["baseline"]["measured_latency_us"],
                                                            summary["measured_latency_us"]))
            if not summary["baseline"]["not_faster"]:
                log(f"warning: the baseline measured {summary['baseline']['measured_latency_us']:.0f} us, faster than "
                    f"the searched model's {summary['measured_latency_us']:.0f} us (it was picked on shorter "
                    f"timings): the accuracies are not compared at equal latency")
        # The chosen architecture again, retrained and measured: the plot links it to its estimate.
        points.append({"latency": summary["measured_latency_us"], "accuracy": trained["test_accuracy"],
                       "kind": "searched", "label": None})
        log(f"retrained: test accuracy {trained['test_accuracy']:.3f}, measured latency "
            f"{summary['measured_latency_us']:.0f} us (predicted {chosen['predicted_latency_us']:.0f} us)")
        if base:
            b = summary["baseline"]
            points.append({"latency": b["measured_latency_us"], "accuracy": base["test_accuracy"],
                           "kind": "baseline_retrained", "label": f"MobileNetV2-style w{b['width']:g} d{b['depth']:g}"})
    objective = search_config.objective
    latency_target = objective.get("target")
    band, band_range, band_label = search_config.target_band, None, "target band"
    if latency_target is not None and band is not None:
        # The selection's band (see FBNetSearch._within_target_band): hard_target accepts up to
        # (1 + band) x target and everything below; the others band on both sides.
        if objective.get("name") == "hard_target":
            band_range = (0.0, latency_target * (1 + band))
            band_label = f"accepted: up to {band:.0%} over the target"
        else:
            band_range = (max(latency_target * (1 - band), 0.0), latency_target * (1 + band))
            band_label = f"target band (\u00b1{band:.0%})"
    plots["accuracy_latency"] = plot_accuracy_latency(
        points, run.file("plots", "accuracy_latency.png"),
        title=f"{source}: accuracy vs latency on {config.target}",
        xlabel="latency ({unit}): predicted for supernet-weight points, measured for retrained",
        ylabel="accuracy: supernet weights on val, retrained on test",
        target=latency_target, target_band=band_range, target_band_label=band_label)
    summary["plots"] = plots
    summary["total_seconds_this_invocation"] = time.perf_counter() - started
    atomic_write_json(run.file("summary.json"), summary)
    run.unlock()
    return summary


def train_architecture(space: Any, arch: Any, splits: DataSplits, config: TrainConfig, run: RunDir,
                       target: Optional[Any], stage: str = "retrain", export_folder: Optional[str] = None,
                       progress: bool = True, log: Callable[[str], None] = _log_default) -> dict[str, Any]:
    """Trains ``arch`` from scratch with the recipe, measures it on ``target`` (``None``:
    not measured, ``latency`` is ``None``; e.g. another training seed of an architecture
    already measured), and exports it."""
    started = time.perf_counter()
    seed_everything(config.seed)
    model = space.build(arch)
    result = train_model(model, splits, config, run=run, stage=stage, progress=progress, log=log)
    shape = (space.in_channels, arch.resolution, arch.resolution)
    result["latency"] = measure_model_latency(model, target, shape) if target is not None else None
    result["exported"] = export_model(model, export_folder, shape, arch) if export_folder else {}
    if export_folder:
        result["exported"]["input"] = write_model_input(export_folder, splits.info)
    result["seconds"] = time.perf_counter() - started
    result["model"], result["input_shape"] = model, shape
    return result


def _check_baseline(config: PipelineConfig, splits: DataSplits) -> None:
    """Refuses, before the search, a baseline the run could not build after it: baselines
    are MobileNetV2-style models of a registered space (``k3_e1``, ``k3_e6``, ``skip``),
    trained with the retraining recipe."""
    from .baselines import mobilenet_v2_style

    if config.retrain is None:
        raise ValueError("--baseline (baseline=True) trains the baseline with the retraining recipe; it does not go "
                         "with --no-retrain (retrain=None)")
    if os.path.exists(config.space):
        raise ValueError(f"--baseline builds MobileNetV2-style models of a registered space (e.g. fbnet_small); "
                         f"the space {config.space} is a file")
    try:
        mobilenet_v2_style(config.space, dict(resolution=config.resolution, in_channels=splits.in_channels,
                                              num_classes=splits.num_classes), width=1.0, depth=1.0)
    except ValueError as exc:
        raise ValueError(f"--baseline: {exc}") from None


def _measure_on_table_scale(trained: list[dict[str, Any]], table: Any, space: Any, target: Any, rounds: int,
                            log: Callable[[str], None]) -> Optional[dict[str, Any]]:
    """Measures the trained models (:func:`train_architecture` results) again, round-robin
    with ``table``'s calibration models, on the scale its prediction was fitted on (see
    :mod:`hwnas.latency.table_scale`); ``None`` (and the single measurements stand) when
    ``rounds`` is 0 or the table stores no calibration models."""
    if not rounds or not (table.correction or {}).get("models"):
        return None
    from hwnas.latency.table_scale import measure_on_table_scale

    scaled = measure_on_table_scale([(t["model"], t["input_shape"]) for t in trained], table, space, target,
                                    rounds=int(rounds))
    log(f"table scale: x{scaled['scale']:.3f} from {len(scaled['calibration_ratios'])} calibration models "
        f"timed again in {scaled['rounds']} rounds")
    return scaled


def _put_on_table_scale(summary: dict[str, Any], scaled: dict[str, Any]) -> None:
    """The first measured model's table-scale latency replaces its single measurement in
    ``summary``, which keeps that and the scale under ``table_scale``."""
    summary["table_scale"] = {"scale": scaled["scale"], "rounds": scaled["rounds"],
                              "single_measurement_us": summary["measured_latency_us"],
                              "pooled_us": scaled["measured_us"][0]}
    summary["measured_latency_us"] = scaled["table_scale_us"][0]


def _baseline_comparison(baseline_us: float, searched_us: float) -> dict[str, Any]:
    """Whether the baseline's accuracy is compared at equal or higher latency: it is picked
    on short single timings, and its final measurement may come out below the searched
    model's. ``latency_ratio``: baseline / searched; ``not_faster``: ratio >= 1."""
    ratio = baseline_us / searched_us
    return {"latency_ratio": ratio, "not_faster": bool(ratio >= 1.0)}


#: Format of ``model/input.json``: what the exported model expects and returns.
MODEL_INPUT_FORMAT = "hwnas.model_input"


def write_model_input(folder: str, info: dict[str, Any]) -> str:
    """Writes ``input.json`` beside the exported model: the preprocessing a deployment must
    repeat (the model itself does not resize or standardise) and the meaning of its outputs.

    Args:
        folder: The export folder.
        info: The data's :attr:`~hwnas.data.DataSplits.info`.

    Returns:
        The file's path.
    """
    path = os.path.join(folder, "input.json")
    side = info["resolution"]
    atomic_write_json(path, {
        "format": MODEL_INPUT_FORMAT, "version": 1,
        "input": {"name": "x", "layout": "NCHW", "dtype": "float32",
                  "shape": ["batch", info["in_channels"], side, side]},
        "preprocessing": [
            "pixels as float in [0, 1] (8-bit / 255, 16-bit / 65535; digits / 16)",
            f"resize to {side}x{side}: {info['resize']}",
            "per channel: (pixel - mean) / std, with the mean and std below (of the training split)",
        ],
        "mean": info["mean"], "std": info["std"],
        "output": {"name": "logits", "shape": ["batch", info["num_classes"]],
                   "classes": info.get("class_names") or list(range(info["num_classes"]))},
    })
    return path


def train_pipeline(arch_source: str, data: str, out: Optional[str], runs_dir: str, train_config: TrainConfig,
                   target_name: str = "eager", threads: int = 1, data_seed: int = 0, limit: Optional[int] = None,
                   space_file: Optional[str] = None, resume: Optional[str] = None, progress: bool = True,
                   log: Callable[[str], None] = _log_default, keep_checkpoints: Optional[int] | str = "run",
                   scale_rounds: int = 3) -> dict[str, Any]:
    """``hwnas train``: trains an architecture (JSON file or search run folder) from scratch, measures, exports.

    ``keep_checkpoints``: epoch checkpoints kept (``None``: all; ``"run"``: the default for a
    new run, the run's own setting on resume). An architecture given as a search run
    folder is measured as the search measured its own (the run's latency table: its
    drift correction, and with ``scale_rounds`` its calibration models timed beside it),
    and its prediction is reported, when the target is the one the table was measured
    on. The other arguments are ``hwnas train``'s options.
    """
    from hwnas.latency.targets import get_target
    from hwnas.spaces import Architecture

    if resume is not None:
        run = _existing_run(resume, "train", keep_checkpoints)
        stored = run.read_config()
        options = stored["options"]
        arch_source, data, data_seed, limit = options["arch"], options["data"], options["data_seed"], options["limit"]
        target_name, threads, space_file = options["target"], options["threads"], options["space_file"]
        # Runs begun before these options existed: measured once, not on a table's scale.
        table_path, scale_rounds = options.get("latency_table"), options.get("scale_rounds", 0)
        train_config = TrainConfig.from_dict(options["train"])
        # The run's own copy: the architecture file it started from may have moved since.
        if os.path.isfile(run.file("architecture.json")):
            arch_source = run.file("architecture.json")
        if os.path.isfile(run.file("summary.json")):
            log(f"run {run.path} has finished; its summary is unchanged")
            return _stored_summary(run)
        _continue_run(run)
    else:
        _refuse_existing_run(out, runs_dir)
        data, space_file = _absolute(data), _absolute(space_file)
        if isinstance(scale_rounds, bool) or not isinstance(scale_rounds, int) or scale_rounds < 0:
            raise ValueError(f"scale_rounds must be an integer >= 0, got {scale_rounds!r}")
        table_path = os.path.join(arch_source, "latency_table.json") if os.path.isdir(arch_source) else None
        table_path = os.path.abspath(table_path) if table_path and os.path.isfile(table_path) else None
    # Everything that can be refused is checked before a new run folder is made.
    path = os.path.join(arch_source, "architecture.json") if os.path.isdir(arch_source) else arch_source
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{arch_source}: neither an architecture JSON file nor a run folder with architecture.json")
    arch = Architecture.load(path)
    splits = prepare_splits(load_dataset(data), arch.resolution, seed=data_seed, limit=limit)
    space = architecture_space(arch, space_file, os.path.dirname(path), splits.in_channels, splits.num_classes,
                               source=path)
    space.validate(arch)
    if (space.in_channels, space.num_classes) != (splits.in_channels, splits.num_classes):
        raise ValueError(f"architecture expects {space.in_channels} channels / {space.num_classes} classes, the data "
                         f"{data!r} has {splits.in_channels} / {splits.num_classes}")
    target = get_target(target_name, threads=threads)
    table = _search_run_table(table_path, space, target, log)
    if table is not None:
        from .tables import measuring_target

        target = measuring_target(target, space, table)
    if resume is None:
        keep = _new_run_keep(keep_checkpoints)
        run = RunDir(out, keep) if out else RunDir.create(runs_dir, "train", keep_checkpoints=keep)
        run.lock()
        run.write_config({"command": "train", "options": {
            "arch": os.path.abspath(path), "data": data, "data_seed": data_seed, "limit": limit, "target": target_name,
            "threads": threads, "space_file": space_file, "train": train_config.to_dict(),
            "latency_table": table_path, "scale_rounds": scale_rounds}, "data": splits.info,
            "space": space.to_dict(), "keep_checkpoints": keep, "hwnas_version": _version()})
        arch.save(run.file("architecture.json"))
    log(f"run folder: {run.path}")
    trained = train_architecture(space, arch, splits, train_config, run, target, stage="train",
                                 export_folder=os.path.join(run.path, "model"), progress=progress, log=log)
    summary = {"format": SUMMARY_FORMAT, "version": 1, "run": run.path, "architecture": arch.to_string(),
               "test_accuracy": trained["test_accuracy"], "val_accuracy": trained["val_accuracy"],
               "measured_latency_us": trained["latency"]["median_us"], "target": target_name,
               "exported": trained["exported"], "seconds": trained["seconds"], "history": trained["history"]}
    if table is not None:
        summary["predicted_latency_us"] = table.predict(arch)
        scaled = _measure_on_table_scale([trained], table, space, target, scale_rounds, log)
        if scaled is not None:
            _put_on_table_scale(summary, scaled)
        summary["latency_error"] = summary["measured_latency_us"] / summary["predicted_latency_us"] - 1.0
    atomic_write_json(run.file("summary.json"), summary)
    run.unlock()
    return summary


def _search_run_table(path: Optional[str], space: Any, target: Any, log: Callable[[str], None]) -> Optional[Any]:
    """The search run's latency table at ``path`` when the model can be measured on its
    scale: the same space, and ``target`` with the table's fingerprint (target, threads,
    machine); else ``None``, saying why."""
    if path is None:
        return None
    from hwnas.latency.fingerprint import fingerprint_differences
    from hwnas.latency.table import LatencyTable

    try:
        table = LatencyTable.load(path)
        table.check_space(space)
    except (OSError, ValueError) as exc:
        log(f"the search run's latency table is not used: {exc}")
        return None
    differences = fingerprint_differences(table.fingerprint, target.fingerprint())
    if differences:
        log("measured once, not on the search run's table scale: the table was measured under another "
            f"fingerprint ({'; '.join(differences)})")
        return None
    return table


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("hwnas")
    except Exception:  # noqa: BLE001 - informational only
        return "unknown"
