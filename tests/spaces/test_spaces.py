import json
import random

import pytest
import torch

from hwnas.spaces import Architecture, build_model, get_space, list_spaces, load_space
from hwnas.spaces.blocks import FBNET_BLOCKS, HURRICANE_BLOCKS, SPOS_BLOCKS


def test_registered_spaces():
    assert {"fbnet", "fbnet_small", "fbnetv2", "mobilenet_v2", "spos", "hurricane"} <= set(list_spaces())
    with pytest.raises(ValueError, match="unknown search space 'nope'"):
        get_space("nope")


def test_fbnet_space_shapes_and_size():
    space = get_space("fbnet")
    assert len(space.layers) == 22 and space.size() == 9 ** 22
    assert all(layer.choices == list(FBNET_BLOCKS) for layer in space.layers)
    # Table 1: stage boundaries, channels and spatial sizes at 224.
    expected = [(16, 16, 1, 112)] + [(16, 24, 2, 112)] + [(24, 24, 1, 56)] * 3 + [(24, 32, 2, 56)] + [(32, 32, 1, 28)] * 3 \
        + [(32, 64, 2, 28)] + [(64, 64, 1, 14)] * 3 + [(64, 112, 1, 14)] + [(112, 112, 1, 14)] * 3 \
        + [(112, 184, 2, 14)] + [(184, 184, 1, 7)] * 3 + [(184, 352, 1, 7)]
    got = [(l.c_in, l.c_out, l.stride, l.in_hw[0]) for l in space.layers]
    assert got == expected
    assert space.layer_input_shape(21) == (184, 7, 7)


def test_fbnet_width_and_resolution():
    space = get_space("fbnet", resolution=96, width=0.35)
    # make_divisible(c * 0.35, 8): 16->8, 24->8, 32->16, 64->24, 112->40, 184->64, 352->120, 1984->696
    assert space.stem_channels == 8
    assert sorted({l.c_out for l in space.layers}) == [8, 16, 24, 40, 64, 120]
    assert space.head_channels == 696
    assert space.layers[0].in_hw == (48, 48)


@pytest.mark.parametrize("resolution, final", [(32, 4), (28, 4)])
def test_fbnet_small_downsamples_8x(resolution, final):
    space = get_space("fbnet_small", resolution=resolution, in_channels=1, num_classes=10)
    assert space.layers[0].in_hw == (resolution, resolution)
    assert space.layers[-1].out_hw == (final, final)
    arch = space.sample(seed=3)
    model = build_model(space, arch).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, resolution, resolution)).shape == (2, 10)


def test_spos_and_hurricane_shapes():
    for name, pool in (("spos", SPOS_BLOCKS), ("hurricane", HURRICANE_BLOCKS)):
        space = get_space(name)
        assert len(space.layers) == 20
        assert space.size() == len(pool) ** 20
        outs = [(l.c_out, *l.out_hw) for l in space.layers]
        assert outs == [(64, 56, 56)] * 4 + [(160, 28, 28)] * 4 + [(320, 14, 14)] * 8 + [(640, 7, 7)] * 4


def test_hardware_aware_hurricane_space_has_per_layer_lists():
    lists = [list(HURRICANE_BLOCKS[i % 8 : i % 8 + 4]) for i in range(20)]
    space = get_space("hurricane", layer_choices=lists)
    assert [l.choices for l in space.layers] == lists
    arch = space.sample(seed=0)
    assert arch.space_options["layer_choices"] == lists
    with pytest.raises(ValueError, match=r"layer 0 \(stage 0\): choice 'choicex' is not allowed"):
        space.make_arch(["choicex"] + arch.choices[1:])


