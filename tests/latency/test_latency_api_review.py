"""Review of the latency Python API: inputs refused with clear messages, and the
predictor's log-normal spread. Synthetic tables and deterministic fake targets only."""

import math

import numpy as np
import pytest
import torch

from hwnas.latency.energy import energy_table_from_measurements
from hwnas.latency.predictors import (
    BlockConfig,
    BlockCostPredictor,
    block_features,
    fit_table_from_models,
    refine_table_from_models,
)
from hwnas.latency.table import LOCATION_STATISTICS, LatencyTable, TableEntry
from hwnas.latency.targets import get_target
from hwnas.latency.validation import fit_linear_correction, sample_spread_architectures, validate_table
from hwnas.spaces import get_space

from _latency_fixtures import make_tiny_space

FINGERPRINT = {"target": "synthetic"}




def _table(space, fingerprint=FINGERPRINT, keys=None):
    """A synthetic table whose entries have non-integer costs and timing statistics."""
    table = LatencyTable.for_space(space, fingerprint)
    for i, key in enumerate(table.required_keys() if keys is None else keys):
        value = 10.37 + 3.29 * i
        stats = {"median_us": value, "p10_us": 0.9 * value, "mean_us": 1.1 * value, "std_us": 0.5, "iqr_us": 0.7}
        table.entries[key] = TableEntry(value, key.split("|")[0], 1, 1, 1, (1, 1), stats)
    return table


def _eq3(table, arch):
    """FBNet eq. 3 by hand: stem + head + each layer's chosen entry."""
    return table.value(table.stem_key) + table.value(table.head_key) + sum(
        table.value(table.layers[i][c]) for i, c in enumerate(arch.choices))


class _Refusing(type(get_target("eager"))):
    """The eager target's fingerprint; fails the test if anything is measured."""

    def measure(self, *args, **kwargs):  # pragma: no cover - must not be reached
        raise AssertionError("measured before the inputs were checked")


# ---------------------------------------------------------------------- 1. fits from whole models


FBNET = dict(resolution=8, width=0.25)


@pytest.mark.parametrize("foreign, match", [
    (lambda choices: get_space("fbnet", **FBNET).make_arch(choices), "space 'fbnet'"),
    (lambda choices: get_space("fbnet_small", resolution=8, width=0.5).make_arch(choices), "width 0.5"),
    (lambda choices: get_space("fbnet_small", resolution=16, width=0.25).make_arch(choices), "resolution 16"),
    (lambda choices: get_space("fbnet_small", **FBNET, num_classes=4).make_arch(choices), "classes"),
])
def test_fits_from_models_refuse_architectures_of_another_space(foreign, match):
    space = get_space("fbnet_small", **FBNET)
    archs = [space.sample(seed=s) for s in range(3)]
    truth = _table(space)
    measured = [_eq3(truth, a) for a in archs]
    bad = [archs[0], foreign(archs[1].choices), archs[2]]
    with pytest.raises(ValueError, match=rf"archs\[1\] is not an architecture of space 'fbnet_small'.*{match}"):
        fit_table_from_models(space, bad, measured, FINGERPRINT)
    with pytest.raises(ValueError, match=rf"archs\[1\] .*{match}"):
        refine_table_from_models(truth, space, bad, measured)
    # Its own architectures still fit.
    assert fit_table_from_models(space, archs, measured, FINGERPRINT).source == "least_squares"


def test_fits_from_models_refuse_an_architecture_at_another_resolution_choice():
    # validate() accepts any of the space's resolutions; the fitted keys are those of the default one.
    space = make_tiny_space(resolution_choices=[8, 16])
    archs = [space.make_arch(space.sample(seed=s).choices, resolution=r) for s, r in enumerate((8, 8, 16))]
    truth = _table(space)
    measured = [50.0, 60.0, 70.0]
    with pytest.raises(ValueError, match=r"archs\[2\] runs layer 0 as .*\|16x16'.*resolution 16"):
        fit_table_from_models(space, archs, measured, FINGERPRINT)
    with pytest.raises(ValueError, match=r"archs\[2\] runs layer 0"):
        refine_table_from_models(truth, space, archs, measured)


def test_refine_refuses_a_table_of_another_space_shape(tiny_space):
    ten_classes = _table(make_tiny_space(num_classes=10))
    archs = [tiny_space.sample(seed=s) for s in range(3)]
    measured = [_eq3(_table(tiny_space), a) for a in archs]
    with pytest.raises(ValueError, match="head entry 'head\\|c16-4.*build a table for this space"):
        refine_table_from_models(ten_classes, tiny_space, archs, measured)
    refined = refine_table_from_models(_table(tiny_space), tiny_space, archs, measured)
    assert refined.head_key == _table(tiny_space).head_key


