"""export_model: the files a user deploys agree with the model, at any batch size, and an
exporter that fails is reported, not silenced."""

import numpy as np
import pytest
import torch
from torch import nn

from hwnas.search.retrain import export_model

from _search_fixtures import tiny_space


def test_exported_files_agree_with_the_model_at_any_batch(tmp_path):
    space = tiny_space()
    torch.manual_seed(0)
    model = space.build(space.make_arch(["k3_e3", "skip"])).eval()
    written = export_model(model, str(tmp_path), (1, 8, 8), arch=space.make_arch(["k3_e3", "skip"]))
    assert set(written) == {"torchscript", "torch_export", "onnx", "architecture"}
    import onnxruntime

    scripted = torch.jit.load(written["torchscript"])
    exported = torch.export.load(written["torch_export"]).module()
    session = onnxruntime.InferenceSession(written["onnx"], providers=["CPUExecutionProvider"])
    for batch in (1, 3, 17):  # the .pt2 refused every batch but 1 before
        x = torch.randn(batch, 1, 8, 8)
        with torch.no_grad():
            expected = model(x)
            torch.testing.assert_close(scripted(x), expected)
            torch.testing.assert_close(exported(x), expected)
        np.testing.assert_allclose(session.run(None, {"x": x.numpy()})[0], expected.numpy(), rtol=1e-4, atol=1e-5)


class _DataDependent(nn.Module):
    """Branches on a value: tracing (TorchScript, ONNX) follows one branch, torch.export refuses."""

    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x


def test_a_failing_exporter_is_reported_by_a_visible_warning(tmp_path):
    with pytest.warns(UserWarning, match=r"torch.export of the model failed .*; skipped model.pt2"):
        written = export_model(_DataDependent(), str(tmp_path), (1, 2, 2))
    assert "torch_export" not in written and "torchscript" in written
    assert not (tmp_path / "model.pt2").exists()
