"""The benchmark scripts' option checks and pure helpers (nothing is timed here)."""

from __future__ import annotations

import importlib
import statistics
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    """Imports a script of benchmarks/ by name (they import their helpers as top-level `common`)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(str(BENCHMARKS))


def refused(parse, argv, capsys) -> str:
    """argparse's error message for argv (a usage error, exit status 2, no traceback)."""
    with pytest.raises(SystemExit) as exc:
        parse(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


# ----------------------------------------------------------------------------- common


def test_ratio_of_medians_agrees_with_the_medians_where_a_median_of_ratios_does_not(bench):
    common = bench("common")
    slow = [10.0, 11.0, 12.0, 5.0, 6.0]  # median 10
    fast = [9.0, 10.0, 11.0, 13.0, 14.0]  # median 11: slower than `slow`
    assert statistics.median(s / f for s, f in zip(slow, fast)) > 1  # per-round ratios 1.11, 1.10, 1.09, 0.38, 0.43
    assert common.ratio_of_medians(slow, fast) == pytest.approx(10 / 11)


def test_median_interval_takes_order_statistics_with_the_binomial_coverage(bench):
    common = bench("common")
    values = [float(v) for v in range(1, 10)]  # 9 values
    low, high, coverage = common.median_interval(values)
    assert (low, high) == (2.0, 8.0)  # k = 2: 1 - 2 * (1 + 9) / 512
    assert coverage == pytest.approx(1 - 20 / 512)
    # Too few values for 95%: the whole range, with the coverage it has.
    low, high, coverage = common.median_interval([3.0, 1.0, 2.0, 5.0, 4.0])
    assert (low, high) == (1.0, 5.0)
    assert coverage == pytest.approx(1 - 2 / 32)
    assert common.median_interval([4.0]) == (4.0, 4.0, 0.0)
    with pytest.raises(ValueError):
        common.median_interval([])


def test_shared_argument_types_refuse_what_they_should():
    import argparse

    from hwnas._argtypes import calibration_models, compared_models, non_negative_float

    assert non_negative_float("0") == 0.0 and compared_models("2") == 2
    assert calibration_models("0") == 0 and calibration_models("2") == 2
    for parse, text in ((non_negative_float, "-1"), (non_negative_float, "nan"), (non_negative_float, "inf"),
                        (non_negative_float, "x"), (compared_models, "1"), (compared_models, "2.5"),
                        (calibration_models, "1"), (calibration_models, "-2")):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


# ------------------------------------------------------------------- micro-benchmarks


@pytest.mark.parametrize(
    "script, argv, expected",
    [
        ("bench_mixed_layer", ["--rounds", "0"], "--rounds: must be >= 1"),
        ("bench_mixed_layer", ["--batch", "0"], "--batch: must be >= 1"),
        ("bench_mixed_layer", ["--batch", "-2"], "--batch: must be >= 1"),
        ("bench_mixed_layer", ["--channels", "0"], "--channels: must be >= 1"),
        ("bench_mixed_layer", ["--channels", "3"], "--channels: must be even"),
        ("bench_mixed_layer", ["--size", "0"], "--size: must be >= 1"),
        ("bench_weighted_sum", ["--rounds", "0"], "--rounds: must be >= 1"),
        ("bench_weighted_sum", ["--threads", "0"], "--threads: must be between 1"),
        ("bench_channel_mask", ["--rounds", "0"], "--rounds: must be >= 1"),
        ("bench_channel_mask", ["--min-round-ms", "-1"], "--min-round-ms: must be a finite number >= 0"),
        ("bench_depthwise_conv", ["--rounds", "0"], "--rounds: must be >= 1"),
        ("bench_depthwise_conv", ["--batch", "0"], "--batch: must be >= 1"),
        ("bench_depthwise_conv", ["--resolution", "0"], "--resolution: must be >= 1"),
        ("bench_depthwise_conv", ["--width", "0"], "--width: must be a positive number"),
    ],
)
def test_micro_benchmarks_refuse_bad_sizes_in_argparse(bench, capsys, script, argv, expected):
    module = bench(script)
    assert expected in refused(module.parse_args, argv, capsys)


def test_weighted_sum_quick_takes_rounds_and_threads(bench):
    module = bench("bench_weighted_sum")
    assert module.parse_args(["--quick"]).rounds == module.QUICK_ROUNDS
    assert module.parse_args(["--quick", "--rounds", "7"]).rounds == 7
    args = module.parse_args([])
    assert (args.rounds, args.threads) == (module.DEFAULT_ROUNDS, 1)


def test_mixed_layer_defaults_give_a_95_percent_interval(bench):
    module = bench("bench_mixed_layer")
    common = bench("common")
    rounds = module.parse_args([]).rounds
    assert common.median_interval([float(i) for i in range(rounds)])[2] >= 0.95


def test_mixed_layer_marks_unresolved_speed_ups(bench):
    module = bench("bench_mixed_layer")
    assert module.speedup_text(1.20, 1.10, 1.30, "eager") == "1.20x vs eager [1.10-1.30]"
    assert "not resolved (within noise)" in module.speedup_text(1.04, 0.95, 1.10, "eager", ceiling=1.5)
    assert "not resolved (above the 1.015x ceiling)" in module.speedup_text(1.04, 1.02, 1.06, "eager",
                                                                          ceiling=1.015)


def test_mixed_layer_finds_a_seed_for_every_candidate(bench):
    import torch

    module = bench("bench_mixed_layer")
    layer = module.make_layer(4)
    seeds = module.seeds_sampling_each(layer)
    layer.mode = "gumbel_hard"
    for index, seed in enumerate(seeds):
        torch.manual_seed(seed)
        assert layer.sample_weights()[1] == index
    assert layer.mode == "gumbel_hard"


def test_depthwise_conv_returns_the_space_of_its_options(bench):
    module = bench("bench_depthwise_conv")
    args, space = module.parse_args(["--resolution", "8", "--width", "0.25"])
    assert (space.name, space.resolution) == ("fbnet_small", 8)


# ----------------------------------------------------------- latency acceptance script


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--targets", "bogus"], "--targets: invalid choice"),
        (["--targets", "eager", "eager"], "each target once"),
        (["--space", "bogus"], "--space: invalid choice"),
        (["--resolution", "0"], "--resolution: must be >= 1"),
        (["--flush-mb", "-1"], "--flush-mb: must be a number of MiB from 0"),
        (["--archs", "1"], "--archs: must be at least 2"),
        (["--calibration", "1"], "--calibration: must be 0"),
        (["--calibration", "0"], "add --refine-strength -1"),
        (["--rounds", "0"], "--rounds: must be >= 1"),
        (["--refine-strength", "nan"], "--refine-strength: must be a finite number"),
    ],
)
def test_latency_acceptance_refuses_bad_options_before_any_work(bench, capsys, tmp_path, argv, expected):
    module = bench("bench_latency_acceptance")
    out = tmp_path / "out"
    assert expected in refused(module.parse_args, ["--out", str(out), *argv], capsys)
    assert not out.exists()