# ---------------------------------------------------------------------- 2. merging keeps one clock and drift scale


def _halves(space):
    keys = LatencyTable.for_space(space, FINGERPRINT).required_keys()
    return _table(space, keys=keys[: len(keys) // 2]), _table(space, keys=keys[len(keys) // 2:])


DRIFT = {"reference": "tiny/ref", "baseline_us": 12.5}


@pytest.mark.parametrize("mine, theirs, match", [
    ({}, {"timing": {"clock": "thread_cpu"}}, "different clocks: this one with 'steady', the other with 'thread_cpu'"),
    ({"timing": {"clock": "thread_cpu"}}, {}, "different clocks: this one with 'thread_cpu', the other with 'steady'"),
    ({}, {"drift_correction": DRIFT}, "this table was built without drift correction, the other with"),
    ({"drift_correction": DRIFT}, {}, "this table was built with drift correction, the other without"),
    ({"drift_correction": DRIFT}, {"drift_correction": {**DRIFT, "baseline_us": 13.0}},
     "drift-corrected to different references"),
])
@pytest.mark.parametrize("allow_mixed", [False, True])
def test_merge_refuses_tables_of_another_clock_or_drift_scale(tiny_space, mine, theirs, match, allow_mixed):
    table, other = _halves(tiny_space)
    table.notes.update(mine)
    other.notes.update(theirs)
    before = dict(table.entries)
    with pytest.raises(ValueError, match=match):
        table.merge(other, allow_mixed=allow_mixed)
    assert table.entries == before  # nothing was added


def test_merge_of_one_scale_adds_the_entries_and_an_empty_table_takes_the_others_scale(tiny_space):
    table, other = _halves(tiny_space)
    for t in (table, other):
        t.notes.update({"timing": {"clock": "thread_cpu"}, "drift_correction": dict(DRIFT)})
    merged = table.merge(other)
    assert merged.complete and merged.timing_clock() == "thread_cpu"
    empty = LatencyTable.for_space(tiny_space, FINGERPRINT)
    empty.merge(other)
    # The merged entries were timed on the CPU clock and drift-corrected: the table says so.
    assert empty.timing_clock() == "thread_cpu" and empty.notes["drift_correction"] == DRIFT


# ---------------------------------------------------------------------- 3. linear correction inputs


def test_linear_correction_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match=r"one length .*shapes \(3,\) and \(1,\)"):
        fit_linear_correction([100, 200, 300], [150], intercept=False)
    with pytest.raises(ValueError, match=r"one length .*shapes \(2,\) and \(3,\)"):
        fit_linear_correction([100, 200], [150, 250, 350])
    with pytest.raises(ValueError, match=r"one length .*shapes \(3,\) and \(1, 3\)"):
        fit_linear_correction([100, 200, 300], [[150, 250, 350]])


def test_linear_correction_refuses_sums_that_are_all_the_same():
    with pytest.raises(ValueError, match="table sums are all 100: a slope cannot be fitted"):
        fit_linear_correction([100.0, 100.0, 100.0], [150.0, 160.0, 170.0])
    # Equal to rounding (one set of entries added up in another order) is all the same too.
    with pytest.raises(ValueError, match="a slope cannot be fitted"):
        fit_linear_correction([0.1 + 0.2, 0.3, 0.2 + 0.1], [1.0, 2.0, 3.0])
    # A proportional scale needs no slope: a = sum r / sum r^2 with r = raw / measured.
    raw, measured = [100.0, 100.0, 100.0], [150.0, 160.0, 170.0]
    r = [x / y for x, y in zip(raw, measured)]
    fit = fit_linear_correction(raw, measured, intercept=False)
    assert fit["a"] == pytest.approx(sum(r) / sum(v * v for v in r)) and fit["n"] == 3
    # Nor a per-block term that the points cannot tell from the scale.
    with pytest.raises(ValueError, match="cannot be told from the per-block term"):
        fit_linear_correction(raw, measured, intercept=False, blocks=[4.0, 4.0, 4.0])


# ---------------------------------------------------------------------- 4. the Gaussian process's log-normal spread


class _FixedLogModel:
    """Stands in for the fitted GP: log cost normal with the given mean and std per row."""

    def __init__(self, mu, sigma):
        self.mu, self.sigma = np.asarray(mu, dtype=float), np.asarray(sigma, dtype=float)

    def predict(self, xs, return_std=False):
        assert len(xs) == self.mu.size
        return (self.mu, self.sigma) if return_std else self.mu


def _configs():
    return [BlockConfig(b, c, c, 1, (8, 8)) for b in ("k3_e1", "k3_e3", "k5_e3") for c in (8, 16)]


def test_gaussian_process_std_is_that_of_the_log_normal_cost():
    configs = _configs()
    predictor = BlockCostPredictor("gaussian_process").fit(configs, [10.0 + 3 * i for i in range(len(configs))])
    mu, sigma = np.log([100.0, 40.0]), np.array([0.5, 0.8])
    predictor._model = _FixedLogModel(mu, sigma)
    value, std = predictor.predict(configs[:2], return_std=True)
    # Monte Carlo reference: costs drawn from the log-normal the model describes.
    draws = np.exp(np.random.default_rng(0).normal(mu, sigma, size=(1_000_000, 2)))
    assert std == pytest.approx(draws.std(axis=0), rel=0.02)
    assert value == pytest.approx(np.median(draws, axis=0), rel=0.01)  # the median, as documented
    # And the closed form (the median in place of the mean gives 53.3 and 30.5 here).
    assert std == pytest.approx(np.exp(mu + sigma**2 / 2) * np.sqrt(np.exp(sigma**2) - 1), rel=1e-12)


def test_a_fitted_gaussian_process_reports_the_log_normal_std_of_its_own_prediction():
    configs = _configs()
    predictor = BlockCostPredictor("gaussian_process").fit(configs, [10.0 + 3 * i for i in range(len(configs))])
    query = [BlockConfig("k5_e3", 24, 24, 2, (16, 16))]
    mean, scale = predictor._scale
    mu, s = predictor._model.predict((predictor._design(query) - mean) / scale, return_std=True)
    value, std = predictor.predict(query, return_std=True)
    assert value == pytest.approx(np.exp(mu)) and std == pytest.approx(np.exp(mu + s**2 / 2) * np.sqrt(np.expm1(s**2)))


# ---------------------------------------------------------------------- 5 and 10. expected_latency and predict inputs


def test_expected_latency_refuses_integer_probabilities(tiny_space):
    table = _table(tiny_space)
    arch = tiny_space.make_arch(["k3_e3", "skip", "k5_e3", "k3_e1"])
    one_hot = torch.zeros(4, 3, dtype=torch.long)
    for i, c in enumerate(arch.choices):
        one_hot[i, tiny_space.layers[i].choices.index(c)] = 1
    with pytest.raises(ValueError, match="floating-point probabilities .*layer 0 has dtype torch.int64"):
        table.expected_latency(one_hot)
    with pytest.raises(ValueError, match="floating-point probabilities .*dtype torch.int32"):
        table.expected_latency([row.int() for row in one_hot])
    # In floating point the one-hot is the architecture's eq. 3 sum, fractions included.
    assert table.expected_latency(one_hot.double()).item() == pytest.approx(_eq3(table, arch), rel=1e-12)


def test_expected_latency_and_predict_say_what_they_expect(tiny_space):
    table = _table(tiny_space)
    probs = np.full((4, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"probs must be a floating-point torch tensor \[num_layers=4, num_choices\] "
                                         r"or a list .*got ndarray"):
        table.expected_latency(probs)
    with pytest.raises(ValueError, match=r"probs\[0\] must be a tensor of probabilities"):
        table.expected_latency(list(probs))
    arch = tiny_space.sample(seed=0)
    for bad in (arch.to_dict(), arch.to_string()):
        with pytest.raises(ValueError, match=f"expected an hwnas.spaces.Architecture .*got {type(bad).__name__}"):
            table.predict(bad)
    assert table.predict(arch) == pytest.approx(_eq3(table, arch))


# ---------------------------------------------------------------------- 6. energy values


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, "abc", None, True, -1.0])
def test_energy_values_must_be_finite_numbers(tiny_space, bad):
    keys = LatencyTable.for_space(tiny_space, {}).required_keys()
    values = {k: float(i + 1) for i, k in enumerate(keys)}
    values[keys[3]] = bad
    with pytest.raises(ValueError, match=rf"energy of '{keys[3]}' must be a finite number >= 0, got "):
        energy_table_from_measurements(tiny_space, values, {"target": "phone"})
    values[keys[3]] = 2.5
    table = energy_table_from_measurements(tiny_space, values, {"target": "phone"})
    assert table.value(keys[3]) == 2.5


