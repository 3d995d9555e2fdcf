"""Retraining a chosen architecture from scratch, measuring it, and exporting it.

The recipe (:class:`TrainConfig`) is the same for searched models and baselines:
SGD with Nesterov momentum, cosine learning-rate schedule over the epochs,
weight decay, cross-entropy. Training is checkpointed every epoch into a
:class:`~hwnas.runs.RunDir` (stage ``"retrain"`` by default), so ``resume`` continues
an interrupted run and ends bitwise where an uninterrupted one would.
"""

from __future__ import annotations

import math
import os
import random
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwnas.data import DataSplits, ImageDataset, iterate_batches, num_batches
from hwnas.layers.depthwise import native_depthwise
from hwnas.runs import RunDir, capture_rng_state, restore_rng_state

from ._config import DictConfig

__all__ = ["TrainConfig", "train_model", "evaluate", "evaluate_as_trained", "measure_model_latency", "export_model",
           "seed_everything", "TRAIN_MEMORY_FORMAT", "to_train_layout"]

#: Memory layout of models and batches while training and evaluating. oneDNN's CPU
#: depthwise convolutions run 3-4x faster (forward + backward) on channels-last
#: tensors than on NCHW ones, and every FBNet block has one: a soft supernet step on
#: digits (batch 64, 1 thread) takes 0.44 s instead of 1.25 s, with the same loss.
#: Trained models are handed back in the default layout, so latency measurement and
#: export see the model a user would build.
TRAIN_MEMORY_FORMAT = torch.channels_last


