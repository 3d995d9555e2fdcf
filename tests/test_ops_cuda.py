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

def _assert_channel_mask_matches_cpu(x, gates, widths):
    """channel_mask on the GPU gives the CPU's output and gradients (x, gates on the CPU)."""

    def fn(x, gates):
        return channel_mask(x, gates, widths)

    cpu_out, cpu_grads = _grads(fn, [x, gates])
    cuda_out, cuda_grads = _grads(fn, [x.cuda(), gates.cuda()])
    torch.testing.assert_close(cuda_out, cpu_out)
    for got, want in zip(cuda_grads, cpu_grads):
        torch.testing.assert_close(got, want)



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
    _assert_channel_mask_matches_cpu(x, gates, widths)


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


def test_weighted_sum_cuda_float16_many_branches_rounds_once():
    # Above 16 branches the CUDA forward runs several launches; the running sum must stay
    # in float32 between them, as the CPU keeps it, and not be rounded to float16 each time.
    # 1 plus a quarter of float16's unit at 1 (2**-10) in each of the 3 launches: rounded
    # once, 1 + 3 * 2**-12 is 1 + 2**-10; rounded after each launch, every quarter is lost.
    n = 48
    xs = [torch.zeros(2, 3, 33, dtype=torch.float16) for _ in range(n)]
    xs[0].fill_(1.0)
    for i in (1, 17, 33):
        xs[i].fill_(2.0 ** -12)
    w = torch.ones(n, dtype=torch.float32)
    want = torch.full((2, 3, 33), 1.0 + 2.0 ** -10, dtype=torch.float16)
    assert torch.equal(weighted_sum(xs, w), want)  # the CPU path rounds once
    assert torch.equal(weighted_sum([x.cuda() for x in xs], w.cuda()).cpu(), want)


@pytest.mark.parametrize("per_sample", [False, True])
def test_weighted_sum_cuda_weight_grad_is_deterministic(per_sample):
    xs = [torch.randn(8, 64, 32, 32, device="cuda") for _ in range(5)]
    w = torch.randn((8, 5) if per_sample else (5,), device="cuda")
    grad = torch.randn_like(xs[0])
    runs = [torch.ops.hwnas.weighted_sum_backward(grad, xs, w, True, True)[1] for _ in range(3)]
    assert all(torch.equal(r, runs[0]) for r in runs)


def test_weighted_sum_backward_cuda_refuses_grad_on_another_device():
    xs = [torch.randn(2, 3, device="cuda") for _ in range(2)]
    w = torch.randn(2, device="cuda")
    with pytest.raises(RuntimeError, match="grad is on cpu but the branches are on cuda:0"):
        torch.ops.hwnas.weighted_sum_backward(torch.randn(2, 3), xs, w, True, True)


@pytest.mark.parametrize("k", [3, 70])  # 70 > 64 widths go through a device buffer
def test_channel_mask_cuda_many_widths(k):
    x = torch.randn(2, 80, 3, dtype=torch.float64)
    widths = list(range(80 - k + 1, 81))
    gates = torch.softmax(torch.randn(k, dtype=torch.float64), -1)
    _assert_channel_mask_matches_cpu(x, gates, widths)


def test_channel_mask_backward_cuda_more_rows_than_blocks():
    # 1100 x 64 = 70400 (sample, channel) rows: more than the 65535 blocks of the grid, so
    # blocks take several rows each.
    x = torch.randn(1100, 64, 1, dtype=torch.float64)
    gates = torch.softmax(torch.randn(3, dtype=torch.float64), -1)
    _assert_channel_mask_matches_cpu(x, gates, [16, 32, 64])


def test_backward_cuda_refuses_a_cpu_grad_when_only_another_argument_is_on_the_gpu():
    # Without the gate (weight) gradient the shared checks never compare grad with x (the
    # branches); the dispatcher still sends the call to the CUDA kernel.
    with pytest.raises(RuntimeError, match="grad is on cpu but x is on cuda:0"):
        torch.ops.hwnas.channel_mask_backward(torch.ones(2, 4, 3), torch.ones(2, 4, 3, device="cuda"),
                                              torch.tensor([0.5, 0.5]), [2, 4], True, False)
    with pytest.raises(RuntimeError, match="grad and the weights are on cpu but a branch is on a GPU"):
        torch.ops.hwnas.weighted_sum_backward(torch.ones(2, 3), [torch.ones(2, 3, device="cuda")] * 2,
                                              torch.tensor([0.5, 0.5]), True, False)


def test_channel_mask_cuda_refuses_wide_widths_in_graph_capture():
    x = torch.randn(2, 80, 3, device="cuda")
    gates = torch.softmax(torch.randn(70, device="cuda"), -1)
    widths = list(range(11, 81))
    channel_mask(x, gates, widths)  # warm-up outside capture
    graph = torch.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="70 widths cannot be captured in a CUDA graph"):
        with torch.cuda.graph(graph):
            channel_mask(x, gates, widths)


def test_channel_mask_backward_cuda_device_mismatch_message():
    gates = torch.tensor([0.5, 0.5], device="cuda")
    with pytest.raises(RuntimeError, match="gates are on cuda:0 but x is on cpu"):
        torch.ops.hwnas.channel_mask_backward(torch.ones(2, 4, 3), torch.ones(2, 4, 3), gates, [2, 4], True, True)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_ops_run_on_the_inputs_device():
    # The kernels guard the inputs' device: tensors on cuda:1 while cuda:0 is current.
    dev = torch.device("cuda:1")
    xs = [torch.randn(2, 8, 5, 5, device=dev, requires_grad=True) for _ in range(3)]
    w = torch.randn(3, device=dev, requires_grad=True)
    gates = torch.randn(2, device=dev, requires_grad=True)
    filt = torch.randn(8, 1, 3, 3, device=dev, requires_grad=True)
    out = depthwise_conv2d(channel_mask(weighted_sum(xs, w), gates, [4, 8]), filt, 1, 1)
    out.sum().backward()
    cpu = [t.detach().cpu().requires_grad_() for t in (*xs, w, gates, filt)]
    want = depthwise_conv2d(channel_mask(weighted_sum(cpu[:3], cpu[3]), cpu[4], [4, 8]), cpu[5], 1, 1)
    want.sum().backward()
    torch.testing.assert_close(out.detach().cpu(), want.detach(), atol=1e-4, rtol=1e-4)
    for got, ref in zip((*xs, w, gates, filt), cpu):
        torch.testing.assert_close(got.grad.cpu(), ref.grad, atol=1e-4, rtol=1e-4)
