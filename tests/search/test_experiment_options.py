"""Options of the acceptance experiment ``benchmarks/exp_fbnet_search.py`` (parsing only: no search runs)."""

import importlib.util
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "benchmarks", "exp_fbnet_search.py")


@pytest.fixture(scope="module")
def experiment():
    spec = importlib.util.spec_from_file_location("exp_fbnet_search", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_weights_default_follows_the_objective(experiment):
    # Target objectives read --weights as falling fractions of the reference's latency;
    # FBNet's and the additive loss as rising latency weights.
    assert experiment.parse_args([]).weights == [1.0, 0.7, 0.4]
    assert experiment.parse_args(["--objective", "hard_target"]).weights == [1.0, 0.7, 0.4]
    assert experiment.parse_args(["--objective", "fbnet"]).weights == [0.3, 2.0, 8.0]
    assert experiment.parse_args(["--objective", "fbnet", "--weights", "1,4"]).weights == [1.0, 4.0]


def test_part_b_has_its_own_width_and_resolution(experiment):
    args = experiment.parse_args(["--width", "0.75"])
    assert args.width == 0.75 and args.targets_width != 0.75
    assert experiment.parse_args(["--targets-width", "0.5"]).targets_width == 0.5


def test_quick_overrides_the_scale(experiment):
    args = experiment.parse_args(["--quick", "--seeds", "3,4"])
    assert args.seeds == [0] and args.search_epochs == 4 and args.no_mnist


@pytest.mark.parametrize("argv", [["--weights", "1,x"], ["--weights", "1,0"], ["--seeds", "0,a"],
                                  ["--budget-fraction", "0"]])
def test_bad_values_are_refused(experiment, argv, capsys):
    with pytest.raises(SystemExit) as info:
        experiment.parse_args(argv)
    assert info.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_a_finished_row_read_back_prints_and_checks_as_written(experiment, tmp_path):
    # Rerunning the experiment reads finished rows back instead of searching again.
    row = {"weight": 0.7, "archs": ["a", "b"], "predicted_us": [6000.0, 6400.0], "predicted_raw_us": [5000.0, None],
           "measured_us": [6100.0, 6500.0], "single_measurement_us": [6050.0, 6450.0], "table_scale": [1.0, 1.01],
           "joint_measured_us": [6120.0, 6480.0], "max_abs_latency_error": 0.0167, "max_abs_single_error": 0.008,
           "accuracy": (0.981, 0.004), "search_seconds": [540.0, 600.0],
           "baseline": {"width": 0.4, "depth": 0.5, "arch": "x", "measured_us": 6400.0, "single_measurement_us": [1.0],
                        "accuracy": (0.975, 0.002), "within_budget": True, "candidates": [], "joint_scale": 1.0}}
    path = str(tmp_path / "digits-row-w0.7.json")
    experiment._write_row(path, row)
    back = experiment._read_row(path)
    assert experiment._row_text("digits@8", back) == experiment._row_text("digits@8", row)
    line = experiment._row_text("digits@8", back)
    assert "6200" in line and "1.7%" in line and "98.10±0.40" in line and "w0.4 d0.5" in line and "10.0" in line