def to_train_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` in :data:`TRAIN_MEMORY_FORMAT` when it is a 4-d batch, unchanged otherwise."""
    return x.contiguous(memory_format=TRAIN_MEMORY_FORMAT) if x.dim() == 4 else x


@dataclass
class TrainConfig(DictConfig):
    """The standard retraining recipe.

    Attributes:
        epochs: Passes over the training split.
        batch_size: Examples per step.
        lr: Peak learning rate (cosine-annealed to 0 over ``epochs``).
        momentum: SGD (Nesterov) momentum.
        weight_decay: L2 weight decay.
        label_smoothing: Cross-entropy label smoothing.
        seed: Seed of the weight initialisation and of the batch order.
    """

    config_name = "train config"

    epochs: int = 8
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        self.check_field_types()
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2 (BatchNorm cannot train on one example), "
                             f"got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")



def seed_everything(seed: int) -> None:
    """Seeds torch, numpy and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    random.seed(seed)


@torch.no_grad()
def evaluate(model: nn.Module, dataset: ImageDataset, batch_size: int = 256) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (in eval mode) on ``dataset``.

    Returns:
        ``(loss, accuracy)``, accuracy in [0, 1].
    """
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for x, y in iterate_batches(dataset, batch_size, shuffle=False):
        logits = model(to_train_layout(x))
        total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    model.train(was_training)
    return total_loss / len(dataset), correct / len(dataset)


def evaluate_as_trained(model: nn.Module, dataset: ImageDataset, batch_size: int = 256) -> tuple[float, float]:
    """:func:`evaluate` in the layout and on the kernels that :func:`train_model` evaluates
    with (channels-last, native depthwise), so that a model loaded from a checkpoint scores
    what its training reported, to the last image. ``model`` ends in the default layout."""
    model.to(memory_format=TRAIN_MEMORY_FORMAT)
    try:
        with native_depthwise(model):
            return evaluate(model, dataset, batch_size)
    finally:
        model.to(memory_format=torch.contiguous_format)


def train_model(
    model: nn.Module,
    splits: DataSplits,
    config: TrainConfig,
    run: Optional[RunDir] = None,
    stage: str = "retrain",
    resume: bool = True,
    progress: bool = True,
    log: Any = print,
) -> dict[str, Any]:
    """Trains ``model`` from its current weights with the recipe, checkpointing each epoch.

    Args:
        model: The network (``[B, C, R, R] -> [B, num_classes]``), freshly initialised.
        splits: Data; trains on ``train``, reports ``val`` each epoch and ``test`` at the end.
        config: The recipe.
        run: Run folder for checkpoints (``None``: no checkpoints).
        stage: Checkpoint stage name inside ``run``.
        resume: Continue from the stage's latest checkpoint when there is one.
        progress: Show a progress bar per epoch.
        log: Called with one line per epoch (``None`` to stay silent).

    Returns:
        ``{"history": [...per epoch...], "val_loss", "val_accuracy", "test_loss", "test_accuracy"}``.
        ``model`` ends trained, in the default (contiguous) memory layout.
    """
    model.to(memory_format=TRAIN_MEMORY_FORMAT)
    # Depthwise convolutions train on hwnas' native kernels (oneDNN ran the depthwise
    # weight gradient as GEMMs on the AVX2 machines measured here); the model is handed back
    # with its own nn.Conv2d modules, which shared the parameters throughout.
    with native_depthwise(model):
        result = _train_epochs(model, splits, config, run, stage, resume, progress, log)
    model.to(memory_format=torch.contiguous_format)
    return result


def _check_same_model(model: nn.Module, saved: dict[str, Any], where: str, stage: str) -> None:
    """Refuses to resume a different network from a checkpoint (another architecture
    trained in the same folder), naming the first difference, before anything is loaded."""
    own = model.state_dict()
    missing = [k for k in own if k not in saved]
    extra = [k for k in saved if k not in own]
    shapes = [(k, tuple(saved[k].shape), tuple(v.shape)) for k, v in own.items()
              if k in saved and tuple(saved[k].shape) != tuple(v.shape)]
    if not (missing or extra or shapes):
        return
    if shapes:
        key, there, here = shapes[0]
        first = f"{key} has shape {list(there)} there and {list(here)} in this model"
    else:
        first = f"{(missing or extra)[0]} is {'missing there' if missing else 'not in this model'}"
    raise ValueError(f"{where} is of a different network ({first}; {len(missing) + len(extra) + len(shapes)} "
                     f"differences): train this architecture in a new folder, or remove checkpoints/{stage}-latest.json "
                     f"and every checkpoints/{stage}-epoch-*.pt there to start the {stage} stage over")


class TrainingDiverged(ValueError):
    """Training produced a non-finite loss or non-finite weights (the learning rate is
    too high for this model and data): nothing after that epoch is saved or exported."""


def check_finite_training(module: nn.Module, mean_loss: float, where: str, advice: str) -> None:
    """Raises :class:`TrainingDiverged` when ``mean_loss`` or any of ``module``'s
    parameters or buffers is not finite.

    Checked once per epoch, before the epoch's checkpoint: a NaN model would otherwise be
    checkpointed, evaluated at chance, measured and exported with exit status 0.

    Args:
        module: The trained model (or supernet).
        mean_loss: The epoch's mean training loss.
        where: What diverged, e.g. ``"retrain epoch 3"``.
        advice: What to change, e.g. ``"lower --train-lr (was 1e+06)"``.
    """
    bad = [name for name, t in list(module.named_parameters()) + list(module.named_buffers())
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if math.isfinite(mean_loss) and not bad:
        return
    what = f"mean loss {mean_loss:g}"
    if bad:
        what += f", non-finite values in {len(bad)} tensors (first: {bad[0]})"
    raise TrainingDiverged(f"{where}: training diverged ({what}); {advice}, and start a new run "
                           "(the checkpoints kept are from before it diverged)")


def _train_epochs(model, splits, config, run, stage, resume, progress, log):
    """The epochs of :func:`train_model` and the final evaluation (its result)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=config.momentum > 0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    shuffler = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, Any]] = []
    start = 0
    state = run.load_latest(stage) if (run is not None and resume) else None
    if state is not None:
        if state["config"] != config.to_dict():
            raise ValueError(f"{run.path}: the {stage} checkpoint was made with {state['config']}, not {config.to_dict()}")
        _check_same_model(model, state["model"], f"{run.path}: the {stage} checkpoint", stage)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"], {"shuffler": shuffler})
        history = list(state["history"])
        start = int(state["epoch"])
    for epoch in range(start, config.epochs):
        model.train()
        batches = iterate_batches(splits.train, config.batch_size, shuffler)
        total = num_batches(len(splits.train), config.batch_size)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, total=total, desc=f"{stage} {epoch + 1}/{config.epochs}", unit="batch", leave=False)
        seen, loss_sum, correct = 0, 0.0, 0
        for x, y in batches:
            logits = model(to_train_layout(x))
            loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(y)
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.detach().argmax(1) == y).sum())
        scheduler.step()
        check_finite_training(model, loss_sum / seen, f"{stage} epoch {epoch + 1}",
                              f"lower the learning rate (--train-lr, was {config.lr:g})")
        val_loss, val_acc = evaluate(model, splits.val)
        record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": loss_sum / seen,
                  "train_accuracy": correct / seen, "val_loss": val_loss, "val_accuracy": val_acc}
        history.append(record)
        if log is not None:
            log(f"{stage} epoch {epoch + 1}/{config.epochs}: train loss {record['train_loss']:.3f} "
                f"acc {record['train_accuracy']:.3f}, val acc {val_acc:.3f}")
        if run is not None:
            run.save_checkpoint(stage, epoch + 1, {
                "config": config.to_dict(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": capture_rng_state({"shuffler": shuffler}),
                "history": history,
            })
    val_loss, val_acc = evaluate(model, splits.val)
    test_loss, test_acc = evaluate(model, splits.test)
    return {"history": history, "val_loss": val_loss, "val_accuracy": val_acc, "test_loss": test_loss,
            "test_accuracy": test_acc}


def measure_model_latency(model: nn.Module, target: Any, input_shape: tuple[int, int, int], config: Any = None) -> dict[str, Any]:
    """Measures ``model``'s forward latency on ``target`` with the native harness.

    Args:
        model: The network (a copy is timed in eval mode; ``model`` is not changed).
        target: A :class:`hwnas.latency.targets.Target`.
        input_shape: ``(C, H, W)`` of one example (the target adds its batch size).
        config: :class:`~hwnas.latency.harness.TimingConfig` (default: the whole-model
            settings of :mod:`hwnas.latency.validation`).

    Returns:
        The timing summary (``median_us``, CI, ...), with ``target`` added.
    """
    import copy

    from hwnas.latency.validation import DEFAULT_MODEL_TIMING

    result = target.measure(copy.deepcopy(model), input_shape, config or DEFAULT_MODEL_TIMING)
    summary = dict(result.summary())
    summary["median_us"] = result.median_us
    summary["target"] = target.name
    return summary


def _first_line(exc: BaseException) -> str:
    """An exporter's error in one line (torch.export's run to dozens of lines of advice)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def export_model(model: nn.Module, folder: str, input_shape: tuple[int, int, int], arch: Any = None,
                 name: str = "model") -> dict[str, str]:
    """Writes TorchScript, ``torch.export`` and ONNX files of ``model`` (and its architecture JSON).

    Files (each written atomically): ``<name>.torchscript.pt`` (traced; load with
    ``torch.jit.load``), ``<name>.pt2`` (``torch.export`` with a dynamic batch axis; load
    with ``torch.export.load``), ``<name>.onnx`` (opset 17, input ``x``
    ``[batch, C, H, W]`` with a dynamic batch axis, output ``logits``), and
    ``architecture.json`` when ``arch`` is given. A failing exporter is reported by a
    warning and skipped, not fatal: the others may still be useful.

    Returns:
        ``{kind: path}`` of the files written.
    """
    import copy

    from hwnas._io import atomic_write_file

    model = copy.deepcopy(model).eval()
    example = torch.randn(1, *input_shape)
    written: dict[str, str] = {}
    failures: list[str] = []
    os.makedirs(folder, exist_ok=True)
    # The exporters' own chatter is silenced; a failure is reported after this block
    # (a warning raised inside it would be silenced too).
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = os.path.join(folder, f"{name}.torchscript.pt")
        traced = torch.jit.trace(model, (example,))
        atomic_write_file(path, lambda tmp: torch.jit.save(traced, tmp))
        written["torchscript"] = path
        try:
            # A batch of 2 and a dynamic batch axis: torch.export specialises a size-1
            # dimension, and the file would then refuse every batch but 1.
            batch = torch.export.Dim("batch", min=1, max=2 ** 16)
            exported = torch.export.export(model, (torch.randn(2, *input_shape),), dynamic_shapes=({0: batch},))
            path = os.path.join(folder, f"{name}.pt2")
            atomic_write_file(path, lambda tmp: torch.export.save(exported, tmp))
            written["torch_export"] = path
        except Exception as exc:  # noqa: BLE001 - an optional format; say why and carry on
            failures.append(f"torch.export of the model failed ({_first_line(exc)}); skipped {name}.pt2")
        try:
            path = os.path.join(folder, f"{name}.onnx")
            atomic_write_file(path, lambda tmp: torch.onnx.export(
                model, (example,), tmp, dynamo=False, input_names=["x"], output_names=["logits"], opset_version=17,
                dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}))
            written["onnx"] = path
        except Exception as exc:  # noqa: BLE001
            failures.append(f"ONNX export of the model failed ({_first_line(exc)}); skipped {name}.onnx")
    for failure in failures:
        warnings.warn(failure, stacklevel=2)
    if arch is not None:
        path = os.path.join(folder, "architecture.json")
        arch.save(path)
        written["architecture"] = path
    return written
