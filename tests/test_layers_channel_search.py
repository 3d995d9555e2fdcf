"""hwnas.layers.ChannelSearchConv2d (FBNetV2 DMasking), fused against eager."""

from __future__ import annotations

import pytest
import torch

from hwnas.layers import ChannelSearchConv2d

WIDTHS = [4, 8, 12, 16]


def make_layer(mode="gumbel", **kwargs):
    layer = ChannelSearchConv2d(3, WIDTHS, kernel_size=3, mode=mode, **kwargs)
    with torch.no_grad():
        layer.arch_logits.copy_(torch.randn(len(WIDTHS)))
    return layer


def run_step(layer, x, seed, grad_out):
    layer.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out = layer(x)
    loss = (out * grad_out).sum() + 1e-3 * layer.expected_macs
    if layer.expected_latency is not None:
        loss = loss + layer.expected_latency
    loss.backward()
    return out.detach(), {n: p.grad.clone() for n, p in layer.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("mode", ["softmax", "gumbel", "gumbel_hard", "single_path", "fixed"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_matches_eager_reference(mode, channels_last):
    layer = make_layer(mode, latencies=[1.0, 2.0, 3.0, 5.0], fixed_index=1, temperature=0.8)
    x = torch.randn(2, 3, 7, 7)
    if channels_last:
        layer = layer.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    grad_out = torch.randn(2, 16, 7, 7)
    fused = run_step(layer, x, 11, grad_out)
    layer.fused = False
    eager = run_step(layer, x, 11, grad_out)
    torch.testing.assert_close(fused[0], eager[0])
    assert fused[1].keys() == eager[1].keys()
    for name in fused[1]:
        torch.testing.assert_close(fused[1][name], eager[1][name], atol=1e-4, rtol=1e-5, msg=name)


def test_output_is_masked_wide_convolution():
    layer = make_layer("softmax")
    x = torch.randn(2, 3, 5, 5)
    out = layer(x)
    full = torch.relu(layer.norm(layer.conv(x)))
    gates = torch.softmax(layer.arch_logits, 0)
    expected = sum(g * full * (torch.arange(16) < w).float().reshape(1, 16, 1, 1) for g, w in zip(gates, WIDTHS))
    torch.testing.assert_close(out, expected)


def test_hard_modes_zero_the_unchosen_channels_exactly():
    layer = make_layer("fixed", fixed_index=1)
    out = layer(torch.randn(2, 3, 5, 5))
    assert torch.equal(out[:, 8:], torch.zeros_like(out[:, 8:]))
    assert (out[:, :8] != 0).any()
    layer.mode = "gumbel_hard"
    out = layer(torch.randn(2, 3, 5, 5))
    chosen = WIDTHS[int(layer.last_gates.argmax())]
    assert torch.equal(layer.last_gates.detach(), (torch.tensor(WIDTHS) == chosen).float())
    assert torch.equal(out[:, chosen:], torch.zeros_like(out[:, chosen:]))


def test_expected_cost_values_and_gradients():
    lat = torch.tensor([1.0, 2.0, 3.0, 5.0])
    layer = ChannelSearchConv2d(3, WIDTHS, kernel_size=3, stride=2, latencies=lat.tolist(), mode="softmax")
    with torch.no_grad():
        layer.arch_logits.copy_(torch.randn(4))
    layer(torch.randn(1, 3, 9, 9))  # output 5 x 5
    logits = layer.arch_logits.detach().clone().requires_grad_()
    probs = torch.softmax(logits, 0)
    widths = torch.tensor(WIDTHS, dtype=torch.float32)
    expected = {
        "expected_out_channels": (probs * widths).sum(),
        "expected_macs": (probs * widths * (3 * 3 * 3 * 5 * 5)).sum(),
        "expected_latency": (probs * lat).sum(),
    }
    for name, want in expected.items():
        got = getattr(layer, name)
        torch.testing.assert_close(got, want, msg=name)
        (g_got,) = torch.autograd.grad(got, layer.arch_logits, retain_graph=True)
        (g_want,) = torch.autograd.grad(want, logits, retain_graph=True)
        torch.testing.assert_close(g_got, g_want, msg=name)
    half = layer.expected_macs_given_input(torch.tensor(1.5))
    torch.testing.assert_close(half, layer.expected_macs * 0.5)


def test_gradcheck_through_layer_float64():
    # Input, convolution weight and logits together, in float64.
    layer = ChannelSearchConv2d(2, [1, 3, 4], kernel_size=1, norm=False, activation=None, mode="softmax").double()
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    params = (layer.conv.weight, layer.arch_logits)

    def forward(x, weight, logits):
        return torch.func.functional_call(layer, {"conv.weight": weight, "arch_logits": logits}, (x,))

    assert torch.autograd.gradcheck(forward, (x, *params))


def test_temperature_and_mode_validation():
    layer = make_layer()
    layer.temperature = 0.1
    assert layer.temperature == 0.1
    with pytest.raises(ValueError, match="temperature"):
        layer.temperature = -1
    with pytest.raises(ValueError, match="unknown search mode"):
        layer.mode = "dmask"
    with pytest.raises(ValueError, match=r"fixed_index must be in \[0, 4\)"):
        layer.fixed_index = 4


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(widths=[]), "at least one width"),
        (dict(widths=[4, 4, 8]), "strictly increasing"),
        (dict(widths=[0, 8]), "positive"),
        (dict(widths=[4, 6], groups=4), "multiples of groups=4"),
        (dict(widths=[4, 8], latencies=[1.0]), "latencies has 1 entries for 2 choices"),
        (dict(widths=[2.5, 8]), "a width must be an integer, got 2.5"),
        (dict(widths="48"), "a width must be an integer, got '4'"),
        (dict(widths=[4, 8], groups=0), "groups must be a positive integer, got 0"),
        (dict(widths=[4, 8], kernel_size=0), "kernel_size must be a positive integer, got 0"),
        (dict(widths=[4, 8], stride=0), "stride must be a positive integer, got 0"),
        (dict(widths=[4, 8], activation=torch.nn.ReLU()), "activation must be a factory such as nn.ReLU"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    kwargs = dict(kwargs)
    widths = kwargs.pop("widths")
    with pytest.raises(ValueError, match=message):
        ChannelSearchConv2d(4, widths, **kwargs)


def test_extra_repr():
    text = repr(make_layer("softmax"))
    assert "widths=[4, 8, 12, 16]" in text and "mode='softmax'" in text and "fused=True" in text


def test_a_layer_after_a_forward_deep_copies_with_its_expectations_detached():
    import copy

    layer = ChannelSearchConv2d(4, [4, 8], mode="softmax")
    layer(torch.randn(2, 4, 5, 5))
    copied = copy.deepcopy(layer)
    torch.testing.assert_close(copied.expected_out_channels, torch.tensor(6.0))  # (4 + 8) / 2
    assert copied.expected_macs.grad_fn is None and layer.expected_macs.grad_fn is not None


def test_negative_latencies_are_refused():
    with pytest.raises(ValueError, match=r"latencies must be >= 0 .*got \[-1.0, 3.0\]"):
        ChannelSearchConv2d(3, [4, 8], latencies=[-1, 3])
    layer = ChannelSearchConv2d(3, [4, 8], latencies=[0, 3])
    torch.testing.assert_close(layer.latencies, torch.tensor([0.0, 3.0]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_expected_costs_of_a_16_bit_layer_are_exact_and_have_finite_gradients(dtype):
    layer = ChannelSearchConv2d(64, [96, 128], mode="softmax").to(dtype)
    layer(torch.randn(1, 64, 12, 12, dtype=dtype))
    # Hand count: 64 inputs x 3 x 3 taps x 12 x 12 outputs per channel, at the mean width 112.
    assert layer.expected_macs.dtype == torch.float32
    assert float(layer.expected_macs.detach()) == pytest.approx(64 * 9 * 144 * 112, rel=1e-3)
    assert float(layer.expected_out_channels.detach()) == pytest.approx(112, rel=1e-3)
    # A loss scales its cost term (a raw MAC gradient would pass float16's range anyway):
    # the 16-bit logits get the float32 layer's gradient, not inf * 0 = NaN.
    (1e-6 * layer.expected_macs).backward()
    reference = ChannelSearchConv2d(64, [96, 128], mode="softmax")
    reference(torch.randn(1, 64, 12, 12))
    (1e-6 * reference.expected_macs).backward()
    torch.testing.assert_close(layer.arch_logits.grad.float(), reference.arch_logits.grad, rtol=1e-2, atol=1e-3)
    assert reference.arch_logits.grad.abs().sum() > 0