def test_latency_acceptance_takes_calibration_0_without_refinement(bench, tmp_path):
    module = bench("bench_latency_acceptance")
    args, space = module.parse_args(["--out", str(tmp_path / "out"), "--space", "fbnet_small", "--resolution",
                                     "8", "--calibration", "0", "--refine-strength", "-1"])
    assert args.refine_strength is None and args.calibration == 0
    assert args.flush_mb > 0 and space.resolution == 8


def test_latency_acceptance_refuses_a_file_as_out(bench, capsys, tmp_path):
    module = bench("bench_latency_acceptance")
    (tmp_path / "file").write_text("x")
    assert "is a file" in refused(module.parse_args, ["--out", str(tmp_path / "file")], capsys)


def _started_table(module, space, path, clock="thread_cpu", drift=None):
    """A table at path with its call overhead measured (fake) and the settings a build stores."""
    from hwnas.latency import LatencyTable, get_target

    table = LatencyTable.for_space(space, get_target("eager", threads=1, batch=1).fingerprint())
    table.call_overhead = 1.0
    table.notes["timing"] = {"clock": clock}
    if drift is not None:
        table.notes["drift_correction"] = drift
    table.save(path)


def test_latency_acceptance_names_its_own_options_when_a_table_cannot_be_continued(bench, capsys, tmp_path):
    from hwnas.latency import reference_model
    from hwnas.spaces import get_space

    module = bench("bench_latency_acceptance")
    space = get_space("fbnet_small", resolution=8)
    key = reference_model(space)[2]
    argv = ["--out", str(tmp_path), "--space", "fbnet_small", "--resolution", "8", "--targets", "eager"]
    path = tmp_path / "table_fbnet_small8_eager.json"

    # A table with entries and no drift note: built with --no-drift-correction, or killed
    # under an older version of this script (drift-corrected entries, noted only at the end).
    # The file cannot tell which, so the message does not send the user one way only.
    _started_table(module, space, path)
    message = refused(module.parse_args, argv, capsys)
    assert "killed under an earlier version of this script" in message
    assert "if you know it was built with --no-drift-correction, continue it with that option, else build it " \
           "again with --restart" in message
    module.parse_args([*argv, "--no-drift-correction"])  # continues
    module.parse_args([*argv, "--restart"])  # starts again

    drift = {"reference": key, "baseline_us": 1000.0, "reference_budget_s": 0.05}
    _started_table(module, space, path, drift=drift)
    module.parse_args(argv)  # the same setting continues it
    assert "continue it without --no-drift-correction" in refused(
        module.parse_args, [*argv, "--no-drift-correction"], capsys)
    assert "Continue it with --clock thread_cpu" in refused(module.parse_args, [*argv, "--clock", "steady"], capsys)

    _started_table(module, space, path, drift={**drift, "reference": "another"})
    assert "build it again with --restart" in refused(module.parse_args, argv, capsys)

    path.write_text('{"format": "something else"}')
    assert "is not a latency table" in refused(module.parse_args, [*argv, "--restart"], capsys)