def test_hardware_aware_layer_choices_prefers_low_latency():
    from hwnas.spaces import hardware_aware_layer_choices

    # A device on which every MB block is 1000x slower: MB never makes the top 4.
    lat = lambda layer, op: 1000.0 if op.startswith("mb_") else 1.0
    pool = ["mb_k3_e6", "mb_k5_e6", "mb_k7_e6", "mb_k3_e3", "sep_k3", "sep_k5", "choice_k3", "choicex", "choice_k7"]
    lists = hardware_aware_layer_choices(lat, alpha=0.5, resolution=32, candidates=pool)
    assert len(lists) == 20
    assert all(len(l) == (5 if i >= 16 else 4) for i, l in enumerate(lists))
    assert not any(op.startswith("mb_") for l in lists for op in l)
    # With equal latencies the ranking is by capacity (MACs x params): the 7x7 MB block beats the 3x3 one.
    ranked = hardware_aware_layer_choices(lambda layer, op: 1.0, alpha=1.0, resolution=32, candidates=["mb_k3_e6", "mb_k7_e6"], top_p=1, explore_last=0)
    assert all(l == ["mb_k7_e6"] for l in ranked)


def test_validate_names_layer_and_choice():
    space = get_space("fbnet")
    arch = space.sample(seed=1)
    bad = Architecture(**{**arch.__dict__, "choices": arch.choices[:5] + ["k7_e6"] + arch.choices[6:]})
    with pytest.raises(ValueError, match=r"layer 5 \(stage 2\): choice 'k7_e6' is not allowed"):
        space.validate(bad)
    with pytest.raises(ValueError, match="21 choices but space 'fbnet' has 22"):
        space.validate(Architecture(**{**arch.__dict__, "choices": arch.choices[:-1], "stage_lengths": None}))
    with pytest.raises(ValueError, match="resolution 96"):
        space.validate(Architecture(**{**arch.__dict__, "resolution": 96}))
    with pytest.raises(ValueError, match="this space is 'spos'"):
        get_space("spos").validate(arch)
    with pytest.raises(ValueError, match="version 2"):
        space.validate(Architecture(**{**arch.__dict__, "space_version": 2}))


def test_sample_is_seeded_and_uniform_by_default():
    space = get_space("fbnet")
    assert space.sample(seed=7) == space.sample(seed=7)
    assert space.sample(seed=7) != space.sample(seed=8)
    assert space.sample(rng=random.Random(5)) == space.sample(seed=5)
    counts = {name: 0 for name in FBNET_BLOCKS}
    for seed in range(40):
        for c in space.sample(seed=seed).choices:
            counts[c] += 1
    # 880 draws over 9 choices: each about 98; a fixed or broken sampler would fall far outside.
    assert all(60 < n < 140 for n in counts.values()), counts


def test_sample_with_probabilities():
    space = get_space("fbnet")
    only_skip = space.sample(seed=0, probs={"skip": 1.0})
    assert set(only_skip.choices) == {"skip"}
    heavy = space.sample(seed=0, probs=[0, 0, 0, 1, 0, 0, 0, 1, 0])
    assert set(heavy.choices) <= {"k3_e6", "k5_e6"}
    with pytest.raises(ValueError, match="all choice weights are zero"):
        space.sample(seed=0, probs={"skip": 0.0})
    with pytest.raises(ValueError, match="k9_e9"):
        space.sample(seed=0, probs={"k9_e9": 1.0})
    import numpy as np
    assert space.sample(rng=np.random.default_rng(0)).space == "fbnet"


def test_fbnetv2_space_channels_and_resolution():
    space = get_space("fbnetv2")
    layer = space.layers[5]
    assert layer.channel_choices == [16, 24, 32, 40]
    arch = space.sample(seed=2)
    assert len(arch.extras["channels"]) == 22 and arch.resolution in (160, 192, 224, 256)
    shapes = space.resolve_layers(arch)
    assert all(b.c_in == a.c_out for a, b in zip(shapes, shapes[1:]))
    small = space.make_arch(arch.choices, resolution=160, channels=arch.extras["channels"])
    model = build_model(space, small).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 160, 160)).shape == (1, 1000)
    last_conv = [m for m in model.layers[-1].modules() if isinstance(m, torch.nn.Conv2d)]
    if last_conv:
        assert last_conv[-1].out_channels == arch.extras["channels"][-1]
    bad = list(arch.extras["channels"])
    bad[3] = 20
    with pytest.raises(ValueError, match="layer 3 .*channel width 20"):
        space.make_arch(arch.choices, resolution=160, channels=bad)
    from _spaces_reference import FBNET_TABLE1, make_divisible

    widths = 1
    for c, n, _ in FBNET_TABLE1:
        widths *= len({make_divisible(c * m) for m in (0.5, 0.75, 1.0, 1.25)}) ** n
    assert space.size() == 13 ** 22 * widths * 4


