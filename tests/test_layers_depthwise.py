"""DepthwiseConv2d and native_depthwise: the swap for training keeps the model's parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hwnas.layers import DepthwiseConv2d, native_depthwise
from hwnas.layers.depthwise import is_depthwise, restore_modules, swap_in_native_depthwise
from hwnas.spaces import build_block


def test_module_matches_conv2d_with_bias():
    conv = nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6, bias=True)
    native = DepthwiseConv2d.sharing(conv)
    assert native.weight is conv.weight and native.bias is conv.bias
    x = torch.randn(2, 6, 7, 7, requires_grad=True)
    torch.testing.assert_close(native(x), conv(x))
    native(x).square().sum().backward()
    grads = [t.grad.clone() for t in (x, conv.weight, conv.bias)]
    for t in (x, conv.weight, conv.bias):
        t.grad = None
    conv(x).square().sum().backward()
    for got, t in zip(grads, (x, conv.weight, conv.bias)):
        torch.testing.assert_close(got, t.grad, atol=1e-5, rtol=1e-5)


def test_is_depthwise():
    assert is_depthwise(nn.Conv2d(4, 4, 3, groups=4))
    assert not is_depthwise(nn.Conv2d(4, 8, 3, groups=4))  # channel multiplier 2
    assert not is_depthwise(nn.Conv2d(4, 4, 1, groups=2))
    assert not is_depthwise(nn.Conv2d(4, 4, 3, groups=4, padding="same"))
    assert not is_depthwise(nn.Conv2d(4, 4, 3, groups=4, padding=1, padding_mode="reflect"))
    with pytest.raises(ValueError, match="not a depthwise"):
        DepthwiseConv2d.sharing(nn.Conv2d(4, 4, 1))


def test_modules_with_hooks_or_reparametrized_weights_are_not_swapped():
    # A swapped-in module would not run the original's hooks (weight_norm computes the
    # weight in a forward pre-hook), so such modules keep running as nn.Conv2d.
    normed = nn.utils.weight_norm(nn.Conv2d(4, 4, 3, padding=1, groups=4))
    hooked = nn.Conv2d(4, 4, 3, padding=1, groups=4)
    calls = []
    hooked.register_forward_hook(lambda *_: calls.append(1))
    plain = nn.Conv2d(4, 4, 3, padding=1, groups=4)
    model = nn.Sequential(normed, hooked, plain)
    assert not is_depthwise(normed) and not is_depthwise(hooked) and is_depthwise(plain)
    x = torch.randn(2, 4, 5, 5)
    want = model(x)
    with native_depthwise(model):
        assert model[0] is normed and model[1] is hooked and isinstance(model[2], DepthwiseConv2d)
        torch.testing.assert_close(model(x), want, atol=1e-5, rtol=1e-5)
    assert len(calls) == 2


def test_unbatched_input_as_conv2d():
    conv = nn.Conv2d(3, 3, 3, stride=2, padding=1, groups=3, bias=True)
    x = torch.randn(3, 7, 6)
    out = DepthwiseConv2d.sharing(conv)(x)
    assert out.shape == (3, 4, 3)
    torch.testing.assert_close(out, conv(x), atol=1e-5, rtol=1e-5)


def test_swap_shares_parameters_and_restores():
    block = build_block("k5_e6", 8, 8, 1)  # expand, depthwise, project
    original = block.depthwise[0]
    keys = list(block.state_dict())
    x = torch.randn(3, 8, 6, 6)
    block.eval()
    want = block(x)
    rng = torch.get_rng_state()
    with native_depthwise(block):
        swapped = block.depthwise[0]
        assert isinstance(swapped, DepthwiseConv2d) and swapped.weight is original.weight
        assert not swapped.training  # follows the module it replaces
        assert list(block.state_dict()) == keys
        torch.testing.assert_close(block(x), want, atol=1e-5, rtol=1e-5)
        with torch.no_grad():
            swapped.weight.mul_(2.0)  # training inside the block is kept
        block.train()
    assert torch.equal(torch.get_rng_state(), rng)  # swapping draws no random numbers
    assert block.depthwise[0] is original and original.training
    assert type(block.expand[0]) is nn.Conv2d and type(block.project[0]) is nn.Conv2d


def test_swap_is_undone_on_error():
    block = build_block("k3_e3", 8, 8, 1)
    with pytest.raises(KeyboardInterrupt):
        with native_depthwise(block):
            raise KeyboardInterrupt
    assert type(block.depthwise[0]) is nn.Conv2d


def test_swap_counts_every_depthwise_conv():
    model = nn.Sequential(build_block("k3_e1", 8, 16, 2), build_block("k5_e6_g2", 16, 16, 1), nn.Conv2d(16, 16, 1))
    swapped = swap_in_native_depthwise(model)
    assert len(swapped) == 2
    assert sum(isinstance(m, DepthwiseConv2d) for m in model.modules()) == 2
    restore_modules(swapped)
    assert not any(isinstance(m, DepthwiseConv2d) for m in model.modules())


def test_training_step_matches_conv2d():
    torch.manual_seed(1)
    block = build_block("k5_e3", 8, 8, 1).to(memory_format=torch.channels_last)
    reference = build_block("k5_e3", 8, 8, 1).to(memory_format=torch.channels_last)
    reference.load_state_dict(block.state_dict())
    x = torch.randn(16, 8, 6, 6).to(memory_format=torch.channels_last)
    with native_depthwise(block):
        block(x).square().mean().backward()
    reference(x).square().mean().backward()
    for (name, p), q in zip(block.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_what_cannot_run_on_the_native_kernel_is_refused_when_built():
    with pytest.raises(ValueError, match="numeric padding"):
        DepthwiseConv2d(8, 3, padding="same")
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    with pytest.raises(ValueError, match="the model is itself a depthwise nn.Conv2d"):
        swap_in_native_depthwise(conv)
    with native_depthwise(nn.Sequential(conv)) as model:
        assert isinstance(model[0], DepthwiseConv2d)


def test_defaults_and_state_dict_are_those_of_conv2d():
    conv = nn.Conv2d(4, 4, 3, groups=4)
    native = DepthwiseConv2d(4, 3)
    native.load_state_dict(conv.state_dict())  # bias=True by default, as nn.Conv2d
    x = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(native(x), conv(x))


def test_under_autocast_it_computes_in_the_autocast_dtype_as_conv2d():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 3, padding=1, groups=4))
    x = torch.randn(2, 4, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = model(x)
        with native_depthwise(model):
            out = model(x)
        alone = DepthwiseConv2d.sharing(model[1])(x)
        plain = model[1](x)
    assert out.dtype == expected.dtype == alone.dtype == plain.dtype == torch.bfloat16
    # bfloat16 keeps 8 bits of mantissa; the two kernels round differently.
    torch.testing.assert_close(out.float(), expected.float(), atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(alone.float(), plain.float(), atol=1e-2, rtol=1e-2)
    # Autocast leaves float64 alone, in nn.Conv2d and in its drop-in.
    double = nn.Conv2d(4, 4, 3, padding=1, groups=4).double()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected, out = double(x.double()), DepthwiseConv2d.sharing(double)(x.double())
    assert out.dtype == expected.dtype == torch.float64
    torch.testing.assert_close(out, expected)


def test_a_convolution_used_twice_in_one_parent_is_swapped_at_both_uses():
    conv = nn.Conv2d(4, 4, 3, padding=1, groups=4)
    model = nn.Sequential(conv, nn.ReLU(), conv)
    x = torch.randn(1, 4, 5, 5)
    expected = model(x)
    with native_depthwise(model):
        assert isinstance(model[0], DepthwiseConv2d) and isinstance(model[2], DepthwiseConv2d)
        torch.testing.assert_close(model(x), expected)
    assert model[0] is conv and model[2] is conv
