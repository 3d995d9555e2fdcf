"""Options of the acceptance experiment ``benchmarks/exp_fbnet_search.py`` (parsing only: no search runs;
the ``experiment`` fixture, the script as a module, is in conftest.py)."""

import pytest


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


def test_quick_changes_the_defaults_and_keeps_the_options_given(experiment):
    args = experiment.parse_args(["--quick"])
    assert args.seeds == [0] and args.search_epochs == 4 and args.no_mnist and args.retrain_seeds == 1
    # Before, --quick overrode these silently.
    args = experiment.parse_args(["--quick", "--seeds", "3,4", "--train-epochs", "9", "--targets-samples", "20"])
    assert args.seeds == [3, 4] and args.train_epochs == 9 and args.targets_samples == 20 and args.search_epochs == 4
    assert experiment.parse_args(["--quick", "--search-epochs", "1"]).warmup_epochs == 0  # its warm-up default fits
    full = experiment.parse_args([])
    assert (full.seeds, full.search_epochs, full.warmup_epochs, full.train_epochs) == ([0, 1, 2], 30, None, 30)


def test_an_out_folder_of_other_settings_is_refused(experiment, tmp_path, capsys):
    out = str(tmp_path / "exp")
    first = experiment.parse_args(["--out", out, "--objective", "absolute"])
    experiment.check_out_settings(first)
    # The same settings continue; other weights and parts are additions, not other settings.
    experiment.check_out_settings(experiment.parse_args(["--out", out, "--weights", "0.5", "--no-targets"]))
    for argv, named in ((["--objective", "fbnet"], "--objective 'absolute' there, 'fbnet' now"),
                        (["--quick"], "--search-epochs 30 there, 4 now"),
                        (["--limit", "300"], "--limit None there, 300 now")):
        with pytest.raises(SystemExit) as info:
            experiment.check_out_settings(experiment.parse_args(["--out", out, *argv]))
        assert named in str(info.value) and "give another --out" in str(info.value)
    # A folder of results from before settings were recorded: taken as they are, said so.
    old = tmp_path / "old"
    old.mkdir()
    (old / "digits-row-w1.json").write_text("{}")
    experiment.check_out_settings(experiment.parse_args(["--out", str(old)]))
    assert "before settings were recorded" in capsys.readouterr().err
    assert (old / "experiment.json").is_file()


def test_training_seeds_start_with_the_search_seed_and_never_collide_across_search_seeds(experiment):
    assert experiment.parse_args([]).retrain_seeds == 3
    assert experiment._training_seeds(2, 1) == [2]
    # The first training of each search seed is the search run's own retraining (seed = search seed).
    seeds = [experiment._training_seeds(s, 3) for s in (0, 1, 2)]
    assert [s[0] for s in seeds] == [0, 1, 2]
    flat = [t for s in seeds for t in s]
    assert len(set(flat)) == 9


@pytest.mark.parametrize("argv", [["--weights", "1,x"], ["--weights", "1,0"], ["--seeds", "0,a"], ["--seeds", "0,0"],
                                  ["--budget-fraction", "0"], ["--retrain-seeds", "0"], ["--train-epochs", "0"],
                                  ["--limit", "0"], ["--width", "0"], ["--search-epochs", "0"], ["--samples", "0"],
                                  ["--calibrate", "1"], ["--warmup-epochs", "30"], ["--resolution", "0"]])
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


def test_part_b_band_and_samples(experiment, capsys):
    args = experiment.parse_args([])
    assert args.targets_band == 0.1 and args.targets_samples == 32
    assert experiment.parse_args(["--targets-band", "-1"]).targets_band is None  # off
    assert experiment.parse_args(["--quick"]).targets_samples == 8
    with pytest.raises(SystemExit):
        experiment.parse_args(["--targets-samples", "-2"])
    assert "--targets-samples" in capsys.readouterr().err


def _grid(timings, pick):
    return {"width": pick[0], "depth": pick[1],
            "measurements": [{"width": w, "depth": d, "measured_latency_us": us} for w, d, us in timings]}


def test_baseline_candidates_reach_past_noisy_grid_timings(experiment):
    # Depth-0.25 models timed 4.6-4.9 ms once, outside the band of a 3 ms mean: the 3
    # nearest on each side are timed jointly all the same.
    timings = [(0.25, 0.25, 1900.0), (0.3, 0.25, 2000.0), (0.4, 0.25, 2100.0), (0.5, 0.25, 4600.0),
               (0.6, 0.25, 4700.0), (0.75, 0.25, 4800.0), (1.0, 0.25, 4900.0), (0.25, 0.5, 6600.0),
               (0.5, 0.5, 7000.0)]
    picked = experiment._baseline_candidates(_grid(timings, (0.5, 0.25)), 3000.0)
    assert [(m["width"], m["depth"]) for m in picked] == [
        (0.25, 0.25), (0.3, 0.25), (0.4, 0.25), (0.5, 0.25), (0.6, 0.25), (0.75, 0.25)]
    # Inside the band (0.7-1.5 x the mean) everything is kept: 4 below the mean here.
    band = experiment._baseline_candidates(_grid(timings, (0.25, 0.5)), 5000.0)
    assert [(m["width"], m["depth"]) for m in band] == [
        (0.5, 0.25), (0.6, 0.25), (0.75, 0.25), (1.0, 0.25), (0.25, 0.5), (0.5, 0.5)]
    # The grid's own pick is always a candidate, even far outside.
    far = experiment._baseline_candidates(_grid(timings, (1.0, 0.25)), 1000.0)
    assert (1.0, 0.25) in [(m["width"], m["depth"]) for m in far]


def test_accuracy_gap_is_the_difference_of_means_with_welchs_standard_error(experiment):
    row = {"accuracies": [0.98, 0.99, 0.97], "baseline": {"accuracies": [0.96, 0.97]}}
    gap, se = experiment._accuracy_gap(row)
    assert gap == pytest.approx(0.98 - 0.965)
    # Hand-computed: variances 1e-4 (n=3) and 5e-5 (n=2).
    assert se == pytest.approx((1e-4 / 3 + 5e-5 / 2) ** 0.5)
    assert experiment._accuracy_gap({"accuracy": (0.98, 0.0), "baseline": {"accuracy": (0.97, 0.0)}}) is None
