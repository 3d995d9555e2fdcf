"""``hwnas search`` / ``hwnas train`` end to end on a 2-layer space and tiny data (real timing, ~20 s)."""

import json
import os

import numpy as np
import pytest
import torch

from hwnas.cli import main
from hwnas.spaces import Architecture

from _search_fixtures import tiny_dataset, tiny_space


@pytest.fixture
def inputs(tmp_path):
    data = tiny_dataset(60)
    np.savez(tmp_path / "tiny.npz", x=data.images[:, 0].numpy(), y=data.labels.numpy())
    tiny_space().save(tmp_path / "space.json")
    return tmp_path


def test_search_then_train_from_the_command_line(inputs, capsys, monkeypatch):
    tmp = inputs
    run = tmp / "run"
    # Paths as a user types them, relative to where the search starts.
    monkeypatch.chdir(tmp)
    common = ["--quiet", "--data", "tiny.npz", "--resolution", "8"]
    code = main(["search", *common, "--space", "space.json", "--width", "1", "--out", str(run),
                 "--epochs", "2", "--warmup-epochs", "1", "--batch-size", "16", "--samples", "2", "--calibrate", "2",
                 "--scale-rounds", "2", "--cache-dir", str(tmp / "cache"), "--train-epochs", "1", "--objective", "hard_target",
                 "--target-us", "500"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"results: {run}" in out
    for name in ("config.json", "history.json", "candidates.json", "architecture.json", "latency_table.json",
                 "summary.json", "plots/architecture.png", "plots/distribution.png", "plots/accuracy_latency.png",
                 "model/model.torchscript.pt", "model/model.onnx", "model/input.json", "checkpoints/search-latest.json",
                 "checkpoints/retrain-latest.json"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["format"] == "hwnas.run_summary" and summary["measured_latency_us"] > 0
    # The final measurement ran beside the table's 2 calibration models and is on their scale.
    scale = summary["table_scale"]
    assert scale["rounds"] == 2 and scale["scale"] > 0 and scale["single_measurement_us"] > 0
    assert summary["measured_latency_us"] == pytest.approx(scale["pooled_us"] * scale["scale"])
    assert summary["latency_error"] == pytest.approx(summary["measured_latency_us"] / summary["predicted_latency_us"] - 1)
    assert "models" not in summary["latency_correction"]
    config = json.loads((run / "config.json").read_text())
    # What a deployment must repeat before the model: the training split's statistics.
    model_input = json.loads((run / "model" / "input.json").read_text())
    assert model_input["mean"] == config["data"]["mean"] and model_input["std"] == config["data"]["std"]
    assert model_input["input"]["shape"] == ["batch", 1, 8, 8] and model_input["output"]["classes"] == [0, 1, 2]
    assert config["pipeline"]["search"]["objective"] == {"name": "hard_target", "target": 500.0, "lam": 2.0}
    # Saved absolute, so that --resume works from any folder.
    assert config["pipeline"]["data"] == str(tmp / "tiny.npz") and config["pipeline"]["space"] == str(tmp / "space.json")
    assert config["pipeline"]["cache_dir"] == str(tmp / "cache")
    monkeypatch.chdir(tmp / "cache")
    assert os.listdir(tmp / "cache" / "latency")  # the table was cached for the next run
    arch = Architecture.load(run / "architecture.json")
    assert len(arch.choices) == 2

    import onnxruntime
    import torch

    model = torch.jit.load(str(run / "model" / "model.torchscript.pt"))
    session = onnxruntime.InferenceSession(str(run / "model" / "model.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 1, 8, 8)
    np.testing.assert_allclose(session.run(None, {"x": x.numpy()})[0], model(x).detach().numpy(), rtol=1e-4, atol=1e-5)

    # Resuming a finished run redoes nothing: the same summary, not measured again; options
    # the saved config overrides are named.
    before = (run / "summary.json").read_text()
    assert main(["search", "--quiet", "--resume", str(run), "--epochs", "30", "--lambda=3"]) == 0
    captured = capsys.readouterr()
    assert f"architecture: {arch.to_string()}" in captured.out and "has finished" in captured.out
    # Named as typed, also when the value typed is the default.
    assert "ignored: --epochs, --lambda" in captured.err
    assert (run / "summary.json").read_text() == before
    # A finished run copied elsewhere prints paths into the copy, not into the original.
    import shutil

    copy = tmp / "copied-run"
    shutil.copytree(run, copy)
    assert main(["search", "--quiet", "--resume", str(copy)]) == 0
    printed = capsys.readouterr().out
    assert f"results: {copy}" in printed and f"torchscript: {copy / 'model' / 'model.torchscript.pt'}" in printed
    assert str(run) + os.sep not in printed

    # A run folder shows and profiles as its architecture (a user space: the run's own).
    assert main(["show", str(run)]) == 0 and f"compact: {arch.to_string()}" in capsys.readouterr().out
    assert main(["show", str(run / "architecture.json")]) == 0 and arch.to_string() in capsys.readouterr().out
    assert main(["profile", str(run), "--summary"]) == 0 and "MACs" in capsys.readouterr().out
    # Retraining it needs no --space-file: the search run keeps its space.
    code = main(["train", str(run), "--quiet", "--data", str(tmp / "tiny.npz"), "--train-epochs", "1",
                 "--scale-rounds", "0", "--out", str(tmp / "trained-own-space")])
    assert code == 0, capsys.readouterr().err
    # 0 rounds: one (drift-corrected) measurement, still compared with the run's prediction.
    trained = json.loads((tmp / "trained-own-space" / "summary.json").read_text())
    assert "table_scale" not in trained and trained["predicted_latency_us"] == pytest.approx(summary["predicted_latency_us"])
    assert trained["latency_error"] == pytest.approx(trained["measured_latency_us"] / trained["predicted_latency_us"] - 1)
    # Nor --data: a search run is retrained on its own data, split and target (digits before),
    # and measured as the search measured its model: beside the table's calibration models.
    code = main(["train", str(run), "--quiet", "--train-epochs", "1", "--scale-rounds", "1",
                 "--out", str(tmp / "trained-own-data")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"as the search run {run} was: --data {tmp / 'tiny.npz'}, --data-seed 0, --target eager, --threads 1" \
        in captured.err
    assert "table scale: x" in captured.out and "(predicted " in captured.out
    options = json.loads((tmp / "trained-own-data" / "config.json").read_text())["options"]
    assert options["data"] == str(tmp / "tiny.npz") and options["target"] == "eager"
    assert options["latency_table"] == str(run / "latency_table.json") and options["scale_rounds"] == 1
    trained = json.loads((tmp / "trained-own-data" / "summary.json").read_text())
    scale = trained["table_scale"]
    assert scale["rounds"] == 1 and trained["measured_latency_us"] == pytest.approx(scale["pooled_us"] * scale["scale"])

    # Another target than the table's: measured once, without a prediction, and said why.
    code = main(["train", str(run), "--quiet", "--data", str(tmp / "tiny.npz"), "--space-file", str(tmp / "space.json"),
                 "--train-epochs", "1", "--target", "torchscript", "--out", str(tmp / "trained")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "not on the search run's table scale" in captured.out and "target: 'eager' != 'torchscript'" in captured.out
    assert (tmp / "trained" / "model" / "model.onnx").is_file()
    trained = json.loads((tmp / "trained" / "summary.json").read_text())
    assert trained["architecture"] == arch.to_string() and "predicted_latency_us" not in trained

    # Every epoch's checkpoint is kept on request; by default the newest two.
    for keep, epochs in (("0", [1, 2, 3]), ("2", [2, 3])):
        folder = tmp / f"keep-{keep}"
        assert main(["train", str(run), "--quiet", "--data", str(tmp / "tiny.npz"), "--train-epochs", "3",
                     "--keep-checkpoints", keep, "--scale-rounds", "0", "--out", str(folder)]) == 0
        kept = sorted(name for name in os.listdir(folder / "checkpoints") if name.endswith(".pt"))
        assert kept == [f"train-epoch-{epoch:04d}.pt" for epoch in epochs], kept
        assert json.loads((folder / "config.json").read_text())["keep_checkpoints"] == (int(keep) or None)
    # A resume keeps the run's own setting (it pruned a keep-all run to the newest two).
    folder = tmp / "keep-0"
    for name in ("summary.json", "checkpoints/train-epoch-0003.pt", "checkpoints/train-latest.json"):
        (folder / name).unlink()  # as if killed during epoch 3, with its pointer deleted by hand
    assert main(["train", "--quiet", "--resume", str(folder)]) == 0
    kept = sorted(name for name in os.listdir(folder / "checkpoints") if name.endswith(".pt"))
    assert kept == ["train-epoch-0001.pt", "train-epoch-0002.pt", "train-epoch-0003.pt"], kept
    # A setting given on a resume is stored for the resumes after it; temporaries a kill
    # left are removed.
    folder = tmp / "keep-2"
    for name in ("summary.json", "checkpoints/train-epoch-0003.pt", "checkpoints/train-latest.json"):
        (folder / name).unlink()
    (folder / "checkpoints" / ".tmp-x-train-epoch-0003.pt").write_bytes(b"partial")
    assert main(["train", "--quiet", "--resume", str(folder), "--keep-checkpoints", "0"]) == 0
    assert json.loads((folder / "config.json").read_text())["keep_checkpoints"] is None
    assert not [name for name in os.listdir(folder / "checkpoints") if name.startswith(".tmp-")]
    # An empty --resume (an unset shell variable) is refused, not read as a new run.
    for command in ("search", "train"):
        assert main([command, "--quiet", "--resume", ""]) == 1
        assert "--resume needs a run folder, got an empty path" in capsys.readouterr().err

    # A train run keeps its own copy of the architecture: it resumes after the file moved.
    (tmp / "arch.json").write_text((run / "architecture.json").read_text())
    assert main(["train", str(tmp / "arch.json"), "--quiet", "--data", str(tmp / "tiny.npz"), "--space-file",
                 str(tmp / "space.json"), "--train-epochs", "1", "--out", str(tmp / "moved")]) == 0
    (tmp / "arch.json").unlink()
    (tmp / "moved" / "summary.json").unlink()  # as if stopped before its summary
    capsys.readouterr()
    assert main(["train", "--quiet", "--resume", str(tmp / "moved")]) == 0, capsys.readouterr().err
    assert json.loads((tmp / "moved" / "summary.json").read_text())["architecture"] == arch.to_string()
    # A new run goes into a new or empty folder only.
    assert main(["train", str(run), "--quiet", "--data", str(tmp / "tiny.npz"), "--out", str(tmp / "cache")]) == 1
    assert "is not empty; a new run needs a new or empty folder" in capsys.readouterr().err

    # A new run never writes into a finished one, and the folder is left as it was.
    config_before = (tmp / "trained" / "config.json").read_text()
    code = main(["train", str(run), "--quiet", "--data", str(tmp / "tiny.npz"), "--train-epochs", "2",
                 "--out", str(tmp / "trained")])
    assert code == 1 and "already holds a run" in capsys.readouterr().err
    assert (tmp / "trained" / "config.json").read_text() == config_before
    # Each command resumes only its own kind of run.
    assert main(["search", "--quiet", "--resume", str(tmp / "trained")]) == 1
    assert "is a 'train' run folder, not a 'hwnas search' one" in capsys.readouterr().err


def test_bad_inputs_are_reported_not_raised(inputs, capsys):
    assert main(["search", "--quiet", "--data", str(inputs / "missing.npz")]) == 1
    assert "missing.npz' is neither 'digits' nor an existing path" in capsys.readouterr().err
    assert main(["search", "--quiet", "--objective", "proxyless"]) == 1
    assert "needs --target-us" in capsys.readouterr().err
    assert main(["search", "--quiet", "--objective", "absolute"]) == 1
    assert "--objective absolute needs --target-us" in capsys.readouterr().err
    assert main(["search", "--quiet", "--scale-rounds", "-1"]) == 1
    assert "--scale-rounds must be >= 0" in capsys.readouterr().err
    # A selection band is about a latency target: refused with the default fbnet objective.
    assert main(["search", "--quiet", "--target-band", "0.1"]) == 1
    assert "--objective fbnet does not use --target-band (it takes --alpha, --beta)" in capsys.readouterr().err
    assert main(["train", "--quiet", str(inputs / "nothing.json")]) == 1
    assert "neither an architecture JSON file nor a run folder" in capsys.readouterr().err
    # Refused before any search runs, and no run folder is left behind.
    runs = inputs / "runs"
    assert main(["search", "--quiet", "--train-weight-decay", "-1", "--runs-dir", str(runs)]) == 1
    assert "weight_decay must be >= 0" in capsys.readouterr().err
    assert main(["search", "--quiet", "--target", "nosuch", "--runs-dir", str(runs)]) == 1
    assert "nosuch" in capsys.readouterr().err
    assert main(["search", "--quiet", "--limit", "4", "--runs-dir", str(runs)]) == 1
    assert "a search needs at least 4 training examples" in capsys.readouterr().err
    assert main(["search", "--quiet", "--batch-size", "1", "--runs-dir", str(runs)]) == 1
    assert "batch sizes must be at least 2" in capsys.readouterr().err
    # Options the chosen objective would ignore, and empty choices, are refused.
    for argv, message in ((["--target-us", "100"], "--objective fbnet does not use --target-us (it takes --alpha, --beta)"),
                          (["--lambda=3"], "--objective fbnet does not use --lambda"),
                          (["--objective", "additive", "--beta", "2"], "--objective additive does not use --beta"),
                          (["--objective", "proxyless", "--target-us", "9", "--alpha", "1"],
                           "--objective proxyless does not use --alpha"),
                          (["--choices", ""], "--choices needs comma-separated block names, got ''"),
                          (["--choices", "k3_e1,,skip"], "--choices needs comma-separated block names")):
        assert main(["search", "--quiet", "--runs-dir", str(runs), *argv]) == 1
        assert message in capsys.readouterr().err
    assert not runs.exists() or not os.listdir(runs)
    # A folder given for a file: one line, no traceback.
    assert main(["profile", "fbnet_c", "--json", str(inputs)]) == 1
    assert "hwnas profile: error:" in capsys.readouterr().err
    # Thread counts are bounded by the cores here: a huge one crashed torch.set_num_threads.
    cores = len(os.sched_getaffinity(0))
    for command, option, value in (("search", "--train-threads", "-1"), ("search", "--train-threads", "99999"),
                                   ("search", "--threads", "0"), ("search", "--threads", str(cores + 1)),
                                   ("train", "--train-threads", str(cores + 1)), ("train", "--threads", "99999"),
                                   ("latency", "--threads", str(cores + 1))):
        argv = [command, "build", "--space", "fbnet_small", option, value] if command == "latency" else \
            [command, option, value]
        with pytest.raises(SystemExit):
            main(argv)
        err = capsys.readouterr().err
        # Training threads also take 0 (torch's default), and the message says so.
        allowed = "0 (torch's default) or between 1" if option == "--train-threads" else "between 1"
        assert f"{option}: must be {allowed} and the {cores} CPU cores available here, got {value}" in err
    # A file where a folder is expected is named as such.
    a_file = inputs / "a_file"
    a_file.write_text("x")
    for argv, message in ((["search", "--runs-dir", str(a_file)], "--runs-dir"),
                          (["train", str(inputs / "nothing.json"), "--runs-dir", str(a_file)], "--runs-dir"),
                          (["train", "--resume", str(a_file)], "--resume")):
        assert main(argv + ["--quiet"]) == 1
        assert f"{message} {a_file}" in capsys.readouterr().err


def test_an_interrupt_ends_with_one_line_that_says_how_to_continue(monkeypatch, capsys):
    import hwnas.search.commands as commands

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "run_search", interrupted)
    assert main(["search", "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "hwnas search: interrupted; if a run folder was printed above, continue with hwnas search --resume" in err
    assert "Traceback" not in err


def test_help_lists_the_subcommands_and_main_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for command in ("show", "profile", "search", "train", "latency"):
        assert command in text
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = capsys.readouterr().out
    for option in ("--resume", "--data", "--target", "--objective", "--target-us", "--baseline", "~/.cache/hwnas",
                   "--train-threads", "soft mixture"):
        assert option in text


def test_a_space_file_is_shaped_for_the_run_and_choices_replace_every_layers(inputs):
    from hwnas.search.pipeline import PipelineConfig, make_space

    config = PipelineConfig(space=str(inputs / "space.json"), resolution=12, width=0.5, choices=["k3_e1", "skip"])
    space = make_space(config, in_channels=3, num_classes=7)
    assert (space.resolution, space.width, space.in_channels, space.num_classes) == (12, 0.5, 3, 7)
    assert [layer.choices for layer in space.layers] == [["k3_e1", "skip"]] * 2
    # Without --choices the file's own candidates stay.
    plain = make_space(PipelineConfig(space=str(inputs / "space.json")), in_channels=1, num_classes=3)
    assert [layer.choices for layer in plain.layers] == [["k3_e1", "k3_e3", "skip"]] * 2


def test_a_run_asking_for_more_training_threads_than_the_cores_trains_on_the_cores(monkeypatch, tmp_path):
    import hwnas.search.pipeline as pipeline

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    threads = []
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    monkeypatch.setattr(pipeline, "available_cpus", lambda: 2)
    monkeypatch.setattr(pipeline.SearchConfig, "from_dict", stop)  # ends the run right after the threads are set
    lines = []
    with pytest.raises(Stop):
        pipeline.search_pipeline(pipeline.PipelineConfig(train_threads=8), out=str(tmp_path / "run"), log=lines.append)
    assert threads == [2] and lines == ["training with 2 threads: the run asked for 8, this machine has 2 cores"]
    with pytest.raises(ValueError, match="train_threads must be >= 1"):
        pipeline.search_pipeline(pipeline.PipelineConfig(train_threads=-1), out=str(tmp_path / "run2"))
    assert threads == [2] and not (tmp_path / "run").exists() and not (tmp_path / "run2").exists()


def test_summary_says_when_the_baseline_came_out_faster_than_the_searched_model(capsys):
    from hwnas.search.commands import _print_summary
    from hwnas.search.pipeline import _baseline_comparison

    # The baseline is picked on short timings; its final measurement can come out faster.
    for baseline_us, flagged in ((136.0, True), (153.0, False), (170.0, False)):
        comparison = _baseline_comparison(baseline_us, 153.0)
        assert comparison == {"latency_ratio": pytest.approx(baseline_us / 153.0), "not_faster": not flagged}
        _print_summary({"architecture": "a", "test_accuracy": 0.9, "measured_latency_us": 153.0, "target": "eager",
                        "run": "r", "baseline": {"width": 0.5, "depth": 1.0, "test_accuracy": 0.8,
                                                 "measured_latency_us": baseline_us, **comparison}})
        line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("baseline")][0]
        assert ("11% faster than the searched model: not an equal-latency comparison" in line) == flagged, line


def test_a_baseline_the_run_could_not_build_is_refused_before_the_search(inputs, capsys):
    # Found late before: the MobileNetV2-style baseline was built after the search and the
    # retraining, and a space without k3_e1/k3_e6 (or a space file) failed there.
    runs = inputs / "runs"
    cases = ((["--space", str(inputs / "space.json")], f"the space {inputs / 'space.json'} is a file"),
             (["--space", "spos"], "--baseline: space 'spos' layer 0 does not offer 'k3_e1'"),
             (["--no-retrain"], "it does not go with --no-retrain"))
    for options, message in cases:
        assert main(["search", "--quiet", "--data", str(inputs / "tiny.npz"), "--baseline", "--runs-dir", str(runs),
                     *options]) == 1
        assert message in capsys.readouterr().err
    assert not runs.exists()  # refused before any run folder was made


def test_a_space_too_small_for_the_calibration_asked_is_calibrated_on_what_it_has(inputs):
    from hwnas.search.pipeline import PipelineConfig, make_space
    from hwnas.search.tables import calibration_count

    space = make_space(PipelineConfig(space=str(inputs / "space.json")), in_channels=1, num_classes=3)
    assert space.size() == 9  # 3 candidates in each of 2 layers
    assert calibration_count(space, 4) == 4
    with pytest.warns(UserWarning, match="calibrated on 7 models, not the 12 asked for"):
        assert calibration_count(space, 12) == 7  # 2 of the 9 validate
    tiny = make_space(PipelineConfig(space=str(inputs / "space.json"), choices=["k3_e1"]), in_channels=1, num_classes=3)
    with pytest.raises(ValueError, match="has 1 architectures; calibrating its latency table takes 4"):
        calibration_count(tiny, 12)
