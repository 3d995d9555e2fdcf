"""Input checks of SearchSpace.sample(probs=...) and hardware_aware_layer_choices."""

import math

import numpy as np
import pytest
import torch

from hwnas.spaces import get_space, hardware_aware_layer_choices
from hwnas.spaces.blocks import FBNET_BLOCKS

# Only the last block of the fbnet list ("skip") has weight, so every layer draws it.
ONLY_LAST = [0.0] * (len(FBNET_BLOCKS) - 1) + [1.0]


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.asarray(ONLY_LAST, dtype=np.float32),
        lambda: np.asarray(ONLY_LAST, dtype=np.float16),
        lambda: np.asarray(ONLY_LAST, dtype=np.float64),
        lambda: np.asarray(ONLY_LAST, dtype=np.int64),
        lambda: torch.tensor(ONLY_LAST),
        lambda: torch.tensor(ONLY_LAST, dtype=torch.float64),
        lambda: torch.tensor([ONLY_LAST] * 22, requires_grad=True),
        lambda: np.asarray([ONLY_LAST] * 22, dtype=np.float32),
        lambda: [torch.tensor(ONLY_LAST)] * 22,  # one tensor per layer, as a supernet's probabilities
        lambda: list(np.asarray(ONLY_LAST, dtype=np.float32)),  # NumPy float32 scalars
        lambda: [torch.tensor(p) for p in ONLY_LAST],  # 0-dim tensors
    ],
    ids=["np32", "np16", "np64", "npint", "torch32", "torch64", "torch_2d", "np32_2d", "tensor_rows", "np_scalars",
         "torch_scalars"],
)
def test_sample_accepts_arrays_and_tensors_as_probs(make):
    space = get_space("fbnet")
    arch = space.sample(seed=0, probs=make())
    assert arch.choices == [FBNET_BLOCKS[-1]] * 22


def test_sample_with_array_probs_matches_the_same_list():
    space = get_space("fbnet")
    weights = np.random.default_rng(0).uniform(0.1, 1.0, (22, 9))
    expected = space.sample(seed=3, probs=weights.tolist())
    assert space.sample(seed=3, probs=weights.astype(np.float32)) == space.sample(
        seed=3, probs=weights.astype(np.float32).tolist())
    assert space.sample(seed=3, probs=weights) == expected
    assert space.sample(seed=3, probs=torch.tensor(weights)) == expected


@pytest.mark.parametrize("shape", [(4,), (9, 9), (22, 4), (22, 9, 1), ()])
def test_sample_names_the_expected_shape_of_an_array(shape):
    space = get_space("fbnet")
    with pytest.raises(ValueError, match=r"probs has shape \[.*\]; expected \[9\] \(one weight per choice\) or "
                                         r"\[22, 9\] \(one row per layer\)"):
        space.sample(seed=0, probs=np.ones(shape, dtype=np.float32))
    with pytest.raises(ValueError, match=r"expected \[9\] .* or \[22, 9\]"):
        space.sample(seed=0, probs=torch.ones(shape))


def test_sample_refuses_an_array_for_layers_with_different_choice_counts():
    lists = [["choice_k3", "choice_k5"]] * 10 + [["choice_k3", "choice_k5", "choicex"]] * 10
    space = get_space("hurricane", resolution=32, layer_choices=lists)
    with pytest.raises(ValueError, match=r"layers of space 'hurricane' have \[2, 3\] choices: give one sequence"):
        space.sample(seed=0, probs=np.ones((20, 3)))
    # One array per layer works.
    rows = [np.asarray([1.0, 0.0], dtype=np.float32)] * 10 + [np.asarray([0.0, 0.0, 1.0], dtype=np.float32)] * 10
    assert space.sample(seed=0, probs=rows).choices == ["choice_k3"] * 10 + ["choicex"] * 10


def test_sample_refuses_probs_that_are_no_weights():
    space = get_space("fbnet")
    for probs in (0.5, "skip"):
        with pytest.raises(ValueError, match="probs must be a mapping of block names to weights or a sequence"):
            space.sample(seed=0, probs=probs)
    with pytest.raises(ValueError, match="weights must be finite and non-negative"):
        space.sample(seed=0, probs=np.full(9, np.nan, dtype=np.float32))


def _lat(layer, op):
    return 1.0


POOL = ["mb_k3_e6", "sep_k3", "choice_k3", "choicex", "mb_k7_e6"]


