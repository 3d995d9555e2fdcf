"""channel_mask: zeroed channels in every dtype and layout, and the widths it accepts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.ops import channel_mask

TOL = {
    torch.float64: dict(atol=1e-12, rtol=1e-12),
    torch.float32: dict(atol=1e-5, rtol=1e-5),
    torch.bfloat16: dict(atol=2e-2, rtol=2e-2),
    torch.float16: dict(atol=2e-3, rtol=2e-3),
}
DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]

# --- zero scales --------------------------------------------------------------------

WIDTHS = [2, 4, 5]  # C = 6: channel 5 is beyond widths[-1], so its scale is always 0
# Scales [1, 1, 0, 0, 0, 0] and, with gates that cancel (0.5 - 0.5 is exactly 0 in every
# dtype), [1, 1, 0, 0, -0.5, 0].
GATE_ROWS = [[1.0, 0.0, 0.0], [1.0, 0.5, -0.5]]

LAYOUTS = {
    "contiguous": lambda t: t,
    "channels_last": lambda t: t.to(memory_format=torch.channels_last),
    # channels innermost without being channels_last: [B, C, S] as a view of [B, S, C]
    "channels_inner_3d": lambda t: t.flatten(2).transpose(1, 2).contiguous().transpose(1, 2),
    # neither channels inner nor outer: walked through a contiguous copy
    "hwc_permuted": lambda t: t.permute(0, 2, 1, 3).contiguous().permute(0, 2, 1, 3),
}


def channel_scales(gates, channels):
    """[..., C] scales of the eager formula sum_i gates[..., i] * mask_i, in float64."""
    masks = torch.zeros(len(WIDTHS), channels, dtype=torch.float64)
    for i, width in enumerate(WIDTHS):
        masks[i, :width] = 1.0
    return gates.double() @ masks


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("per_sample", [False, True], ids=["gates_K", "gates_BK"])
@pytest.mark.parametrize("row", [0, 1], ids=["zero_gates", "cancelling_gates"])
def test_zero_scale_channels_are_zero_even_where_x_is_inf_or_nan(dtype, layout, per_sample, row):
    batch, channels = 2, 6
    gates = torch.tensor(GATE_ROWS if per_sample else GATE_ROWS[row], dtype=dtype)
    scales = channel_scales(gates, channels)  # [C] or [B, C]
    per_sample_scales = scales if per_sample else scales.expand(batch, channels)
    x = torch.randn(batch, channels, 3, 4, dtype=dtype)
    poison = torch.tensor([float("inf"), float("-inf"), float("nan")], dtype=dtype)
    for b in range(batch):
        for c in range(channels):
            if per_sample_scales[b, c] == 0:
                x[b, c] = poison[(b + c) % 3]
    x = LAYOUTS[layout](x)

    out = channel_mask(x, gates, WIDTHS)

    # The documented rule: a channel whose scale is exactly 0 is 0, otherwise x * scale.
    view = per_sample_scales.reshape(batch, channels, *[1] * (x.dim() - 2))
    expected = torch.where(view == 0, torch.zeros((), dtype=torch.float64), x.double() * view)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), expected, **TOL[dtype])
    assert out.stride() == x.stride()


# --- widths -------------------------------------------------------------------------

NOT_INTEGERS = {
    "float tensor": torch.tensor([1.7, 2.9]),
    "float32 numpy array": np.array([1.9, 2.9], np.float32),
    "float64 numpy array": np.array([1.0, 3.0]),
    "float tensor element": [torch.tensor(1.0), 3],
    "numpy float element": [np.float64(1.0), 3],
    "bool tensor": torch.tensor([True, True]),
    "bool numpy array": np.array([True, True]),
    "one-element tensor element": [torch.tensor([1]), 3],
    "None element": [1, None],
    "an int": 3,
    "a 0-d tensor": torch.tensor(3),
    "None": None,
}


@pytest.mark.parametrize("widths", list(NOT_INTEGERS.values()), ids=list(NOT_INTEGERS))
def test_widths_that_are_not_integers_are_refused_not_truncated(widths):
    with pytest.raises(TypeError, match="channel_mask: widths must be a sequence of integers") as info:
        channel_mask(torch.randn(2, 3), torch.ones(2), widths)
    assert "incompatible function arguments" not in str(info.value)


INTEGERS = {
    "int64 tensor": torch.tensor([1, 3]),
    "int32 tensor": torch.tensor([1, 3], dtype=torch.int32),
    "int numpy array": np.array([1, 3]),
    "numpy int elements": [np.int32(1), np.int64(3)],
    "tuple": (1, 3),
    "range": range(1, 4, 2),
}


@pytest.mark.parametrize("widths", list(INTEGERS.values()), ids=list(INTEGERS))
def test_integer_widths_of_any_kind_are_accepted(widths):
    x, gates = torch.randn(2, 3), torch.tensor([0.25, 0.5])
    torch.testing.assert_close(channel_mask(x, gates, widths), x * torch.tensor([0.75, 0.5, 0.5]), rtol=0, atol=0)


@pytest.mark.parametrize("widths", [[1, 2**70], [-(2**70), 2], [1, 2**63]])
def test_widths_beyond_64_bits_are_refused_with_their_index(widths):
    index = next(i for i, w in enumerate(widths) if abs(w) >= 2**63)
    with pytest.raises(RuntimeError, match=rf"widths\[{index}\]=-?\d+ is out of range: .* C=3 channels of x") as info:
        channel_mask(torch.randn(2, 3), torch.ones(2), widths)
    assert "incompatible function arguments" not in str(info.value)


def test_a_width_of_2_pow_63_minus_1_reaches_the_kernel_check():
    with pytest.raises(RuntimeError, match="largest width 9223372036854775807 exceeds the C=3"):
        channel_mask(torch.randn(2, 3), torch.ones(2), [1, 2**63 - 1])


@pytest.mark.parametrize("per_sample", [False, True], ids=["gates_K", "gates_BK"])
def test_gradcheck_float64_channels_last_with_zeroed_channels(per_sample):
    # The generic channels-inner loop with its zero rule stays differentiable: where a
    # scale is 0 the output is constant 0, and the kernel's gradient there is 0 * grad.
    gates = torch.tensor(GATE_ROWS if per_sample else GATE_ROWS[1], dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 6, 2, 3, dtype=torch.float64).to(memory_format=torch.channels_last).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, g: channel_mask(x, g, WIDTHS), (x, gates))
