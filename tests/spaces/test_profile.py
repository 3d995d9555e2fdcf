import torch
from torch import nn

from hwnas import models
from hwnas.spaces import build_block, profile


def test_grouped_depthwise_and_linear_macs_against_hand_counts():
    model = nn.Sequential(
        nn.Conv2d(8, 16, 1, groups=2, bias=False),      # 10x10 out: 16 * 4 * 100 = 6400
        nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16, bias=True),  # 5x5 out: 16 * 9 * 25 = 3600
        nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10),                              # 160
    )
    result = profile(model, (8, 10, 10))
    assert result.macs == 6400 + 3600 + 160
    assert result.params == 16 * 4 + (16 * 9 + 16) + 2 * 16 + (160 + 10)
    assert [r.macs for r in result.layers] == [6400, 3600, 0, 0, 0, 0, 160]
    assert result.output_shape == (1, 10)


def test_batch_scales_macs_not_params():
    block = build_block("k3_e3", 16, 16, 1)
    one = profile(block, (1, 16, 8, 8))
    two = profile(block, (2, 16, 8, 8))
    assert two.macs == 2 * one.macs and two.params == one.params
    # hand count: 16*48*64 + 48*9*64 + 48*16*64
    assert one.macs == 16 * 48 * 64 + 48 * 9 * 64 + 48 * 16 * 64


def test_per_layer_rows_sum_to_total_and_meta_equals_real():
    model = models.build("fbnet_96_035_1")
    real = profile(model, (3, 96, 96), meta=False)
    fast = profile(model, (3, 96, 96))
    assert (real.params, real.macs) == (fast.params, fast.macs)
    assert [r.name for r in real.layers] == ["stem"] + [f"layers.{i}" for i in range(22)] + ["head"]
    assert sum(r.macs for r in real.layers) == real.macs
    assert sum(r.params for r in real.layers) == real.params
    assert real.layers[1].output_shape == (1, 8, 48, 48)
    # activations: input + every row's output, float32
    expected = 4 * (3 * 96 * 96 + sum(torch.Size(r.output_shape).numel() for r in real.layers))
    assert real.activation_bytes == expected
    assert model.training  # mode restored / untouched


def test_profile_json(tmp_path):
    import json

    result = profile(build_block("k5_e6", 8, 16, 2), (8, 8, 8))
    result.save(tmp_path / "p.json")
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["format"] == "hwnas.profile" and data["version"] == 1 and data["macs"] == result.macs
