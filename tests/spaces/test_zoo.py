import io

import pytest
import torch

from hwnas import models
from hwnas.spaces import profile

from _spaces_reference import (FBNET_96, FBNET_A, FBNET_B, FBNET_C, FBNET_IPHONEX, FBNET_S8, fbnet_counts,
                         mobilenet_v2_counts)

EXPECTED_BLOCKS = {
    "fbnet_a": FBNET_A, "fbnet_b": FBNET_B, "fbnet_c": FBNET_C,
    "fbnet_iphonex": FBNET_IPHONEX, "fbnet_s8": FBNET_S8, "fbnet_96_035_1": FBNET_96,
}


def _meta_profile(name):
    with torch.device("meta"):
        model = models.build(name)
    r = models.get_entry(name).space_kwargs["resolution"]
    return profile(model, (3, r, r))


def test_zoo_names():
    assert models.list_models() == sorted(
        ["fbnet_a", "fbnet_b", "fbnet_c", "fbnet_iphonex", "fbnet_s8", "fbnet_96_035_1", "mobilenet_v2"])
    with pytest.raises(ValueError, match="unknown zoo model 'fbnet_z'"):
        models.build("fbnet_z")


@pytest.mark.parametrize("name", sorted(EXPECTED_BLOCKS))
def test_fbnet_zoo_blocks_match_reference(name):
    assert models.architecture(name).to_string() == EXPECTED_BLOCKS[name]


def test_unverified_models_are_marked():
    for name in ("fbnet_iphonex", "fbnet_s8", "fbnet_96_035_1"):
        entry = models.get_entry(name)
        assert entry.verified is False and "UNVERIFIED" in entry.source
    for name in ("fbnet_a", "fbnet_b", "fbnet_c", "mobilenet_v2"):
        assert models.get_entry(name).verified is True


@pytest.mark.parametrize(
    "name, head, resolution, width",
    [
        ("fbnet_a", 1504, 224, 1.0),
        ("fbnet_b", 1984, 224, 1.0),
        ("fbnet_c", 1984, 224, 1.0),
        ("fbnet_iphonex", 1984, 224, 1.0),
        ("fbnet_s8", 1984, 224, 1.0),
        ("fbnet_96_035_1", 1984, 96, 0.35),
    ],
)
def test_fbnet_zoo_counts_match_hand_counts(name, head, resolution, width):
    params, macs = fbnet_counts(EXPECTED_BLOCKS[name], head, resolution, width)
    result = _meta_profile(name)
    assert result.params == params
    assert result.macs == macs


def test_mobilenet_v2_counts():
    params, macs = mobilenet_v2_counts()
    result = _meta_profile("mobilenet_v2")
    assert result.params == params
    assert result.macs == macs
    # torchvision's published count for MobileNetV2-1.0.
    assert result.params == 3_504_872


def test_fbnet_a_close_to_paper():
    # FBNet-A is the one model whose released definition reproduces the paper (4.3M, 249M).
    result = _meta_profile("fbnet_a")
    assert abs(result.params_m - 4.3) < 0.05
    assert abs(result.macs_m - 249) < 1.5


@pytest.mark.parametrize("name", models.list_models())
def test_forward_batch_1_and_2(name):
    model = models.build(name).eval()
    r = models.get_entry(name).space_kwargs["resolution"]
    with torch.no_grad():
        for batch in (1, 2):
            out = model(torch.randn(batch, 3, r, r))
            assert out.shape == (batch, 1000)
            assert torch.isfinite(out).all()


def test_build_overrides():
    model = models.build("fbnet_c", num_classes=10, in_channels=1, resolution=64).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 64, 64)).shape == (2, 10)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_export_matches_pytorch():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = models.build("fbnet_96_035_1").eval()  # small and contains skip, k3/k5, e1/e6
    x = torch.randn(1, 3, 96, 96)
    buffer = io.BytesIO()
    torch.onnx.export(model, (x,), buffer, dynamo=False, input_names=["image"], output_names=["logits"])
    onnx.checker.check_model(onnx.load_from_string(buffer.getvalue()))
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    assert abs(logits - expected).max() < 1e-4
