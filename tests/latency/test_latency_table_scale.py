"""Measuring models on a table's scale: calibration models stored with the fit and timed again."""

import pytest
import torch

from hwnas.latency import Target, build_table
from hwnas.latency.harness import sample_statistics
from hwnas.latency.table_scale import calibration_models, measure_on_table_scale
from hwnas.latency.validation import measure_round_robin, validate_table


def parameters(module):
    return float(sum(p.numel() for p in module.parameters()))


class SpeedTarget(Target):
    """A deterministic stand-in: a model "takes" its parameter count divided by ``speed``,
    and every measurement is logged in order."""

    name = "speed"

    def __init__(self, speed=1.0):
        super().__init__()
        self.speed = speed
        self.log = []

    def measure(self, module, input_shape, config):
        self.log.append((parameters(module), config.budget_s))
        return sample_statistics([parameters(module) / self.speed] * 5)


@pytest.fixture
def calibrated(tiny_space, fast_timing):
    target = SpeedTarget()
    table = build_table(tiny_space, target, config=fast_timing, progress=False)
    validate_table(table, tiny_space, target, num_archs=2, num_calibration=4, config=fast_timing, progress=False,
                   intercept=False, per_block=True)
    return table, target


def test_validate_table_stores_the_calibration_models_with_their_measurements(tiny_space, calibrated):
    table, _ = calibrated
    stored = calibration_models(table)
    assert len(stored) == 4 == table.correction["n"]
    for arch, measured in stored:
        tiny_space.validate(arch)
        torch.manual_seed(0)
        assert measured == parameters(tiny_space.build(arch))
    # The stored models survive a save and load.
    assert table.from_dict(table.to_dict()).correction["models"] == table.correction["models"]


def test_measurements_on_a_faster_machine_are_scaled_back_to_the_calibration_speed(tiny_space, calibrated):
    table, target = calibrated
    target.speed = 1.25  # everything now runs 25% faster than when the fit was made
    torch.manual_seed(3)
    models = [(tiny_space.build(tiny_space.sample(seed=s)), (3, 8, 8)) for s in (5, 6)]
    counts = [parameters(m) for m, _ in models]
    target.log.clear()
    result = measure_on_table_scale(models, table, tiny_space, target, rounds=3, budget_s=0.6)
    assert result["scale"] == pytest.approx(1.25)
    assert result["calibration_ratios"] == pytest.approx([1.25] * 4)
    assert result["measured_us"] == pytest.approx([c / 1.25 for c in counts])
    assert result["table_scale_us"] == pytest.approx(counts)
    # Round-robin: the 2 models then the 4 calibration models, 3 times over, each with a
    # third of the budget.
    calibration = [parameters(tiny_space.build(a)) for a, _ in calibration_models(table)]
    assert [p for p, _ in target.log] == (counts + calibration) * 3
    assert all(b == pytest.approx(0.2) for _, b in target.log)


def test_the_scale_is_the_median_ratio_so_one_disturbed_calibration_model_does_not_move_it(tiny_space, calibrated):
    table, target = calibrated
    table.correction["models"][0]["measured_us"] *= 3.0  # one calibration model was timed in a bad moment
    result = measure_on_table_scale([], table, tiny_space, target, rounds=1)
    assert sorted(result["calibration_ratios"]) == pytest.approx([1.0, 1.0, 1.0, 3.0])
    assert result["scale"] == pytest.approx(1.0)


def test_bad_arguments_and_tables_without_calibration_models_are_refused(tiny_space, calibrated, fast_timing):
    table, target = calibrated
    with pytest.raises(ValueError, match="rounds"):
        measure_on_table_scale([], table, tiny_space, target, rounds=0)
    with pytest.raises(ValueError, match="budget_s"):
        measure_on_table_scale([], table, tiny_space, target, budget_s=0)
    plain = build_table(tiny_space, target, config=fast_timing, progress=False)
    with pytest.raises(ValueError, match="calibrate it again"):
        measure_on_table_scale([], plain, tiny_space, target)


def test_round_robin_pools_every_round_and_builds_lazily():
    target = SpeedTarget(speed=2.0)
    built = []

    def later():
        built.append(len(target.log))
        return torch.nn.Linear(3, 1), (3,)

    results = measure_round_robin([(torch.nn.Linear(4, 1), (4,)), later], target, rounds=2)
    assert [r.median_us for r in results] == [2.5, 2.0]
    assert len(results[0].samples_us) == 10  # 5 samples from each round
    assert built == [1, 3]  # built right before each of its measurements
    with pytest.raises(ValueError, match="rounds"):
        measure_round_robin([], target, rounds=0)
