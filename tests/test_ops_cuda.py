"""The CUDA kernels against the CPU kernels (which are tested against eager formulas).

Skipped on machines without a CUDA device (conftest's needs_cuda marker).
"""

from __future__ import annotations

import pytest
import torch

from hwnas.ops import channel_mask, depthwise_conv2d, weighted_sum

pytestmark = pytest.mark.needs_cuda


def _grads(fn, inputs):
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*inputs)
    grad = torch.arange(out.numel(), dtype=out.dtype, device=out.device).reshape(out.shape).sin()
    out.backward(grad)
    return out.detach().cpu(), [t.grad.cpu() for t in inputs]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("n", [3, 20])  # 20 > 16 branches exercises several launches
@pytest.mark.parametrize("channels_last", [False, True])
def test_weighted_sum_cuda_matches_cpu(dtype, per_sample, n, channels_last):
    xs = [torch.randn(4, 6, 5, 7, dtype=dtype) for _ in range(n)]
    if channels_last:
        xs = [x.to(memory_format=torch.channels_last) for x in xs]
    w = torch.randn((4, n) if per_sample else (n,), dtype=dtype)
    w[..., 0] = 0.0

    def fn(w, *xs):
        return weighted_sum(xs, w)

    cpu_out, cpu_grads = _grads(fn, [w, *xs])
    cuda_out, cuda_grads = _grads(fn, [w.cuda(), *[x.cuda() for x in xs]])
    tol = dict(atol=2e-2, rtol=2e-2) if dtype == torch.bfloat16 else {}
    torch.testing.assert_close(cuda_out, cpu_out, **tol)
    for got, want in zip(cuda_grads, cpu_grads):
        torch.testing.assert_close(got, want, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_channel_mask_cuda_matches_cpu(dtype, per_sample, channels_last):
    x = torch.randn(3, 16, 5, 5, dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    widths = [4, 8, 12]
    gates = torch.softmax(torch.randn((3, 3) if per_sample else (3,), dtype=dtype), -1)

    def fn(x, gates):
        return channel_mask(x, gates, widths)

    cpu_out, cpu_grads = _grads(fn, [x, gates])
    cuda_out, cuda_grads = _grads(fn, [x.cuda(), gates.cuda()])
    torch.testing.assert_close(cuda_out, cpu_out)
    for got, want in zip(cuda_grads, cpu_grads):
        torch.testing.assert_close(got, want)


def test_cuda_opcheck():
    xs = [torch.randn(2, 3, 4, device="cuda", requires_grad=True) for _ in range(3)]
    w = torch.randn(3, device="cuda", requires_grad=True)
    torch.library.opcheck(torch.ops.hwnas.weighted_sum.default, (xs, w))
    x = torch.randn(2, 8, 3, device="cuda", requires_grad=True)
    g = torch.randn(2, device="cuda", requires_grad=True)
    torch.library.opcheck(torch.ops.hwnas.channel_mask.default, (x, g, [4, 8]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("geometry", [((3, 3), 1, 1, 1), ((5, 5), 2, 2, 1), ((3, 5), 1, (1, 2), 2)])
def test_depthwise_conv2d_cuda_matches_cpu(dtype, channels_last, geometry):
    kernel, stride, padding, dilation = geometry
    x = torch.randn(3, 37, 9, 8, dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    w = torch.randn(37, 1, *kernel, dtype=dtype)

    def fn(x, w):
        return depthwise_conv2d(x, w, stride, padding, dilation)

    cpu_out, cpu_grads = _grads(fn, [x, w])
    cuda_out, cuda_grads = _grads(fn, [x.cuda(), w.cuda()])
    torch.testing.assert_close(cuda_out, cpu_out)
    for got, want in zip(cuda_grads, cpu_grads):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_depthwise_conv2d_cuda_opcheck():
    x = torch.randn(2, 6, 5, 5, device="cuda", requires_grad=True)
    w = torch.randn(6, 1, 3, 3, device="cuda", requires_grad=True)
    torch.library.opcheck(torch.ops.hwnas.depthwise_conv2d.default, (x, w, [2, 1], [1, 1], [1, 1]))


@pytest.mark.parametrize("shape", [(0, 5, 6, 6), (2, 0, 6, 6)], ids=["no_batch", "no_channels"])
def test_depthwise_conv2d_cuda_empty(shape):
    x = torch.randn(*shape, device="cuda", requires_grad=True)
    w = torch.randn(shape[1], 1, 3, 3, device="cuda", requires_grad=True)
    out = depthwise_conv2d(x, w, 1, 1)
    out.sum().backward()
    assert out.shape == shape and x.grad.shape == x.shape
    assert torch.equal(w.grad, torch.zeros_like(w))


def test_depthwise_conv2d_cuda_large_grid():
    # more output elements than one pass of the capped grid (65535 blocks x 256 threads)
    x = torch.randn(1, 8, 2100, 1100, device="cuda")
    w = torch.randn(8, 1, 3, 3, device="cuda")
    torch.testing.assert_close(depthwise_conv2d(x, w, 1, 1).cpu(), depthwise_conv2d(x.cpu(), w.cpu(), 1, 1),
                               atol=1e-4, rtol=1e-4)


def test_depthwise_conv2d_device_mismatch_message():
    with pytest.raises(RuntimeError, match="weight is on cpu but x is on cuda:0; move them to the same device"):
        depthwise_conv2d(torch.ones(2, 3, 4, 4, device="cuda"), torch.ones(3, 1, 3, 3), 1, 1)