# ---------------------------------------------------------------------- 7. validate_table checks before measuring


@pytest.mark.parametrize("kwargs, match", [
    (dict(space=make_tiny_space(num_classes=10)), r"keys do not match the search space's.*head entry 'head\|c16-10"),
    (dict(extra_statistics=["p99"]), "no statistic 'p99' to predict with"),
    (dict(extra_statistics=["std"]), "no statistic 'std' to predict with"),
    (dict(extra_statistics="p10"), "extra_statistics must be a list of statistic names"),
    (dict(refine_strength=-1.0), "refine_strength must be a finite number >= 0"),
    (dict(rounds=0), "rounds must be an integer >= 1"),
    (dict(num_archs=80), "cannot draw 82 distinct architectures from space 'latency_test_tiny': it has only 81"),
])
def test_validate_table_checks_every_input_before_measuring(tiny_space, kwargs, match):
    target = _Refusing()
    table = _table(tiny_space, fingerprint=target.fingerprint())
    arguments = {**dict(space=tiny_space, num_archs=2, num_calibration=2, progress=False), **kwargs}
    with pytest.raises(ValueError, match=match):
        validate_table(table, target=target, **arguments)


# ---------------------------------------------------------------------- 8. block configurations


@pytest.mark.parametrize("value, match", [
    ({"block": "k3_e1"}, "has no field c_in"),
    ({"block": "k3_e1", "c_in": 8, "c_out": 8, "stride": 1}, "has no field in_hw"),
    (("k3_e1", 8, 8, 1, 4), r"in_hw must be \[height, width\], got 4"),
    (("k3_e1", 8, 8, 1, (0, 0)), "in_hw must be an integer >= 1, got 0"),
    (("k3_e1", 8, 8, 1, (-4, 4)), "in_hw must be an integer >= 1, got -4"),
    (("k3_e1", 8, 8, 1, (4, 4, 4)), r"in_hw must be \[height, width\]"),
    (("k3_e1", 8.7, 8, 1, (4, 4)), "c_in must be an integer >= 1, got 8.7"),
    (("k3_e1", 8, "8", 1, (4, 4)), "c_out must be an integer >= 1, got '8'"),
    (("k3_e1", 8, 8, True, (4, 4)), "stride must be an integer >= 1, got True"),
    ((None, 8, 8, 1, (4, 4)), "block must be a block name"),
])
def test_block_configurations_are_checked_field_by_field(value, match):
    with pytest.raises(ValueError, match=f"block configuration.* {match}"):
        BlockConfig.coerce(value)
    with pytest.raises(ValueError, match=match):
        block_features(value)