@pytest.mark.parametrize("alpha", [math.nan, math.inf, -1.0, -1e-3, "0.5", True, None])
def test_hardware_aware_layer_choices_refuses_a_bad_alpha(alpha):
    with pytest.raises(ValueError, match=r"alpha must be a finite number >= 0 .*got"):
        hardware_aware_layer_choices(_lat, alpha=alpha, resolution=32, candidates=POOL)


@pytest.mark.parametrize("explore_last", [-1, 21, 25, 1.5, True])
def test_hardware_aware_layer_choices_refuses_a_bad_explore_last(explore_last):
    with pytest.raises(ValueError, match=r"explore_last must be an integer in 0..20 \(the number of layers\), got"):
        hardware_aware_layer_choices(_lat, alpha=0.5, explore_last=explore_last, resolution=32, candidates=POOL)


@pytest.mark.parametrize("top_p", [0, 6, 2.5, True, "2"])
def test_hardware_aware_layer_choices_refuses_a_bad_top_p(top_p):
    with pytest.raises(ValueError, match=r"top_p must be an integer in 1..5 \(the number of candidates\), got"):
        hardware_aware_layer_choices(_lat, alpha=0.5, top_p=top_p, resolution=32, candidates=POOL)


def test_hardware_aware_layer_choices_refuses_bad_candidates():
    with pytest.raises(ValueError, match="candidates is empty"):
        hardware_aware_layer_choices(_lat, alpha=0.5, candidates=[], resolution=32)
    with pytest.raises(ValueError, match="candidates must be a sequence of block names"):
        hardware_aware_layer_choices(_lat, alpha=0.5, candidates="sep_k3", resolution=32)
    with pytest.raises(ValueError, match="candidates must be a sequence of block names"):
        hardware_aware_layer_choices(_lat, alpha=0.5, candidates=3, resolution=32)
    with pytest.raises(ValueError, match="candidates must be block names"):
        hardware_aware_layer_choices(_lat, alpha=0.5, candidates=["sep_k3", 3], top_p=1, resolution=32)
    with pytest.raises(ValueError, match=r"candidates lists \['sep_k3'\] more than once"):
        hardware_aware_layer_choices(_lat, alpha=0.5, candidates=["sep_k3", "choicex", "sep_k3"], top_p=1,
                                     resolution=32)


def test_hardware_aware_layer_choices_edges_of_the_valid_ranges():
    # alpha 0 ranks by latency alone.
    lat = {op: float(i + 1) for i, op in enumerate(reversed(POOL))}
    lists = hardware_aware_layer_choices(lambda layer, op: lat[op], alpha=0, top_p=2, explore_last=20,
                                         resolution=32, candidates=POOL)
    assert lists == [["mb_k7_e6", "choicex", "choice_k3"]] * 20
    # Every layer explores; none does; a large alpha (capacity alone) does not overflow.
    assert all(len(l) == 2 for l in hardware_aware_layer_choices(_lat, alpha=0.5, top_p=2, explore_last=0,
                                                                  resolution=32, candidates=POOL))
    big = hardware_aware_layer_choices(_lat, alpha=50, top_p=1, explore_last=0, resolution=32,
                                       candidates=["mb_k3_e6", "mb_k7_e6"])
    assert big == [["mb_k7_e6"]] * 20
    assert hardware_aware_layer_choices(_lat, alpha=np.float32(0.5), top_p=np.int64(1), explore_last=np.int64(0),
                                        resolution=32, candidates=tuple(POOL))[0] == ["mb_k7_e6"]


def test_unknown_space_options_are_named():
    from hwnas.spaces import space_for_architecture

    with pytest.raises(ValueError, match=r"search space 'fbnet_small' has no option 'foo'; its options: resolution, width"):
        get_space("fbnet_small", resolution=8, foo=1)
    arch = get_space("fbnet_small", resolution=8, width=0.25).sample(seed=0)
    arch.space_options["width"] = "x"
    with pytest.raises(ValueError, match="space_options repeat 'width'"):
        space_for_architecture(arch)


