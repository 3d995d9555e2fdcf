import importlib.util
import json

import numpy as np
import pytest
import torch

from hwnas.latency import commands
from hwnas.latency.harness import TimingConfig
from hwnas.latency.targets import EagerTarget, get_target, register_target, target_from_fingerprint


needs_onnxruntime = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None,
    reason="onnxruntime is not installed (pip install 'hwnas[onnx]')",
)


@needs_onnxruntime
def test_targets_measure_and_fingerprint():
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU())
    for name in ("eager", "torchscript", "onnxruntime"):
        target = get_target(name, threads=1, batch=1)
        fp = target.fingerprint()
        assert fp["target"] == name and fp["threads"] == 1 and fp["batch"] == 1 and fp["cpu_model"]
        r = target.measure(conv, (3, 8, 8), TimingConfig(min_samples=5, target_rel_ci=0.5, budget_s=0.03))
        assert r.median_us > 0
        assert target_from_fingerprint(fp).fingerprint() == fp
    assert "onnxruntime" in get_target("onnxruntime").fingerprint()["libraries"]


@needs_onnxruntime
def test_onnxruntime_export_computes_the_same_function():
    target = get_target("onnxruntime")
    block = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU()).eval()
    x = target.make_input((3, 8, 8))
    session = target.session(target.export(block, x))
    (y,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(y, block(x).numpy(), rtol=1e-4, atol=1e-5)


def test_target_registry_errors():
    with pytest.raises(ValueError, match="unknown target"):
        get_target("tpu")
    with pytest.raises(ValueError, match="already registered"):
        register_target("eager", EagerTarget)
    with pytest.raises(ValueError, match="threads"):
        get_target("eager", threads=0)
    if importlib.util.find_spec("onnxruntime") is not None:
        with pytest.raises(ValueError, match="float32"):
            get_target("onnxruntime", dtype="float64")


def test_cli_build_then_validate(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("hwnas._argtypes.available_cpus", lambda: 4)  # --threads 2 below, on any machine
    table = tmp_path / "t.json"
    common = ["--rel-ci", "0.5", "--budget", "0.01", "--quiet"]
    rc = commands.main(["latency", "build", "--space", "fbnet_small", "--resolution", "8", "--target", "eager",
                        "--out", str(table)] + common)
    assert rc == 0
    data = json.loads(table.read_text())
    assert data["format"] == "hwnas.latency_table" and data["complete"]
    rc = commands.main(["latency", "validate", "--table", str(table), "--num-archs", "3", "--calibration", "2",
                        "--plot", str(tmp_path / "p.png"), "--report", str(tmp_path / "r.json"),
                        "--refine-strength", "0.03"] + common)
    assert rc == 0
    out = capsys.readouterr().out
    assert "MAPE" in out and "tau" in out and (tmp_path / "p.png").exists()
    assert "refined" in json.loads((tmp_path / "r.json").read_text())["metrics"] and "  refined " in out
    assert json.loads(table.read_text())["correction"]["kind"] == "linear"
    rc = commands.main(["latency", "build", "--space", "fbnet_small", "--resolution", "8", "--target", "eager",
                        "--threads", "2", "--out", str(table)] + common)
    assert rc == 2 and "refusing to mix" in capsys.readouterr().err
    # File options given a folder, and a CPU-time clock over several threads, are refused
    # before anything is measured.
    assert commands.main(["latency", "validate", "--table", str(table), "--plot", str(tmp_path)] + common) == 2
    assert f"--plot {tmp_path} is a folder" in capsys.readouterr().err
    assert commands.main(["latency", "build", "--space", "fbnet_small", "--resolution", "8",
                          "--out", str(tmp_path)] + common) == 2
    assert f"--out {tmp_path} is a folder" in capsys.readouterr().err
    assert commands.main(["latency", "build", "--space", "fbnet_small", "--resolution", "8", "--clock", "thread_cpu",
                          "--threads", "2", "--out", str(tmp_path / "cpu.json")] + common) == 2
    assert "needs --threads 1" in capsys.readouterr().err and not (tmp_path / "cpu.json").exists()
    for bad in (["--calibration", "-1"], ["--num-archs", "0"], ["--budget", "-1"]):
        with pytest.raises(SystemExit):
            commands.main(["latency", "validate", "--table", str(table), *bad])
        assert f"argument {bad[0]}: must be" in capsys.readouterr().err


def test_cli_drift_correction_is_stored_and_reused(tmp_path, capsys, monkeypatch):
    from hwnas.latency import drift

    table = tmp_path / "t.json"
    common = ["--rel-ci", "0.5", "--budget", "0.01", "--quiet"]
    build = ["latency", "build", "--space", "fbnet_small", "--resolution", "8", "--target", "eager",
             "--out", str(table), "--drift-correction"] + common
    assert commands.main(build) == 0
    assert "drift correction: reference" in capsys.readouterr().out
    stored = json.loads(table.read_text())["notes"]["drift_correction"]
    assert stored["baseline_us"] > 0 and stored["reference"]

    # Validation (and a resumed build) wrap the target with the stored baseline.
    baselines = []
    original = drift.DriftCorrectedTarget.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        baselines.append(self.baseline_us)

    monkeypatch.setattr(drift.DriftCorrectedTarget, "__init__", spy)
    assert commands.main(["latency", "validate", "--table", str(table), "--num-archs", "2", "--calibration", "0"]
                         + common) == 0
    assert commands.main(build) == 0
    assert baselines == [stored["baseline_us"], stored["baseline_us"]]
    assert commands.main(["latency", "validate", "--table", str(table), "--num-archs", "2", "--calibration", "0",
                          "--no-drift-correction"] + common) == 0
    assert len(baselines) == 2


def test_cli_builds_and_validates_a_table_of_a_user_defined_space(tmp_path, capsys):
    from hwnas.spaces import SearchSpace

    space_file = tmp_path / "mine.json"
    SearchSpace("my_tiny", [{"out_channels": 8, "layers": 2, "first_stride": 2, "choices": ["k3_e1", "skip"]}],
                resolution=32, in_channels=1, num_classes=3,
                stem={"out_channels": 8, "kernel": 3, "stride": 1, "activation": "relu"},
                head={"out_channels": 16, "activation": "relu"}).save(space_file)
    table = tmp_path / "t.json"
    common = ["--rel-ci", "0.5", "--budget", "0.01", "--quiet"]
    # Built from the file at another resolution than the file's, as a search would shape it.
    assert commands.main(["latency", "build", "--space", str(space_file), "--resolution", "8",
                          "--out", str(table)] + common) == 0
    data = json.loads(table.read_text())
    assert data["space"] == "my_tiny" and data["resolution"] == 8 and data["complete"]
    capsys.readouterr()
    # The table stores the space's name only: validating needs the file, and says so.
    assert commands.main(["latency", "validate", "--table", str(table), "--num-archs", "3", "--calibration", "0"]
                         + common) == 2
    assert "for a user-defined space, give its JSON file with --space-file" in capsys.readouterr().err
    assert commands.main(["latency", "validate", "--table", str(table), "--space-file", str(space_file),
                          "--num-archs", "3", "--calibration", "0"] + common) == 0
    assert "MAPE" in capsys.readouterr().out