def test_integral_floats_and_arrays_still_read_as_block_configurations():
    reference = block_features(BlockConfig("k3_e3", 8, 16, 2, (8, 8)))
    given = {"block": "k3_e3", "c_in": 8.0, "c_out": np.int64(16), "stride": 2, "in_hw": np.array([8, 8])}
    config = BlockConfig.coerce(given)
    assert config == BlockConfig("k3_e3", 8, 16, 2, (8, 8)) and config.in_hw == (8, 8)
    assert np.array_equal(block_features(given), reference)


# ---------------------------------------------------------------------- 9. statistics a table may take


@pytest.mark.parametrize("spread", ["std", "iqr", "cv", "ci_lo"])
def test_with_statistic_accepts_only_location_statistics(tiny_space, spread):
    table = _table(tiny_space)
    with pytest.raises(ValueError, match=r"statistic must be one of \['min', 'p10', 'p25', 'median', 'mean', "
                                         r"'p75', 'p90', 'max'\]"):
        table.with_statistic(spread)
    low = table.with_statistic("p10")
    for key, entry in table.entries.items():
        assert low.entries[key].value == pytest.approx(0.9 * entry.value)
    assert "std" not in LOCATION_STATISTICS and "iqr" not in LOCATION_STATISTICS


# ---------------------------------------------------------------------- 11. distinct spread architectures


def test_spread_sampling_refuses_more_architectures_than_the_space_has():
    small = make_tiny_space(stages=[{"out_channels": 8, "layers": 2, "first_stride": 1, "choices": ["k3_e1", "skip"]}])
    assert small.size() == 4
    with pytest.raises(ValueError, match="cannot draw 5 distinct architectures .*it has only 4"):
        sample_spread_architectures(small, 5)
    # Every architecture of the space, each once, however sharp the draw.
    for kwargs in ({}, {"sharpness": 50.0}, {"vary_skips": True}):
        archs = sample_spread_architectures(small, 4, **kwargs)
        assert sorted(tuple(a.choices) for a in archs) == sorted(
            (a, b) for a in ("k3_e1", "skip") for b in ("k3_e1", "skip"))