def test_an_architecture_of_another_shape_of_the_space_is_refused_not_built_in_this_shape():
    from hwnas.spaces import build_model, get_space

    plain = get_space("fbnet_small", resolution=8, width=0.25)
    grey = get_space("fbnet_small", resolution=8, width=0.25, in_channels=1, num_classes=4)
    arch = grey.sample(seed=0)
    # Before, validate passed and the model took 3 input channels and 10 classes.
    for check in (plain.validate, plain.build, lambda a: build_model(plain, a)):
        with pytest.raises(ValueError, match=r"other input channels \(1 there, 3 here\)"):
            check(arch)
    assert build_model(None, arch).eval()(torch.randn(2, 1, 8, 8)).shape == (2, 4)  # its own shape
    # The same shape written differently (a default given explicitly) is the same space.
    explicit = get_space("fbnet_small", resolution=8, width=0.25, in_channels=3).sample(seed=0)
    plain.validate(explicit)
    narrowed = get_space("fbnet_small", resolution=8, width=0.25, choices=["k3_e1", "skip"]).sample(seed=0)
    with pytest.raises(ValueError, match="other per-layer candidates"):
        plain.validate(narrowed)
    # Strides are part of the shape: the same layers on 16x16 instead of 32x32 inputs.
    early = get_space("fbnet", resolution=32, width=0.25, stem_stride=1).sample(seed=0)
    with pytest.raises(ValueError, match="other stem"):
        get_space("fbnet", resolution=32, width=0.25).validate(early)


def test_strings_where_lists_of_block_names_belong_are_refused():
    from hwnas.spaces import Architecture

    # list("k3_e1") is its letters: before, "unknown block name 'k'" or silently ['s', 'k', 'i', 'p'].
    with pytest.raises(ValueError, match="choices must be a list of block names, got 'k3_e1'"):
        get_space("fbnet_small", resolution=8, choices="k3_e1")
    with pytest.raises(ValueError, match=r"layer_choices\[0\] must be a list of block names"):
        get_space("hurricane", layer_choices=["mb_k3_e3"] * 20)
    with pytest.raises(ValueError, match="got the string 'skip'"):
        Architecture(space="fbnet_small", space_version=1, choices="skip", resolution=8, width=1.0)
    space = get_space("fbnet_small", resolution=8)
    with pytest.raises(ValueError, match=f"21 choices given; space 'fbnet_small' has {len(space.layers)} searchable"):
        space.make_arch(["skip"] * 21)


def test_block_names_must_read_back_from_strings_and_keys():
    from hwnas.spaces import parse_block_name
    from hwnas.spaces.blocks import register_block

    with pytest.raises(ValueError, match="unknown block name"):
        parse_block_name("k3_e1\n")  # a regex "$" let the newline through
    for bad in ("my|blk", "my blk", "", "a\n"):
        with pytest.raises(ValueError, match="block name must be letters, digits"):
            register_block(bad, lambda c_in, c_out, stride: torch.nn.Identity())


def test_what_a_space_could_not_build_is_refused_when_it_is_made():
    from hwnas.spaces import SearchSpace, profile

    def make(stem, stage):
        return SearchSpace(name="u", resolution=8, in_channels=1, num_classes=3, width=1.0, stem=stem,
                           stages=[stage], head={"out_channels": 32})

    plain = {"out_channels": 16, "layers": 1, "choices": ["k3_e1"]}
    with pytest.raises(ValueError, match="stem kernel must be odd, got 4"):
        make({"out_channels": 16, "kernel": 4, "stride": 1}, plain)
    with pytest.raises(ValueError, match="stem: unknown activation 'gelu'"):
        make({"out_channels": 16, "kernel": 3, "stride": 1, "activation": "gelu"}, plain)
    odd = make({"out_channels": 15, "kernel": 3, "stride": 1}, {"out_channels": 15, "layers": 1, "choices": ["choice_k3", "skip"]})
    with pytest.raises(ValueError, match=r"block 'choice_k3' needs an even output channel count .*got 15->15"):
        odd.make_arch(["choice_k3"])
    # A unit that changes the shape does not split its input: 15 channels in are fine, and it builds.
    widening = make({"out_channels": 15, "kernel": 3, "stride": 1},
                    {"out_channels": 32, "layers": 1, "first_stride": 2, "choices": ["choice_k3", "skip"]})
    assert widening.build(widening.make_arch(["choice_k3"])).eval()(torch.randn(1, 1, 8, 8)).shape == (1, 3)
    with pytest.raises(ValueError, match="channel_multipliers must be positive finite numbers"):
        get_space("fbnetv2", channel_multipliers=[0.0])
    conv = torch.nn.Conv2d(1, 2, 3)
    for shape in ((8, 8), (1, 8.5, 8)):
        with pytest.raises(ValueError, match="input_shape must be"):
            profile(conv, shape)
    assert profile(conv, (1, 8, 8)).macs == 2 * 9 * 6 * 6  # 2 filters x 9 taps x 6x6 outputs
