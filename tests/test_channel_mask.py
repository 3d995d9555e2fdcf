"""hwnas.ops.channel_mask against the naive sum of masked copies sum_i g_i * (x * mask_i)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnas.ops import channel_mask

TOL = {
    torch.float64: dict(atol=1e-12, rtol=1e-12),
    torch.float32: dict(atol=1e-5, rtol=1e-5),
    torch.bfloat16: dict(atol=2e-2, rtol=2e-2),
    torch.float16: dict(atol=2e-3, rtol=2e-3),
}


def eager_reference(x, gates, widths):
    """sum_i gates[..., i] * (x * mask_i) in float64, mask_i keeping channels < widths[i]."""
    xd = x.double()
    out = torch.zeros(x.shape, dtype=torch.float64)
    view = (-1,) + (1,) * (x.dim() - 1)
    for i, width in enumerate(widths):
        mask = torch.zeros(x.shape[1], dtype=torch.float64)
        mask[:width] = 1.0
        mask = mask.reshape((1, -1) + (1,) * (x.dim() - 2))
        g = gates[..., i].double()
        g = g.reshape(view) if gates.dim() == 2 else g
        out = out + g * (xd * mask)
    return out


def make_gates(k, batch, per_sample, dtype=torch.float32, requires_grad=False):
    shape = (batch, k) if per_sample else (k,)
    return torch.randn(shape, dtype=dtype).requires_grad_(requires_grad)


LAYOUTS = {
    "contiguous": lambda t: t,
    "channels_last": lambda t: t.to(memory_format=torch.channels_last),
    # channels neither innermost nor outermost: computed in a contiguous copy
    "hwc_permuted": lambda t: t.permute(0, 2, 1, 3).contiguous().permute(0, 2, 1, 3),
    "strided_slice": lambda t: t[:, :, ::2, :],
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_forward_matches_reference_4d(dtype, per_sample, layout):
    x = LAYOUTS[layout](torch.randn(3, 10, 6, 5, dtype=dtype))
    widths = [2, 5, 6, 9]
    gates = make_gates(4, 3, per_sample, dtype)
    out = channel_mask(x, gates, widths)
    assert out.shape == x.shape and out.dtype == dtype
    if layout != "strided_slice":
        assert out.stride() == x.stride()  # the output keeps x's dense layout
    torch.testing.assert_close(out.double(), eager_reference(x, gates, widths), **TOL[dtype])


@pytest.mark.parametrize("shape", [(4, 7), (2, 6, 11), (2, 5, 3, 4, 2), (1, 64, 3, 3)])
@pytest.mark.parametrize("per_sample", [False, True])
def test_forward_other_ranks(shape, per_sample):
    x = torch.randn(shape)
    widths = [1, shape[1] // 2 + 1, shape[1]] if shape[1] > 2 else [1, 2]
    gates = make_gates(len(widths), shape[0], per_sample)
    torch.testing.assert_close(channel_mask(x, gates, widths).double(), eager_reference(x, gates, widths))


def test_channels_last_3d_keeps_layout():
    x = torch.randn(2, 6, 3, 4, 5).to(memory_format=torch.channels_last_3d)
    gates = torch.rand(3)
    out = channel_mask(x, gates, [1, 3, 6])
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(out.double(), eager_reference(x, gates, [1, 3, 6]))


def test_explicit_values():
    # C=4, widths [1, 3]: channel 0 -> g0 + g1, channels 1, 2 -> g1, channel 3 -> 0.
    x = torch.ones(1, 4, 2)
    out = channel_mask(x, torch.tensor([2.0, 5.0]), [1, 3])
    expected = torch.tensor([7.0, 5.0, 5.0, 0.0]).reshape(1, 4, 1).expand(1, 4, 2)
    assert torch.equal(out, expected)


def test_one_hot_gates_give_exact_prefix():
    x = torch.randn(2, 8, 3, 3)
    out = channel_mask(x, torch.tensor([0.0, 1.0, 0.0]), [2, 5, 8])
    assert torch.equal(out[:, :5], x[:, :5])
    assert torch.equal(out[:, 5:], torch.zeros_like(out[:, 5:]))


def test_zero_scale_channels_are_not_read():
    # Channels no width keeps are written as 0 without reading x (as documented).
    x = torch.randn(2, 6, 4)
    x[:, 4:] = float("nan")
    out = channel_mask(x, torch.tensor([0.5, 0.5]), [2, 4])
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:, :2], x[:, :2])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_with_float32_gates(dtype):
    x = torch.randn(2, 8, 5, 5, dtype=dtype)
    gates = torch.softmax(torch.randn(3), 0)
    out = channel_mask(x, gates, [2, 4, 8])
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), eager_reference(x, gates, [2, 4, 8]), **TOL[dtype])


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "hwc_permuted"])
def test_gradcheck_float64(per_sample, layout):
    x = LAYOUTS[layout](torch.randn(2, 6, 3, 4, dtype=torch.float64)).requires_grad_()
    gates = make_gates(3, 2, per_sample, torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, g: channel_mask(x, g, [1, 4, 5]), (x, gates))


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("grad_layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("x_layout", ["contiguous", "channels_last"])
def test_gradients_match_eager_autograd(per_sample, grad_layout, x_layout):
    widths = [3, 8, 12, 16]
    x = LAYOUTS[x_layout](torch.randn(4, 16, 7, 7)).requires_grad_()
    gates = make_gates(4, 4, per_sample, requires_grad=True)
    grad_out = LAYOUTS[grad_layout](torch.randn(4, 16, 7, 7))
    channel_mask(x, gates, widths).backward(grad_out)
    fused_x, fused_g = x.grad.clone(), gates.grad.clone()
    x.grad = gates.grad = None
    eager_reference(x, gates, widths).backward(grad_out.double())
    torch.testing.assert_close(fused_x, x.grad)
    torch.testing.assert_close(fused_g, gates.grad, atol=1e-4, rtol=1e-5)


def test_gate_gradient_formula():
    # d out / d g_i = sum_{c < widths[i]} <grad[:, c], x[:, c]>, written out directly.
    x = torch.randn(3, 7, 5, dtype=torch.float64)
    grad = torch.randn(3, 7, 5, dtype=torch.float64)
    gates = torch.rand(3, dtype=torch.float64, requires_grad=True)
    widths = [2, 3, 6]
    channel_mask(x, gates, widths).backward(grad)
    per_channel = (grad * x).sum(dim=(0, 2))
    expected = torch.stack([per_channel[:w].sum() for w in widths])
    torch.testing.assert_close(gates.grad, expected)


def test_large_float32_gate_gradient_is_accurate():
    # 2 * 64 * 96 * 96 products per channel run: accumulated in chunks + double.
    x = torch.rand(2, 8, 96, 96)
    gates = torch.ones(2, requires_grad=True)
    channel_mask(x, gates, [4, 8]).backward(torch.ones_like(x))
    expected = torch.stack([x[:, :4].double().sum(), x.double().sum()]).float()
    torch.testing.assert_close(gates.grad, expected, rtol=1e-6, atol=0)


def test_only_x_needs_grad_does_not_save_x():
    x = torch.randn(2, 5, 3, requires_grad=True)
    gates = torch.tensor([0.25, 0.75])
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = channel_mask(x, gates, [2, 5])
    assert len(saved) == 1 and saved[0] is gates
    out.sum().backward()
    expected = torch.tensor([1.0, 1.0, 0.75, 0.75, 0.75]).reshape(1, 5, 1).expand(2, 5, 3)
    torch.testing.assert_close(x.grad, expected)


def test_saves_only_x_and_gates():
    x = torch.randn(2, 5, 3, requires_grad=True)
    gates = torch.rand(2, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        channel_mask(x, gates, [2, 5])
    assert sorted(t.numel() for t in saved) == [2, 30]


def test_only_gates_need_grad():
    x = torch.randn(3, 4, 5)
    gates = torch.rand(3, 2, requires_grad=True)
    channel_mask(x, gates, [1, 4]).sum().backward()
    per_sample_channel = x.sum(dim=2)  # [B, C]
    expected = torch.stack([per_sample_channel[:, :1].sum(1), per_sample_channel.sum(1)], dim=1)
    torch.testing.assert_close(gates.grad, expected)


def test_empty_batch():
    x = torch.randn(0, 4, 3, requires_grad=True)
    gates = torch.rand(2, requires_grad=True)
    out = channel_mask(x, gates, [2, 4])
    assert out.shape == (0, 4, 3)
    out.sum().backward()
    assert x.grad.shape == (0, 4, 3) and torch.equal(gates.grad, torch.zeros(2))


def test_opcheck():
    for per_sample in (False, True):
        for fmt in (torch.contiguous_format, torch.channels_last):
            x = torch.randn(2, 6, 4, 4).to(memory_format=fmt).requires_grad_()
            gates = make_gates(3, 2, per_sample, requires_grad=True)
            torch.library.opcheck(torch.ops.hwnas.channel_mask.default, (x, gates, [2, 3, 6]))
    x = torch.randn(2, 6, 4)
    grad = torch.randn(2, 6, 4)
    op = torch.ops.hwnas.channel_mask_backward.default
    torch.library.opcheck(op, (grad, x, torch.rand(2), [3, 5], True, True))
    torch.library.opcheck(op, (grad, torch.empty(0), torch.rand(2, 2), [3, 5], True, False))
    torch.library.opcheck(op, (grad, x, torch.rand(2, 2), [3, 5], False, True))


def test_torch_compile_fullgraph():
    widths = [4, 8, 16]

    def masked(x, logits):
        return torch.relu(channel_mask(x, torch.softmax(logits, -1), widths)) * 2.0

    compiled = torch.compile(masked, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 16, 5, 5, requires_grad=True)
    logits = torch.randn(3, requires_grad=True)
    out = compiled(x, logits)
    torch.testing.assert_close(out, masked(x, logits))
    out.sum().backward()
    grads = x.grad.clone(), logits.grad.clone()
    x.grad = logits.grad = None
    masked(x, logits).sum().backward()
    torch.testing.assert_close(grads[0], x.grad)
    torch.testing.assert_close(grads[1], logits.grad)


@st.composite
def channel_mask_cases(draw):
    batch = draw(st.integers(1, 4))
    channels = draw(st.integers(1, 12))
    spatial = draw(st.lists(st.integers(1, 6), min_size=0, max_size=3))
    widths = sorted(draw(st.sets(st.integers(1, channels), min_size=1, max_size=min(channels, 6))))
    per_sample = draw(st.booleans())
    channels_last = len(spatial) == 2 and draw(st.booleans())
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    return batch, channels, spatial, widths, per_sample, channels_last, dtype


@settings(max_examples=50, deadline=None)
@given(case=channel_mask_cases())
def test_random_shapes_hypothesis(case):
    batch, channels, spatial, widths, per_sample, channels_last, dtype = case
    x = torch.randn(batch, channels, *spatial, dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_()
    gates = make_gates(len(widths), batch, per_sample, dtype, requires_grad=True)
    out = channel_mask(x, gates, widths)
    reference = eager_reference(x, gates, widths)
    torch.testing.assert_close(out.double(), reference, **TOL[dtype])
    grad = torch.randn_like(out)
    out.backward(grad)
    want_x, want_g = torch.autograd.grad(reference, (x, gates), grad.double())
    torch.testing.assert_close(x.grad, want_x, **TOL[dtype])
    torch.testing.assert_close(gates.grad.double(), want_g.double(), atol=1e-4, rtol=1e-4)


# --- bad input -----------------------------------------------------------------

BAD_INPUTS = [
    ("widths not increasing", lambda: (torch.ones(2, 6), torch.ones(3), [2, 2, 5]), "strictly increasing"),
    ("widths decreasing", lambda: (torch.ones(2, 6), torch.ones(2), [4, 3]), r"widths\[1\]=3"),
    ("width exceeds C", lambda: (torch.ones(2, 6), torch.ones(2), [3, 7]), "largest width 7 exceeds the C=6"),
    ("width zero", lambda: (torch.ones(2, 6), torch.ones(2), [0, 3]), "positive"),
    ("widths disagree with K", lambda: (torch.ones(2, 6), torch.ones(3), [2, 4]), "widths has 2 entries but gates has K=3"),
    ("no widths", lambda: (torch.ones(2, 6), torch.ones(0), []), "at least one width"),
    ("x rank 1", lambda: (torch.ones(6), torch.ones(1), [3]), "at least 2 dimensions"),
    ("gates rank 3", lambda: (torch.ones(2, 6), torch.ones(2, 1, 1), [3]), r"shape \[K\]"),
    ("per-sample batch mismatch", lambda: (torch.ones(2, 6), torch.ones(3, 1), [3]), "B=3"),
    ("integer x", lambda: (torch.ones(2, 6, dtype=torch.int32), torch.ones(1), [3]), "float32, float64"),
    ("float64 gates, float32 x", lambda: (torch.ones(2, 6), torch.ones(1, dtype=torch.float64), [3]), "dtype"),
    ("device mismatch", lambda: (torch.ones(2, 6), torch.ones(1, device="meta"), [3]), "device"),
]


@pytest.mark.parametrize("name,make,message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_clear_error(name, make, message):
    x, gates, widths = make()
    with pytest.raises(RuntimeError, match=message):
        channel_mask(x, gates, widths)


@pytest.mark.parametrize("widths", ["36", [3.0, 6], [True, 6]], ids=["string", "float", "bool"])
def test_widths_that_are_not_integers_are_refused_not_rounded(widths):
    with pytest.raises(TypeError, match="widths must be a sequence of integers"):
        channel_mask(torch.ones(2, 6), torch.ones(2), widths)


def test_backward_bad_input():
    with pytest.raises(RuntimeError, match="needs x shaped like grad"):
        torch.ops.hwnas.channel_mask_backward(torch.ones(2, 4), torch.ones(2, 3), torch.ones(1), [2], True, True)


def test_compile_reports_bad_widths():
    compiled = torch.compile(lambda x, g: channel_mask(x, g, [3, 9]), fullgraph=True, backend="aot_eager")
    with pytest.raises(Exception, match="exceeds"):
        compiled(torch.ones(2, 6), torch.ones(2))
