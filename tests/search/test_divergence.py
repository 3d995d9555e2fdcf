"""A training that diverges (non-finite loss or weights) stops with an error naming the
learning rate, instead of checkpointing, measuring and exporting a NaN model."""

import math

import pytest
import torch
from torch import nn

from hwnas.runs import RunDir
from hwnas.search.dnas import FBNetSearch, SearchConfig
from hwnas.search.retrain import TrainConfig, TrainingDiverged, check_finite_training, train_model


def test_check_finite_training_names_the_first_bad_tensor():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    check_finite_training(model, 0.5, "epoch 1", "lower it")  # finite: nothing raised
    with pytest.raises(TrainingDiverged, match=r"epoch 1: training diverged \(mean loss nan\); lower it"):
        check_finite_training(model, math.nan, "epoch 1", "lower it")
    # A running statistic (a buffer) that went infinite is caught as well as a weight.
    model[1].running_var[0] = math.inf
    with pytest.raises(TrainingDiverged, match=r"non-finite values in 1 tensors \(first: 1.running_var\)"):
        check_finite_training(model, 0.5, "epoch 2", "lower it")


def test_retraining_with_a_huge_learning_rate_stops_before_checkpointing(space, splits, tmp_path):
    torch.manual_seed(0)
    model = space.build(space.make_arch(["k3_e3", "k3_e3"]))
    run = RunDir(str(tmp_path / "run"))
    with pytest.raises(TrainingDiverged, match=r"retrain epoch 1: .*lower the learning rate \(--train-lr, was 1e\+12\)"):
        train_model(model, splits, TrainConfig(epochs=2, lr=1e12, batch_size=16), run=run, progress=False)
    # Nothing of the diverged epoch is kept: a resume would not load a NaN model.
    assert run.load_latest("retrain") is None


def test_a_search_with_a_huge_weight_learning_rate_stops(space, table, splits):
    config = SearchConfig(epochs=2, warmup_epochs=1, batch_size=16, num_samples=2, weight_lr=1e12)
    with pytest.raises(TrainingDiverged, match=r"search epoch 1: .*--weight-lr, was 1e\+12"):
        FBNetSearch(space, table, splits, config, progress=False, log=None).run()
