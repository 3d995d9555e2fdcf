"""FBNet differentiable architecture search (Wu et al., 2019), checkpointed and resumable.

One search epoch (after ``warmup_epochs`` of weights only) is:

1. **weights**: one pass over the weight split (``1 - arch_fraction`` = 80% of the
   training split) with SGD + momentum (cosine schedule over the epochs) on the
   cross-entropy. The latency factor of the FBNet loss does not depend on the
   weights; multiplying by it would only rescale the learning rate by a factor that
   drifts as the architecture changes, so weights see the plain cross-entropy.
   By default the weights are trained through FBNet's soft Gumbel-softmax mixture
   (``weight_mode="gumbel"``: every candidate runs). ``weight_mode="gumbel_hard"``
   samples one path per step (one block per layer, ~10x cheaper per step), but a
   22-layer supernet whose path changes every step sees inconsistent features and
   learns very slowly: on digits it stayed at chance (10-12% train accuracy) for
   300 steps, where the soft mixture reached 80% in 40.
2. **architecture**: one pass over the arch split (the other 20%) with Adam on the
   architecture logits, minimising the objective (FBNet's
   ``CE * alpha * log(LAT) ** beta`` by default; see :mod:`hwnas.search.objectives`)
   where ``LAT`` is the expected latency under the soft Gumbel-softmax mask of the
   step (FBNet eq. 9), mapped through the table's fitted linear correction when it
   has one (so it is on the scale of the reported predictions). Adam sees the
   objective divided by a constant, ``objective(1, LAT_0)`` with ``LAT_0`` the
   expected latency of the uniform distribution: Adam's steps do not depend on a
   constant gradient scale, but float32 does. At ``beta = 24`` FBNet's
   ``log(LAT) ** beta`` is about 1e23, the squared gradients overflow Adam's second
   moment to infinity, and every step is then zero: the architecture froze after one
   epoch until this scale was added. Logged losses are the unscaled objective.

The Gumbel temperature decays exponentially: ``T_e = initial_temperature *
temperature_decay ** e`` in epoch ``e`` (0-based).

After the last epoch, :meth:`FBNetSearch.run` draws ``num_samples`` architectures
from the learned distribution (plus its arg-max), evaluates each with the supernet's
weights on the validation split, predicts its latency from the table, and keeps the
one with the lowest objective value ``objective(val CE, predicted latency)`` (with a
``target_band``, the lowest among those predicted within the band of the objective's
latency target, when there is one). Before
evaluating an architecture, the batch-norm statistics of its blocks are re-estimated
on training batches run through that architecture alone (statistics gathered under
the soft mixture do not match a single path), and restored afterwards.

Resume: each epoch ends with a checkpoint holding the supernet, both optimizers, the
scheduler, the history, the elapsed time, and every random state (torch, numpy,
Python, the batch shuffler). Continuing from it gives bit-for-bit the result of an
uninterrupted run on the same machine and thread count.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import torch
import torch.nn.functional as F

from hwnas.data import DataSplits, ImageDataset, iterate_batches, num_batches
from hwnas.runs import RunDir, atomic_write_json, capture_rng_state, read_json, restore_rng_state
from hwnas.spaces import Architecture, SearchSpace

from ._config import DictConfig
from .objectives import Objective, make_objective
from .retrain import TRAIN_MEMORY_FORMAT, check_finite_training, evaluate, seed_everything, to_train_layout
from .supernet import Supernet

__all__ = ["SearchConfig", "SearchResult", "FBNetSearch", "arch_split_size", "mobilenet_v2_style_choices", "HISTORY_FORMAT",
           "CANDIDATES_FORMAT"]

HISTORY_FORMAT = "hwnas.search_history"
CANDIDATES_FORMAT = "hwnas.search_candidates"
FORMAT_VERSION = 1


@dataclass
class SearchConfig(DictConfig):
    """Hyper-parameters of an FBNet search (defaults sized for a few minutes on 2 cores).

    Attributes:
        epochs: Total epochs, warm-up included.
        warmup_epochs: Leading epochs that train the weights only (``None``: ``epochs // 3``).
        batch_size: Examples per weight step.
        arch_batch_size: Examples per architecture step. Smaller than ``batch_size``
            because the architecture split is small (20% of the training split): on
            digits, 64 gave 4 Adam steps per epoch, too few for the logits to leave
            the uniform start in a few epochs.
        weight_lr, weight_momentum, weight_decay: SGD of the supernet weights (cosine schedule).
        arch_lr, arch_weight_decay: Adam of the architecture logits. FBNet used 0.01 over
            90 epochs; a few epochs need larger steps.
        initial_temperature, temperature_decay: Gumbel temperature ``T0 * decay ** epoch``.
        weight_mode: Mixed-layer mode during weight steps (``gumbel_hard`` or ``gumbel``).
        arch_mode: Mode during architecture steps (``gumbel``: FBNet's soft mask).
        arch_fraction: Share of the training split used for architecture steps.
        objective: Objective as a dict (``{"name": "fbnet", "alpha": .., "beta": ..}``).
        num_samples: Architectures sampled from the final distribution.
        target_band: With a latency-target objective (``proxyless``, ``hard_target``,
            ``absolute``), the selection keeps only candidates predicted within this
            fraction of the target (``hard_target``: at most ``1 + target_band`` times it;
            the others: within ``target_band`` on either side), the best of them by
            objective; candidates outside come after them, and one of them is kept only
            when none is inside. ``None`` (default): every candidate competes on its
            objective value alone. Why: the candidates' validation losses, measured with
            the shared supernet weights on a small split, differ by whole nats between
            samples of one distribution; a sample 29% over its target has won on them.
        bn_batches: Training batches (of 128) that re-estimate the batch-norm statistics of each
            evaluated architecture (0: use the supernet's running statistics as they are).
        seed: Seed of everything (weights, split, batch order, Gumbel noise, samples).
    """

    config_name = "search config"

    # 30 epochs, 10 of them weights only: with 8 (2 warm-up) the supernet saw about 130
    # weight steps on digits, reached a training accuracy of 0.39, and the first
    # architecture epoch already sent nearly every layer to skip (an untrained network loses
    # least by passing its input through); the same search at 30/10 reached 0.85
    # supernet validation accuracy against 0.37, in about 2 minutes instead of 35 s.
    epochs: int = 30
    warmup_epochs: Optional[int] = None  # None: a third of the epochs
    batch_size: int = 64
    arch_batch_size: int = 16
    weight_lr: float = 0.05
    weight_momentum: float = 0.9
    weight_decay: float = 1e-4
    arch_lr: float = 0.1
    arch_weight_decay: float = 5e-4
    initial_temperature: float = 5.0
    temperature_decay: float = 0.926  # 5 -> 0.54 over 30 epochs
    weight_mode: str = "gumbel"
    arch_mode: str = "gumbel"
    arch_fraction: float = 0.2
    objective: dict = field(default_factory=lambda: {"name": "fbnet", "alpha": 0.2, "beta": 0.6})
    num_samples: int = 8
    target_band: Optional[float] = None
    bn_batches: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        self.check_field_types()
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.warmup_epochs is None:
            self.warmup_epochs = self.epochs // 3
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs={self.epochs}], got {self.warmup_epochs}")
        if not 0 < self.arch_fraction < 1:
            raise ValueError(f"arch_fraction must be in (0, 1), got {self.arch_fraction}")
        if not (self.initial_temperature > 0 and 0 < self.temperature_decay <= 1):
            raise ValueError(f"need initial_temperature > 0 and temperature_decay in (0, 1], got "
                             f"{self.initial_temperature}, {self.temperature_decay}")
        if self.weight_mode not in ("gumbel", "gumbel_hard", "single_path"):
            raise ValueError(f"weight_mode must be gumbel, gumbel_hard or single_path, got {self.weight_mode!r}")
        if self.arch_mode not in ("gumbel", "gumbel_hard", "softmax"):
            raise ValueError(f"arch_mode must be gumbel, gumbel_hard or softmax, got {self.arch_mode!r}")
        if self.batch_size < 2 or self.arch_batch_size < 2:
            raise ValueError(f"batch sizes must be at least 2 (BatchNorm cannot train on one example), got "
                             f"batch_size={self.batch_size}, arch_batch_size={self.arch_batch_size}")
        if not (self.weight_lr > 0 and self.arch_lr > 0):
            raise ValueError(f"learning rates must be positive, got weight_lr={self.weight_lr}, arch_lr={self.arch_lr}")
        if not 0 <= self.weight_momentum < 1:
            raise ValueError(f"weight_momentum must be in [0, 1), got {self.weight_momentum}")
        if self.weight_decay < 0 or self.arch_weight_decay < 0:
            raise ValueError(f"weight decays must be >= 0, got weight_decay={self.weight_decay}, "
                             f"arch_weight_decay={self.arch_weight_decay}")
        if self.num_samples < 0:
            raise ValueError(f"num_samples must be non-negative, got {self.num_samples}")
        if self.bn_batches < 0:
            raise ValueError(f"bn_batches must be non-negative, got {self.bn_batches}")
        self.objective = make_objective(self.objective).to_dict()  # validates and normalises
        if self.target_band is not None:
            if not (isinstance(self.target_band, (int, float)) and math.isfinite(self.target_band)
                    and self.target_band >= 0):
                raise ValueError(f"target_band must be a non-negative fraction of the target, got {self.target_band!r}")
            if "target" not in self.objective:
                raise ValueError(f"target_band needs an objective with a latency target (proxyless, hard_target, "
                                 f"absolute), got {self.objective['name']!r}")

    def temperature(self, epoch: int) -> float:
        """Gumbel temperature of (0-based) ``epoch``."""
        return self.initial_temperature * self.temperature_decay ** epoch



@dataclass
class SearchResult:
    """What a search found.

    Attributes:
        architecture: The chosen architecture.
        candidates: Per evaluated architecture: ``arch`` (compact string), ``choices``,
            ``val_loss``, ``val_accuracy``, ``predicted_latency_us``, ``score``, ``kind``
            (``"argmax"``, ``"sample"`` or ``"baseline"``).
        history: Per epoch records (temperature, losses, probabilities...).
        search_seconds: Wall time of the epochs (summed over resumed pieces).
    """

    architecture: Architecture
    candidates: list[dict[str, Any]]
    history: list[dict[str, Any]]
    search_seconds: float


def mobilenet_v2_style_choices(space: SearchSpace) -> Optional[list[str]]:
    """MobileNetV2 inside an FBNet-style space: ``k3_e1`` first, ``k3_e6`` everywhere else.

    Returns ``None`` when the space does not offer those blocks.
    """
    choices = ["k3_e1"] + ["k3_e6"] * (len(space.layers) - 1)
    if all(c in layer.choices for c, layer in zip(choices, space.layers)):
        return choices
    return None


@contextlib.contextmanager
def _frozen(params: list[torch.nn.Parameter]) -> Iterator[None]:
    """Turns off gradients of ``params`` inside the block (saves their backward work)."""
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def arch_split_size(n_train: int, arch_fraction: float) -> int:
    """Examples of the training split given to architecture steps (the rest train weights).

    Raises:
        ValueError: Fewer than 2 examples would be left for the weights or for the
            architecture (BatchNorm cannot train on one).
    """
    n_arch = max(2, int(round(n_train * arch_fraction)))
    if n_train - n_arch < 2:
        raise ValueError(f"a search needs at least {n_arch + 2} training examples ({n_arch} for architecture steps, "
                         f"2 for weights), the training split has {n_train}: use more data (raise --limit)")
    return n_arch


class FBNetSearch:
    """Runs an FBNet search in a run folder.

    Args:
        space: The search space.
        table: Its latency table on the target (see :func:`hwnas.search.tables.cached_table`);
            ``None`` searches on cross-entropy alone (no latency term, candidates ranked
            by validation loss).
        splits: Data; the search uses ``train`` (split into weight / arch parts) and ``val``.
        config: Hyper-parameters.
        run: Run folder for checkpoints and outputs (``None``: in memory only).
        progress: Progress bars.
        log: Called with one line per epoch (``None``: silent).
    """

    def __init__(self, space: SearchSpace, table: Any, splits: DataSplits, config: SearchConfig,
                 run: Optional[RunDir] = None, progress: bool = True, log: Any = print) -> None:
        if splits.in_channels != space.in_channels or splits.num_classes != space.num_classes:
            raise ValueError(f"data has {splits.in_channels} channels / {splits.num_classes} classes, the space "
                             f"{space.in_channels} / {space.num_classes}")
        if splits.train.resolution != (space.resolution, space.resolution):
            raise ValueError(f"data is {splits.train.resolution}, the space's resolution is {space.resolution}")
        self.space = space
        self.table = table
        self.splits = splits
        self.config = config
        self.run_dir = run
        self.progress = progress
        self.log = log or (lambda line: None)
        self.objective: Objective = make_objective(config.objective)
        seed_everything(config.seed)
        self.supernet = Supernet(space, table, mode=config.weight_mode, temperature=config.initial_temperature)
        self.supernet.to(memory_format=TRAIN_MEMORY_FORMAT)  # ~3x faster depthwise convolutions on the CPU
        # Deterministic 80/20 split of the training split from the seed.
        order = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(config.seed + 1))
        n_arch = arch_split_size(len(order), config.arch_fraction)
        self.arch_data: ImageDataset = splits.train.subset(order[:n_arch], f"{splits.train.name}/arch")
        self.weight_data: ImageDataset = splits.train.subset(order[n_arch:], f"{splits.train.name}/weights")
        self.weight_optimizer = torch.optim.SGD(list(self.supernet.weight_parameters()), lr=config.weight_lr,
                                                momentum=config.weight_momentum, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.weight_optimizer, T_max=config.epochs)
        self.arch_optimizer = torch.optim.Adam(self.supernet.arch_parameters(), lr=config.arch_lr,
                                               weight_decay=config.arch_weight_decay)
        self.shuffler = torch.Generator().manual_seed(config.seed + 2)
        self.loss_scale = self._loss_scale()
        self.history: list[dict[str, Any]] = []
        self.epoch = 0
        self.search_seconds = 0.0
        target = self.objective.to_dict().get("target")
        if target is not None and table is not None:
            cheapest = self.cheapest_predicted_latency()
            if target < cheapest:
                self.log(f"warning: the latency target {target:g} us is below the cheapest architecture of the space "
                         f"({cheapest:.0f} us predicted, every layer's cheapest candidate): the search will end "
                         f"over its target")

    def cheapest_predicted_latency(self) -> float:
        """Predicted latency of the architecture made of every layer's cheapest candidate
        (by table cost): the least a latency target can ask of this space."""
        choices = [layer.choices[int(torch.argmin(self.table.layer_costs(index)))]
                   for index, layer in enumerate(self.space.layers)]
        return float(self.table.predict(self.space.make_arch(choices)))

    def calibrated(self, raw: torch.Tensor, blocks: torch.Tensor, blocks_squared: torch.Tensor) -> torch.Tensor:
        """``raw`` table sum -> the table's prediction: its fitted ``a * raw + b`` (plus
        its block term, ``per_block * blocks`` or an older table's ``depth * blocks_squared``)
        when it has one.

        The objective, the logged expected latency and :meth:`LatencyTable.predict` (used to
        select and report architectures) thus share one scale, so a ``hard_target`` in us
        means the same thing during the search and in the reported predictions.
        """
        from hwnas.latency.table import apply_correction

        correction = getattr(self.table, "correction", None) or {}
        if correction.get("kind") == "linear":
            return apply_correction(correction, raw, blocks=blocks, blocks_squared=blocks_squared)
        return raw

    def _mask_latency(self) -> torch.Tensor:
        """The prediction for the last forward's masks (differentiable)."""
        net = self.supernet
        blocks = net.expected_blocks()
        return self.calibrated(net.expected_latency(), blocks, blocks ** 2)

    def _distribution_latency(self) -> torch.Tensor:
        """The prediction under the architecture distribution itself (no noise)."""
        net = self.supernet
        return self.calibrated(net.distribution_latency(), net.distribution_blocks(), net.distribution_blocks_squared())

    def _loss_scale(self) -> float:
        """``objective(1, LAT_0)`` (``LAT_0``: the uniform distribution's latency), a constant
        that keeps the architecture gradients in float32 range (see the module docs)."""
        if self.table is None:
            return 1.0
        with torch.no_grad():
            lat0 = self._distribution_latency().double()
            scale = float(self.objective(torch.tensor(1.0, dtype=torch.float64), lat0))
        return scale if math.isfinite(scale) and scale > 0 else 1.0

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue after the current epoch."""
        return {
            "config": self.config.to_dict(),
            "supernet": self.supernet.state_dict(),
            "weight_optimizer": self.weight_optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "arch_optimizer": self.arch_optimizer.state_dict(),
            "history": self.history,
            "search_seconds": self.search_seconds,
            "rng": capture_rng_state({"shuffler": self.shuffler}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # Through from_dict: fields added since the checkpoint was written take their defaults.
        saved, now = SearchConfig.from_dict(state["config"]).to_dict(), self.config.to_dict()
        if saved != now:
            changed = ", ".join(f"{k}: {saved[k]!r} in the checkpoint, {now[k]!r} now"
                                for k in now if saved[k] != now[k])
            raise ValueError(f"the checkpoint was made with a different search config ({changed})")
        self.supernet.load_state_dict(state["supernet"])
        self.weight_optimizer.load_state_dict(state["weight_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])
        self.history = list(state["history"])
        self.search_seconds = float(state["search_seconds"])
        self.epoch = int(state["epoch"])
        restore_rng_state(state["rng"], {"shuffler": self.shuffler})

    # ------------------------------------------------------------------ one epoch

    def _batches(self, dataset: ImageDataset, batch_size: int, desc: str):
        batches = ((to_train_layout(x), y) for x, y in iterate_batches(dataset, batch_size, self.shuffler))
        if self.progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, total=num_batches(len(dataset), batch_size), desc=desc,
                           unit="batch", leave=False)
        return batches

    def _train_weights(self, epoch: int) -> dict[str, float]:
        net = self.supernet
        net.train()
        net.set_mode(self.config.weight_mode)
        seen, loss_sum, correct = 0, 0.0, 0
        with _frozen(net.arch_parameters()):
            for x, y in self._batches(self.weight_data, self.config.batch_size, f"epoch {epoch + 1}/{self.config.epochs} weights"):
                logits = net(x)
                loss = F.cross_entropy(logits, y)
                self.weight_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.weight_optimizer.step()
                seen += len(y)
                loss_sum += float(loss.detach()) * len(y)
                correct += int((logits.detach().argmax(1) == y).sum())
        return {"train_loss": loss_sum / seen, "train_accuracy": correct / seen}

    def _train_arch(self, epoch: int) -> dict[str, float]:
        net = self.supernet
        net.train()
        net.set_mode(self.config.arch_mode)
        seen, loss_sum, ce_sum, lat_sum = 0, 0.0, 0.0, 0.0
        with _frozen(list(net.weight_parameters())):
            for x, y in self._batches(self.arch_data, self.config.arch_batch_size, f"epoch {epoch + 1}/{self.config.epochs} architecture"):
                ce = F.cross_entropy(net(x), y)
                # Without a table the architecture is searched on accuracy alone.
                lat = self._mask_latency() if self.table is not None else None
                loss = self.objective(ce, lat) if lat is not None else ce
                self.arch_optimizer.zero_grad(set_to_none=True)
                (loss / self.loss_scale).backward()
                self.arch_optimizer.step()
                seen += len(y)
                loss_sum += float(loss.detach()) * len(y)
                ce_sum += float(ce.detach()) * len(y)
                lat_sum += float(lat.detach()) * len(y) if lat is not None else 0.0
        return {"arch_loss": loss_sum / seen, "arch_ce": ce_sum / seen,
                "arch_mask_latency_us": lat_sum / seen if self.table is not None else None}

    def run_epoch(self) -> dict[str, Any]:
        """Runs epoch ``self.epoch`` (weights, then architecture after warm-up) and records it."""
        epoch = self.epoch
        started = time.perf_counter()
        temperature = self.config.temperature(epoch)
        self.supernet.set_temperature(temperature)
        record: dict[str, Any] = {"epoch": epoch + 1, "temperature": temperature,
                                  "lr": self.weight_optimizer.param_groups[0]["lr"]}
        record.update(self._train_weights(epoch))
        check_finite_training(self.supernet, record["train_loss"], f"search epoch {epoch + 1}",
                              f"lower the weight learning rate (--weight-lr, was {self.config.weight_lr:g})")
        record["arch_step"] = epoch >= self.config.warmup_epochs
        if record["arch_step"]:
            record.update(self._train_arch(epoch))
            check_finite_training(self.supernet, record["arch_loss"], f"search epoch {epoch + 1} (architecture step)",
                                  f"lower the architecture learning rate (--arch-lr, was {self.config.arch_lr:g})")
        self.scheduler.step()
        derived = self.supernet.derive()
        with torch.no_grad():
            record["expected_latency_us"] = float(self._distribution_latency()) if self.table is not None else None
        record["derived"] = derived.to_string()
        record["derived_predicted_latency_us"] = self.table.predict(derived) if self.table is not None else None
        record["probabilities"] = [[round(v, 6) for v in p.tolist()] for p in self.supernet.probabilities()]
        self.search_seconds += time.perf_counter() - started
        record["seconds"] = self.search_seconds
        self.history.append(record)
        self.epoch += 1
        lat_text = f", expected latency {record['expected_latency_us']:.0f} us" if self.table is not None else ""
        self.log(f"search epoch {epoch + 1}/{self.config.epochs} (T={temperature:.2f}): train acc "
                 f"{record['train_accuracy']:.3f}" + (f", arch loss {record['arch_loss']:.3f}" if record["arch_step"] else
                                                      " (warm-up)") + lat_text)
        return record

    # ------------------------------------------------------------------ selection

    @contextlib.contextmanager
    def _bn_recalibrated(self) -> Iterator[None]:
        """Inside the block, batch norms hold statistics re-estimated for the current path.

        Runs the first ``bn_batches`` batches (128 examples, fixed order) of the weight
        split through the supernet in its current (fixed) mode with cumulative
        averaging, and restores every statistic on exit, so evaluating candidates
        leaves the supernet exactly as it was.
        """
        norms = [m for m in self.supernet.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if self.config.bn_batches == 0 or not norms:
            yield
            return
        saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
                 for m in norms]
        was_training = self.supernet.training
        try:
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration batches
            self.supernet.train()
            with torch.no_grad():
                for i, (x, _) in enumerate(iterate_batches(self.weight_data, 128, shuffle=False)):
                    if i >= self.config.bn_batches:
                        break
                    self.supernet(to_train_layout(x))
            yield
        finally:
            for m, (momentum, mean, var, count) in zip(norms, saved):
                m.momentum = momentum
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)
            self.supernet.train(was_training)

    def _score(self, val_loss: float, latency: Optional[float]) -> float:
        if latency is None:
            return val_loss
        return float(self.objective(torch.tensor(val_loss), torch.tensor(latency)))

    def _within_target_band(self, latency: Optional[float]) -> Optional[bool]:
        """Whether ``latency`` is inside the selection's target band (``None``: no band)."""
        band = self.config.target_band
        if band is None or latency is None:
            return None
        ratio = latency / self.config.objective["target"] - 1.0
        if self.config.objective["name"] == "hard_target":
            return ratio <= band
        return abs(ratio) <= band

    def evaluate_architecture(self, arch: Architecture, kind: str) -> dict[str, Any]:
        """Validation loss/accuracy of ``arch`` with the supernet's weights, and its predicted latency."""
        self.supernet.use_architecture(arch)
        try:
            with self._bn_recalibrated():
                val_loss, val_acc = evaluate(self.supernet, self.splits.val)
        finally:
            self.supernet.use_architecture(None)
        latency = self.table.predict(arch) if self.table is not None else None
        row = {"kind": kind, "arch": arch.to_string(), "choices": list(arch.choices), "val_loss": val_loss,
               "val_accuracy": val_acc, "predicted_latency_us": latency, "score": self._score(val_loss, latency)}
        within = self._within_target_band(latency)
        if within is not None:
            row["within_target_band"] = within
        return row

    def select(self) -> list[dict[str, Any]]:
        """Evaluates the arg-max, ``num_samples`` samples and MobileNetV2-style baselines; best first
        (with a ``target_band``: those inside the band first, each group by objective value)."""
        rng = random.Random(self.config.seed + 3)
        archs: dict[tuple, tuple[Architecture, str]] = {}
        argmax = self.supernet.derive()
        archs[argmax.key()] = (argmax, "argmax")
        for _ in range(self.config.num_samples):
            arch = self.supernet.sample_architecture(rng)
            archs.setdefault(arch.key(), (arch, "sample"))
        rows = [self.evaluate_architecture(arch, kind) for arch, kind in archs.values()]
        rows.sort(key=lambda row: (not row.get("within_target_band", True), row["score"]))
        if rows and rows[0].get("within_target_band") is False:
            self.log(f"warning: none of the {len(rows)} candidates is predicted within the target band; the best "
                     f"outside it is kept ({rows[0]['predicted_latency_us']:.0f} us predicted)")
        baseline = mobilenet_v2_style_choices(self.space)
        if baseline is not None:
            # A reference point for the plots, evaluated on the same footing; never selected.
            rows.append(self.evaluate_architecture(self.space.make_arch(baseline), "baseline"))
        return rows

    # ------------------------------------------------------------------ driver

    def run(self, resume: bool = True) -> SearchResult:
        """Runs (or continues) the search and the final selection.

        Args:
            resume: Continue from the run folder's latest search checkpoint.
        """
        run = self.run_dir
        if run is not None and resume:
            state = run.load_latest("search")
            if state is not None:
                self.load_state_dict(state)
                self.log(f"resumed after epoch {self.epoch} from {run.path}")
        ran = self.epoch < self.config.epochs
        while self.epoch < self.config.epochs:
            self.run_epoch()
            if run is not None:
                run.save_checkpoint("search", self.epoch, self.state_dict())
                self.write_history()
        if run is not None and not ran:
            # Resumed after the last epoch: a kill between its checkpoint and its history
            # write left history.json one epoch short.
            self.write_history()
        candidates = self.select()
        best = next(row for row in candidates if row["kind"] != "baseline")
        arch = self.space.make_arch(best["choices"])
        result = SearchResult(arch, candidates, self.history, self.search_seconds)
        if run is not None:
            atomic_write_json(run.file("candidates.json"), {"format": CANDIDATES_FORMAT, "version": FORMAT_VERSION,
                                                            "objective": self.objective.to_dict(), "candidates": candidates})
            arch.save(run.file("architecture.json"))
        return result

    def write_history(self) -> None:
        """Writes ``history.json`` (format ``hwnas.search_history`` v1) into the run folder."""
        atomic_write_json(self.run_dir.file("history.json"), {
            "format": HISTORY_FORMAT, "version": FORMAT_VERSION, "space": self.space.name,
            "choices": [list(layer.choices) for layer in self.space.layers], "epochs": self.history})


def read_history(path: str) -> dict[str, Any]:
    """Reads a ``history.json`` written by a search."""
    return read_json(path, HISTORY_FORMAT, (FORMAT_VERSION,))
