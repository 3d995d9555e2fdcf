"""Input checks of the learned cost predictors and the table fits from whole models."""

import math

import numpy as np
import pytest

from hwnas.latency.predictors import (
    BlockConfig,
    BlockCostPredictor,
    block_features,
    fit_table_from_models,
    refine_table_from_models,
)
from hwnas.latency.table import LatencyTable, TableEntry

FINGERPRINT = {"target": "synthetic"}


def _truth(space, seed=0):
    table = LatencyTable.for_space(space, FINGERPRINT)
    rng = np.random.default_rng(seed)
    for key in table.required_keys():
        table.entries[key] = TableEntry(float(rng.uniform(5, 50)), key.split("|")[0], 1, 1, 1, (1, 1))
    return table


def _models(space, n=6):
    truth = _truth(space)
    archs = [space.sample(seed=s) for s in range(n)]
    return truth, archs, [truth.predict(a, correction="none") for a in archs]


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, 0.0, -5.0])
@pytest.mark.parametrize("method", ["fit", "refine"])
def test_fitting_to_models_refuses_a_measurement_that_is_not_finite_and_positive(tiny_space, method, bad):
    truth, archs, measured = _models(tiny_space, 4)
    measured[2] = bad
    with pytest.raises(ValueError, match=r"measured must be finite and positive .*at index 2"):
        if method == "fit":
            fit_table_from_models(tiny_space, archs, measured, FINGERPRINT)
        else:
            refine_table_from_models(truth, tiny_space, archs, measured)


def test_fit_table_from_models_refuses_empty_and_mismatched_inputs(tiny_space):
    _, archs, measured = _models(tiny_space, 3)
    with pytest.raises(ValueError, match="need at least 1 architecture with one measurement each, got 0"):
        fit_table_from_models(tiny_space, [], [], FINGERPRINT)
    with pytest.raises(ValueError, match="got 3 architectures and 2 measurements"):
        fit_table_from_models(tiny_space, archs, measured[:2], FINGERPRINT)
    with pytest.raises(ValueError, match="measured must be a sequence of numbers"):
        fit_table_from_models(tiny_space, archs, ["a", "b", "c"], FINGERPRINT)
    with pytest.raises(ValueError, match=r"measured must be a flat sequence .*shape \(3, 1\)"):
        fit_table_from_models(tiny_space, archs, [[m] for m in measured], FINGERPRINT)
    with pytest.raises(ValueError, match="ridge must be a finite number >= 0, got -1"):
        fit_table_from_models(tiny_space, archs, measured, FINGERPRINT, ridge=-1)
    bad = tiny_space.sample(seed=0)
    bad.choices[2] = "k3_e3"  # offered in stage 0 only
    with pytest.raises(ValueError, match=r"archs\[1\]: layer 2 has no choice 'k3_e3'"):
        fit_table_from_models(tiny_space, [archs[0], bad], measured[:2], FINGERPRINT)
    # Valid input still fits, with a finite residual.
    table = fit_table_from_models(tiny_space, archs, measured, FINGERPRINT)
    assert math.isfinite(table.notes["fit"]["residual_mape_pct"])


def test_refine_table_from_models_refuses_empty_and_mismatched_inputs(tiny_space):
    truth, archs, measured = _models(tiny_space, 4)
    with pytest.raises(ValueError, match="need at least 2 architectures .*got 0 architectures and 0 measurements"):
        refine_table_from_models(truth, tiny_space, [], [])
    with pytest.raises(ValueError, match="got 4 architectures and 3 measurements"):
        refine_table_from_models(truth, tiny_space, archs, measured[:3])
    with pytest.raises(ValueError, match="strength must be non-negative and finite, got True"):
        refine_table_from_models(truth, tiny_space, archs, measured, strength=True)


@pytest.mark.parametrize("batch", [0, -2, 1.5, True, "2"])
def test_predictor_refuses_a_batch_that_is_not_a_positive_integer(batch):
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        BlockCostPredictor(batch=batch)
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        block_features(BlockConfig("k3_e1", 8, 8, 1, (4, 4)), batch=batch)
    assert BlockCostPredictor(batch=np.int64(2)).batch == 2


def _configs():
    return [BlockConfig(block, c, c, 1, (4, 4)) for block in ("k3_e1", "k3_e3", "k5_e6") for c in (8, 16)]


@pytest.mark.parametrize("kind", BlockCostPredictor.KINDS)
@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_predictor_refuses_negative_or_non_finite_costs(kind, bad):
    values = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    values[3] = bad
    with pytest.raises(ValueError, match=r"values must be finite and .*at index 3"):
        BlockCostPredictor(kind).fit(_configs(), values)
    with pytest.raises(ValueError, match=r"values must be finite and .*at index 3"):
        BlockCostPredictor(kind).evaluate_holdout(_configs(), values)


def test_bayesian_ridge_refuses_all_negative_costs_and_accepts_zero_costs():
    with pytest.raises(ValueError, match=r"values must be finite and >= 0 .*got -1.0 at index 0 \(5 such values\)"):
        BlockCostPredictor("bayesian_ridge").fit(_configs()[:5], [-1, -2, -3, -4, -5])
    # A block that costs nothing measurable (a skip) is a valid cost for the linear model ...
    BlockCostPredictor("bayesian_ridge").fit(_configs(), [0.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    # ... but not for the Gaussian process, which models log cost.
    with pytest.raises(ValueError, match="values must be finite and positive \\(gaussian_process models log cost\\)"):
        BlockCostPredictor("gaussian_process").fit(_configs(), [0.0, 20.0, 30.0, 40.0, 50.0, 60.0])


def test_evaluate_holdout_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="6 block configurations but 5 values"):
        BlockCostPredictor().evaluate_holdout(_configs(), [1.0, 2.0, 3.0, 4.0, 5.0])
