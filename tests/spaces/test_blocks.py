import pytest
import torch

from hwnas.spaces import blocks
from hwnas.spaces.blocks import (BLOCK_REGISTRY, FBNET_BLOCKS, HURRICANE_BLOCKS, build_block, list_blocks,
                                 parse_block_name)

from _spaces_reference import fbnet_block


def test_fbnet_block_order_and_hurricane_pool_size():
    assert FBNET_BLOCKS == ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")
    assert len(HURRICANE_BLOCKS) == len(set(HURRICANE_BLOCKS)) == 32
    families = [parse_block_name(n) for n in HURRICANE_BLOCKS]
    count = lambda fam, se: sum(1 for s in families if s.family == fam and s.se == se)
    assert (count("sep", False), count("sep", True), count("mb", False), count("mb", True)) == (3, 3, 9, 9)
    assert (count("choice", False), count("choice", True), count("choicex", False), count("choicex", True)) == (3, 3, 1, 1)
    assert set(FBNET_BLOCKS) | set(HURRICANE_BLOCKS) == set(list_blocks())


@pytest.mark.parametrize(
    "name, family, kernel, expansion, groups, se",
    [
        ("k5_e6", "fbnet", 5, 6, 1, False),
        ("k3_e1_g2", "fbnet", 3, 1, 2, False),
        ("mb_k7_e3_se", "mb", 7, 3, 1, True),
        ("choice_k5", "choice", 5, None, 1, False),
        ("choicex_se", "choicex", 3, None, 1, True),
        ("sep_k3", "sep", 3, None, 1, False),
        ("skip", "skip", None, None, 1, False),
        ("k7_e4", "fbnet", 7, 4, 1, False),
    ],
)
def test_parse_block_name(name, family, kernel, expansion, groups, se):
    spec = parse_block_name(name)
    assert (spec.name, spec.family, spec.kernel, spec.expansion, spec.groups, spec.se) == (name, family, kernel, expansion, groups, se)


@pytest.mark.parametrize("bad", ["k4_e1", "conv3x3", "k3_e0", "mb_k3", "K3_E1", ""])
def test_unknown_block_name_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=repr(bad).replace("[", r"\[")):
        build_block(bad, 16, 16, 1)


@pytest.mark.parametrize("name", sorted(BLOCK_REGISTRY))
@pytest.mark.parametrize("c_in, c_out, stride", [(16, 16, 1), (16, 32, 2), (16, 24, 1)])
def test_every_block_output_shape_and_stride(name, c_in, c_out, stride):
    block = build_block(name, c_in, c_out, stride).eval()
    with torch.no_grad():
        out = block(torch.randn(2, c_in, 9, 10))
    # 'same' padding: ceil(size / stride)
    assert out.shape == (2, c_out, -(-9 // stride), -(-10 // stride))


@pytest.mark.parametrize("name", FBNET_BLOCKS)
@pytest.mark.parametrize("c_in, c_out, stride", [(16, 16, 1), (24, 32, 2)])
def test_fbnet_block_parameter_count(name, c_in, c_out, stride):
    expected_params, _ = fbnet_block(name, c_in, c_out, stride, 8)
    block = build_block(name, c_in, c_out, stride)
    assert sum(p.numel() for p in block.parameters()) == expected_params


def test_g2_block_has_grouped_pointwise_and_shuffle():
    block = build_block("k3_e1_g2", 16, 16, 1)
    convs = [m for m in block.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.groups for c in convs] == [2, 16, 2]
    assert isinstance(block.shuffle, blocks.ChannelShuffle)


def test_channel_shuffle_interleaves_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    out = blocks.ChannelShuffle(2)(x).flatten().tolist()
    assert out == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]


def test_skip_is_identity_or_projection():
    same = build_block("skip", 16, 16, 1)
    x = torch.randn(1, 16, 5, 5)
    assert torch.equal(same(x), x)
    assert sum(p.numel() for p in same.parameters()) == 0
    proj = build_block("skip", 16, 24, 2)
    assert sum(p.numel() for p in proj.parameters()) == 16 * 24 + 2 * 24


def test_residual_only_when_shape_kept():
    assert build_block("k3_e3", 16, 16, 1).use_residual
    assert not build_block("k3_e3", 16, 16, 2).use_residual
    assert not build_block("k3_e3", 16, 24, 1).use_residual


def test_mb_e1_has_no_expansion_conv_and_se_uses_hard_gate():
    block = build_block("mb_k3_e1", 16, 16, 1)
    assert isinstance(block.expand, torch.nn.Identity)
    se_block = build_block("mb_k5_e6_se", 16, 16, 1)
    assert isinstance(se_block.se.gate, torch.nn.Hardswish)
    assert se_block.se.reduce.out_channels == 24  # 96 / 4


def test_choice_unit_stride2_uses_both_branches_without_split():
    unit = build_block("choice_k3", 16, 64, 2)
    assert not unit.split
    # projection branch keeps 16 channels, main branch makes 64 - 16 = 48.
    assert unit.main[-1][0].out_channels == 48
    assert unit.proj[1][0].out_channels == 16
    split_unit = build_block("choice_k3", 64, 64, 1)
    assert split_unit.split and split_unit.main[0][0].in_channels == 32


def test_group_mismatch_is_rejected():
    with pytest.raises(ValueError, match="divisible by 2"):
        build_block("k3_e1_g2", 15, 16, 1)


def test_register_custom_block():
    name = "test_identity_block"
    blocks.register_block(name, lambda c_in, c_out, stride: torch.nn.Identity())
    try:
        assert name in list_blocks()
        assert parse_block_name(name).family == "custom"
        with pytest.raises(ValueError, match="already registered"):
            blocks.register_block(name, lambda c_in, c_out, stride: torch.nn.Identity())
    finally:
        del BLOCK_REGISTRY[name]
        del blocks._CUSTOM_SPECS[name]