def test_mobilenet_v2_space_first_layer_fixed():
    space = get_space("mobilenet_v2")
    assert space.layers[0].choices == ["mb_k3_e1"]
    assert space.size() == 7 ** 16


USER_SPACE = {
    "format": "hwnas.search_space", "version": 1, "name": "tiny", "space_version": 3,
    "resolution": 16, "in_channels": 1, "num_classes": 4,
    "stem": {"out_channels": 8, "kernel": 3, "stride": 1, "activation": "relu"},
    "stages": [
        {"out_channels": 8, "layers": 2, "first_stride": 1, "choices": ["k3_e1", "skip"]},
        {"out_channels": 12, "layers": 2, "first_stride": 2, "layer_choices": [["k5_e3"], ["k3_e1", "mb_k3_e3", "skip"]]},
    ],
    "head": {"out_channels": 32},
}


def test_user_defined_json_space(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(USER_SPACE))
    space = load_space(path)
    assert space.name == "tiny" and space.version == 3 and space.size() == 2 * 2 * 1 * 3
    assert [l.c_out for l in space.layers] == [8, 8, 12, 12]  # width 1: exact, 12 not rounded to 16
    arch = space.sample(seed=0)
    model = build_model(space, arch).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 16, 16)).shape == (2, 4)
    # The space writes the same schema back.
    out = tmp_path / "again.json"
    space.save(out)
    again = load_space(out)
    assert again.to_dict() == space.to_dict()
    assert [l.choices for l in again.layers] == [l.choices for l in space.layers]


def test_user_space_errors(tmp_path):
    for change, message in [
        ({"version": 99}, "version 99 is not supported"),
        ({"format": "something"}, "format is 'something'"),
        ({"stages": [{"out_channels": 8, "layers": 1, "choices": ["k4_e1"]}]}, "stage 0 layer 0: block 'k4_e1'.*odd"),
        ({"stages": [{"out_channels": 8, "layers": 1, "choises": ["k3_e1"]}]}, r"unknown key\(s\) \['choises'\]"),
        ({"stages": "abc"}, "stages must be a list of stage dicts, got 'abc'"),
        ({"stem": [1]}, r"stem must be a dict, got \[1\]"),
        ({"head": {"shrink_with_width": "false"}}, "shrink_with_width must be true or false, got 'false'"),
        ({"head": {"dropout": "x"}}, r"dropout must be a number in \[0, 1\), got 'x'"),
    ]:
        path = tmp_path / "bad.json"
        path.write_text(json.dumps({**USER_SPACE, **change}))
        with pytest.raises(ValueError, match=message):
            load_space(path)


def test_yaml_space_without_pyyaml_is_clear(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text("format: hwnas.search_space\n")
    try:
        import yaml  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="PyYAML.*JSON"):
            load_space(path)
    else:
        import yaml
        path.write_text(yaml.safe_dump(USER_SPACE))
        assert load_space(path).name == "tiny"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_and_export_of_built_model():
    space = get_space("fbnet_small", width=0.25, head_channels=32)
    arch = space.make_arch("k3_e1_g2 | k5_e6 skip k3_e3 k5_e1 | k3_e6 k5_e3 skip skip | k5_e1_g2 k3_e1 skip skip | "
                           "k3_e3 skip k5_e6 skip | skip k3_e6 skip skip | k5_e6")
    model = build_model(space, arch).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        scripted = torch.jit.script(model)
        assert torch.allclose(scripted(x), expected, atol=1e-5)
        exported = torch.export.export(model, (x,))
        assert torch.allclose(exported.module()(x), expected, atol=1e-5)


def test_build_model_from_name_and_arch_only():
    space = get_space("fbnet", head_channels=1504, resolution=64)
    arch = space.sample(seed=4)
    model = build_model(None, arch)
    assert model.head.conv[0].out_channels == 1504
    with pytest.raises(ValueError, match="not 'spos'"):
        build_model("spos", arch)
