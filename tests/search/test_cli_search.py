"""``hwnas search`` / ``hwnas train`` end to end on a 2-layer space and tiny data (real timing, ~20 s)."""

import json
import os

import numpy as np
import pytest

from hwnas.cli import main
from hwnas.spaces import Architecture

from _search_fixtures import tiny_dataset, tiny_space


@pytest.fixture
def inputs(tmp_path):
    data = tiny_dataset(60)
    np.savez(tmp_path / "tiny.npz", x=data.images[:, 0].numpy(), y=data.labels.numpy())
    tiny_space().save(tmp_path / "space.json")
    return tmp_path


def test_search_then_train_from_the_command_line(inputs, capsys):
    tmp = inputs
    run = tmp / "run"
    common = ["--quiet", "--data", str(tmp / "tiny.npz"), "--resolution", "8"]
    code = main(["search", *common, "--space", str(tmp / "space.json"), "--width", "1", "--out", str(run),
                 "--epochs", "2", "--warmup-epochs", "1", "--batch-size", "16", "--samples", "2", "--calibrate", "2",
                 "--scale-rounds", "2", "--cache-dir", str(tmp / "cache"), "--train-epochs", "1", "--objective", "hard_target",
                 "--target-us", "500"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"results: {run}" in out
    for name in ("config.json", "history.json", "candidates.json", "architecture.json", "latency_table.json",
                 "summary.json", "plots/architecture.png", "plots/distribution.png", "plots/accuracy_latency.png",
                 "model/model.torchscript.pt", "model/model.onnx", "checkpoints/search-latest.json",
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
    assert config["pipeline"]["search"]["objective"] == {"name": "hard_target", "target": 500.0, "lam": 2.0}
    assert os.listdir(tmp / "cache" / "latency")  # the table was cached for the next run
    arch = Architecture.load(run / "architecture.json")
    assert len(arch.choices) == 2

    import onnxruntime
    import torch

    model = torch.jit.load(str(run / "model" / "model.torchscript.pt"))
    session = onnxruntime.InferenceSession(str(run / "model" / "model.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 1, 8, 8)
    np.testing.assert_allclose(session.run(None, {"x": x.numpy()})[0], model(x).detach().numpy(), rtol=1e-4, atol=1e-5)

    # Resuming a finished run redoes no epoch and reaches the same architecture.
    assert main(["search", "--quiet", "--resume", str(run)]) == 0
    assert f"architecture: {arch.to_string()}" in capsys.readouterr().out

    code = main(["train", str(run), "--quiet", "--data", str(tmp / "tiny.npz"), "--space-file", str(tmp / "space.json"),
                 "--train-epochs", "1", "--out", str(tmp / "trained")])
    assert code == 0
    assert (tmp / "trained" / "model" / "model.onnx").is_file()
    assert json.loads((tmp / "trained" / "summary.json").read_text())["architecture"] == arch.to_string()


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
    assert "target_band needs an objective with a latency target" in capsys.readouterr().err
    assert main(["train", "--quiet", str(inputs / "nothing.json")]) == 1
    assert "neither an architecture JSON file nor a run folder" in capsys.readouterr().err


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
