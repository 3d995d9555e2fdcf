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
