"""weighted_sum's fake kernels give the strides the CPU kernels give, for every layout."""

from __future__ import annotations

import pytest
import torch

from hwnas.ops import weighted_sum


def channels_last(t):
    return t.to(memory_format=torch.channels_last)


def odd_size1_stride(t):
    # [1, C, H, W] whose size-1 batch has a stride no contiguous tensor gets by default:
    # still contiguous, so .contiguous() keeps that stride, as the kernels do.
    return t.permute(1, 0, 2, 3).contiguous().permute(1, 0, 2, 3)


def f64(*shape):
    return torch.randn(*shape, dtype=torch.float64)


# name: (branches, batch): the branches share a dense layout, or they do not and the
# kernels compute in (and return) a contiguous layout.
LAYOUTS = {
    "contiguous": lambda: ([f64(2, 3, 4, 5) for _ in range(3)], 2),
    "channels_last": lambda: ([channels_last(f64(2, 3, 4, 5)) for _ in range(3)], 2),
    "mixed": lambda: ([channels_last(f64(2, 3, 4, 5)), f64(2, 3, 4, 5), channels_last(f64(2, 3, 4, 5))], 2),
    "contiguous_then_channels_last": lambda: ([f64(2, 3, 4, 5), channels_last(f64(2, 3, 4, 5))], 2),
    # Shared, but the batch is not outermost: per-sample weights need a contiguous copy.
    "transposed": lambda: ([f64(3, 4).t() for _ in range(2)], 4),
    "transposed_mixed": lambda: ([f64(3, 4).t(), f64(4, 3)], 4),
    "strided_slice": lambda: ([f64(2, 6)[:, ::2] for _ in range(2)], 2),
    "size1_batch_mixed": lambda: ([odd_size1_stride(f64(1, 3, 2, 2)), channels_last(f64(1, 3, 2, 2))], 1),
}


def weights_for(n, batch, per_sample):
    return f64(*((batch, n) if per_sample else (n,)))


@pytest.mark.parametrize("per_sample", [False, True], ids=["weights_N", "weights_BN"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_opcheck_forward(layout, per_sample):
    branches, batch = LAYOUTS[layout]()
    branches = [b.requires_grad_() for b in branches]
    weights = weights_for(len(branches), batch, per_sample).requires_grad_()
    torch.library.opcheck(torch.ops.hwnas.weighted_sum.default, (branches, weights))


BACKWARD_LAYOUTS = [  # (branches, grad)
    ("contiguous", "channels_last"),
    ("channels_last", "contiguous"),
    ("channels_last", "transposed"),
    ("mixed", "channels_last"),
    ("mixed", "transposed"),
    ("size1_batch_mixed", "channels_last"),
]


@pytest.mark.parametrize("wanted", [(True, True), (True, False), (False, True)], ids=["both", "branches", "weights"])
@pytest.mark.parametrize("per_sample", [False, True], ids=["weights_N", "weights_BN"])
@pytest.mark.parametrize("layout,grad_layout", BACKWARD_LAYOUTS, ids=[f"{b}-grad_{g}" for b, g in BACKWARD_LAYOUTS])
def test_opcheck_backward(layout, grad_layout, per_sample, wanted):
    branches, batch = LAYOUTS[layout]()
    grad = f64(*branches[0].shape)
    if grad_layout == "channels_last":
        grad = channels_last(grad)
    elif grad_layout == "transposed":
        grad = grad.transpose(2, 3).contiguous().transpose(2, 3)
    weights = weights_for(len(branches), batch, per_sample)
    branches_need_grad, weights_need_grad = wanted
    args = (grad, branches if weights_need_grad else [], weights, branches_need_grad, weights_need_grad)
    torch.library.opcheck(torch.ops.hwnas.weighted_sum_backward.default, args)


@pytest.mark.parametrize("layout", ["mixed", "transposed_mixed"])
def test_strides_agree_with_the_fake_kernel_under_fake_tensors(layout):
    # The same strides from the CPU kernel and from tracing, forward and backward.
    from torch._subclasses.fake_tensor import FakeTensorMode

    branches, batch = LAYOUTS[layout]()
    for per_sample in (False, True):
        weights = weights_for(len(branches), batch, per_sample)
        grad = f64(*branches[0].shape)
        eager = torch.ops.hwnas.weighted_sum.default(branches, weights)
        eager_back = torch.ops.hwnas.weighted_sum_backward.default(grad, branches, weights, True, True)
        with FakeTensorMode(allow_non_fake_inputs=True) as mode:
            fake_args = [mode.from_tensor(b) for b in branches], mode.from_tensor(weights)
            fake = torch.ops.hwnas.weighted_sum.default(*fake_args)
            fake_back = torch.ops.hwnas.weighted_sum_backward.default(
                mode.from_tensor(grad), *fake_args, True, True
            )
        assert fake.stride() == eager.stride()
        assert [g.stride() for g in fake_back[0]] == [g.stride() for g in eager_back[0]]
        assert fake_back[1].stride() == eager_back[1].stride()


def test_torch_compile_fullgraph_with_mixed_layouts():
    def mixed(a, b, w):
        return weighted_sum([a, b], w) * 2.0

    # Inductor (the default backend) checks the strides the fake kernel promised against
    # those the kernel returns; aot_eager does not.
    compiled = torch.compile(mixed, fullgraph=True)
    a = channels_last(torch.randn(2, 3, 4, 5)).requires_grad_()
    b = torch.randn(2, 3, 4, 5, requires_grad=True)
    for w in (torch.randn(2, requires_grad=True), torch.randn(2, 2, requires_grad=True)):
        out = compiled(a, b, w)
        expected = mixed(a, b, w)
        assert out.stride() == expected.stride()
        torch.testing.assert_close(out, expected)
        grad = torch.randn_like(out)
        got = torch.autograd.grad(out, (a, b, w), grad)
        want = torch.autograd.grad(expected, (a, b, w), grad)
        for g, e in zip(got, want):
            torch.testing.assert_close(g, e)
