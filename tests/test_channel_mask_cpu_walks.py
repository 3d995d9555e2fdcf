"""The float32 CPU walks of hwnas.ops.channel_mask, each against an eager float64 formula.

The CPU kernel picks its walk from the shape, the layout and the gates: a whole-sample
walk (gates shared by the batch, C x S small; its backward sums each (sample, channel)
run in registers when S is a multiple of 8), one run per (sample, channel) otherwise,
one row of channels per position for channels_last; each with streaming stores once the
output reaches 4 MiB (``HWNAS_CPU_STREAM_MIN_BYTES`` overrides that), and with AVX2
loops or portable ones (``HWNAS_CPU_PORTABLE=1``). Every case here lands in a different
combination; the last tests run this file again in processes that use the portable
loops and that stream every output.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from hwnas.ops import channel_mask

# (id, shape, widths, channels_last, per-sample gates)
CASES = [
    ("whole-sample", (8, 12, 5, 5), [3, 6, 12], False, False),
    # Runs of a multiple of 8 positions: the whole-sample walk with one broadcast scale
    # and register sums per (sample, channel) run; 64 = 4 x 16, 24 = 16 + 8.
    ("whole-sample-channel-runs", (24, 12, 8, 8), [3, 6, 12], False, False),
    ("whole-sample-channel-runs-16-8", (5, 6, 4, 6), [1, 6], False, False),
    ("whole-sample-streamed", (4200, 16, 4, 4), [4, 8, 16], False, False),
    ("runs-odd-length-streamed", (16, 64, 33, 33), [16, 40, 64], False, False),
    ("runs", (2, 8, 50, 50), [2, 5, 8], False, False),
    ("runs-per-sample-gates", (6, 12, 5, 5), [3, 6, 12], False, True),
    ("channels-last-streamed", (16, 64, 33, 33), [16, 40, 64], True, True),
    ("channels-last", (3, 20, 6, 6), [5, 20], True, False),
]


def reference(x, gates, widths):
    """x * (gates @ M) in float64, M the [K, C] matrix of prefix masks."""
    mask = torch.zeros(len(widths), x.shape[1], dtype=torch.float64)
    for i, w in enumerate(widths):
        mask[i, :w] = 1.0
    scale = gates.double() @ mask  # [C] or [B, C]
    view = (-1, x.shape[1]) + (1,) * (x.dim() - 2) if gates.dim() == 2 else (1, -1) + (1,) * (x.dim() - 2)
    return x.double() * scale.reshape(view)


def make(shape, widths, channels_last, per_sample, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    gates = torch.rand((shape[0], len(widths)) if per_sample else (len(widths),), generator=gen)
    grad = torch.randn(shape, generator=gen)
    if channels_last:
        grad = grad.to(memory_format=torch.channels_last)
    return x, gates, grad


@pytest.mark.parametrize("name,shape,widths,channels_last,per_sample", CASES, ids=[c[0] for c in CASES])
def test_forward(name, shape, widths, channels_last, per_sample):
    x, gates, _ = make(shape, widths, channels_last, per_sample)
    out = channel_mask(x, gates, widths)
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    torch.testing.assert_close(out.double(), reference(x, gates, widths), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("wanted", ["both", "x", "gates"])
@pytest.mark.parametrize("name,shape,widths,channels_last,per_sample", CASES, ids=[c[0] for c in CASES])
def test_backward(name, shape, widths, channels_last, per_sample, wanted):
    x, gates, grad = make(shape, widths, channels_last, per_sample)
    x.requires_grad_(wanted in ("both", "x"))
    gates.requires_grad_(wanted in ("both", "gates"))
    channel_mask(x, gates, widths).backward(grad)
    xd = x.detach().double().requires_grad_(x.requires_grad)
    gd = gates.detach().double().requires_grad_(gates.requires_grad)
    reference(xd, gd, widths).backward(grad.double())
    if x.requires_grad:
        torch.testing.assert_close(x.grad.double(), xd.grad, atol=1e-6, rtol=1e-6)
    if gates.requires_grad:
        # Each gate gradient sums up to numel products of unit-scale values.
        atol = 1e-5 * x.numel() ** 0.5
        torch.testing.assert_close(gates.grad.double(), gd.grad, atol=atol, rtol=1e-5)


@pytest.mark.parametrize("name,shape,widths,channels_last,per_sample", CASES, ids=[c[0] for c in CASES])
def test_channels_no_width_keeps_are_zero_even_where_x_is_nan(name, shape, widths, channels_last, per_sample):
    x, gates, _ = make(shape, widths, channels_last, per_sample)
    x[:, widths[0] :] = float("nan")
    # Only the first (narrowest) width has a non-zero gate: channels past it scale by 0.
    gates[..., 1:] = 0.0
    out = channel_mask(x, gates, widths)
    assert torch.isfinite(out).all()
    assert (out[:, widths[0] :] == 0).all()
    torch.testing.assert_close(out[:, : widths[0]].double(), reference(x[:, : widths[0]], gates[..., :1], widths[:1]))


def test_misaligned_input_is_handled():
    # x starting one float past an aligned address: the vector loops' loads are
    # unaligned, and streamed stores still need an aligned head.
    base = torch.randn(16 * 64 * 25 * 25 + 1)
    x = base[1:].view(16, 64, 25, 25)
    gates = torch.rand(3)
    torch.testing.assert_close(
        channel_mask(x, gates, [16, 40, 64]).double(), reference(x, gates, [16, 40, 64]), atol=1e-6, rtol=1e-6
    )


def test_misaligned_whole_sample_runs_backward():
    # The register-sum backward with grad and x one float off alignment.
    base = torch.randn(2, 24 * 12 * 64 + 1, dtype=torch.float64).float()
    x = base[0, 1:].view(24, 12, 8, 8).requires_grad_()
    grad = base[1, 1:].view(24, 12, 8, 8)
    gates = torch.rand(3, requires_grad=True)
    channel_mask(x, gates, [3, 6, 12]).backward(grad)
    xr, gr = x.detach().double().requires_grad_(), gates.detach().double().requires_grad_()
    reference(xr, gr, [3, 6, 12]).backward(grad.double())
    torch.testing.assert_close(x.grad.double(), xr.grad, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(gates.grad.double(), gr.grad, atol=1e-4, rtol=1e-5)


@pytest.mark.skipif("HWNAS_CPU_WALKS_CHILD" in os.environ, reason="already a child run")
@pytest.mark.parametrize(
    "env", [{"HWNAS_CPU_PORTABLE": "1"}, {"HWNAS_CPU_STREAM_MIN_BYTES": "0"}], ids=["portable", "all-streamed"]
)
def test_again_in_a_fresh_process(env):
    # The kernel reads these variables once, at its first call: hence a new process.
    child_env = dict(os.environ, HWNAS_CPU_WALKS_CHILD="1", **env)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        env=child_env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
