"""hwnas.ops.weighted_sum against the eager formula sum_i w[..., i] * x_i."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnas.ops import weighted_sum

TOL = {
    torch.float64: dict(atol=1e-12, rtol=1e-12),
    torch.float32: dict(atol=1e-5, rtol=1e-5),
    torch.bfloat16: dict(atol=2e-2, rtol=2e-2),
    torch.float16: dict(atol=2e-3, rtol=2e-3),
}


def eager_reference(branches, weights):
    """The formula in float64, broadcasting per-sample weights over the trailing dims."""
    out = torch.zeros(branches[0].shape, dtype=torch.float64)
    for i, x in enumerate(branches):
        w = weights[..., i].double()
        if weights.dim() == 2:
            w = w.reshape((-1,) + (1,) * (x.dim() - 1))
        out = out + w * x.double()
    return out


def make_branches(shape, n, dtype=torch.float32, requires_grad=False):
    return [torch.randn(shape, dtype=dtype).requires_grad_(requires_grad) for _ in range(n)]


def make_weights(n, batch, per_sample, dtype=torch.float32, requires_grad=False):
    shape = (batch, n) if per_sample else (n,)
    return torch.randn(shape, dtype=dtype).requires_grad_(requires_grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize(
    "shape", [(2, 3, 5, 7), (4, 16, 9, 9), (3, 5000), (2, 1, 1, 1), (5,), (2, 3, 4, 5, 6)]
)
@pytest.mark.parametrize("n", [1, 3, 9])
def test_forward_matches_reference(dtype, per_sample, shape, n):
    branches = make_branches(shape, n, dtype)
    weights = make_weights(n, shape[0], per_sample, dtype)
    out = weighted_sum(branches, weights)
    assert out.shape == branches[0].shape and out.dtype == dtype
    torch.testing.assert_close(out.double(), eager_reference(branches, weights), **TOL[dtype])


def test_scalar_branches():
    branches = [torch.tensor(2.0), torch.tensor(-3.0)]
    out = weighted_sum(branches, torch.tensor([0.5, 2.0]))
    assert out.shape == () and out.item() == pytest.approx(-5.0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_with_float32_weights(dtype):
    branches = make_branches((4, 8, 6, 6), 5, dtype)
    weights = torch.softmax(torch.randn(5), 0)
    out = weighted_sum(branches, weights)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), eager_reference(branches, weights), **TOL[dtype])


def test_bfloat16_accumulates_in_float32():
    # 1 + 9 * 2^-9: in bfloat16 arithmetic each partial sum 1 + 2^-9 rounds back to 1,
    # so a bfloat16 accumulator returns 1.0; float32 accumulation returns ~1.0176,
    # which rounds to the bfloat16 neighbour 1.015625.
    n = 10
    branches = [torch.full((4,), 1.0, dtype=torch.bfloat16)] + [
        torch.full((4,), 2.0**-9, dtype=torch.bfloat16) for _ in range(n - 1)
    ]
    out = weighted_sum(branches, torch.ones(n, dtype=torch.bfloat16))
    expected = torch.tensor(1.0 + 9 * 2.0**-9).to(torch.bfloat16)
    assert torch.equal(out, expected.expand(4))
    assert out[0].item() != 1.0


@pytest.mark.parametrize("per_sample", [False, True])
def test_channels_last_branches_keep_layout(per_sample):
    branches = [x.to(memory_format=torch.channels_last) for x in make_branches((3, 8, 5, 5), 4)]
    weights = make_weights(4, 3, per_sample)
    out = weighted_sum(branches, weights)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out.double(), eager_reference(branches, weights), **TOL[torch.float32])


@pytest.mark.parametrize("per_sample", [False, True])
def test_non_contiguous_and_mixed_layouts(per_sample):
    base = make_branches((3, 6, 10, 8), 3)
    branches = [
        base[0][:, :, ::2, :],  # strided slice
        base[1].transpose(2, 3).contiguous().transpose(2, 3)[:, :, ::2, :],  # other strides
        base[2][:, :, 1::2, :].to(memory_format=torch.channels_last),
    ]
    weights = make_weights(3, 3, per_sample)
    out = weighted_sum(branches, weights)
    torch.testing.assert_close(out.double(), eager_reference(branches, weights), **TOL[torch.float32])


def test_batch_not_outermost_with_per_sample_weights():
    # A layout in which samples are interleaved in memory (the batch dim is not outermost).
    branches = [torch.randn(5, 4, 3).permute(1, 0, 2) for _ in range(2)]  # shape [4, 5, 3]
    weights = torch.randn(4, 2)
    out = weighted_sum(branches, weights)
    torch.testing.assert_close(out.double(), eager_reference(branches, weights), **TOL[torch.float32])


@pytest.mark.parametrize("per_sample", [False, True])
def test_empty_tensors(per_sample):
    branches = make_branches((0, 3, 4), 3, requires_grad=True)
    weights = make_weights(3, 0, per_sample, requires_grad=True)
    out = weighted_sum(branches, weights)
    assert out.shape == (0, 3, 4)
    out.sum().backward()
    assert all(b.grad.shape == (0, 3, 4) for b in branches)
    assert torch.equal(weights.grad, torch.zeros_like(weights))


def test_zero_weight_branch_is_not_read():
    # NaN in a zero-weight branch would poison an eager sum (0 * NaN = NaN); the fused
    # op never reads that branch, which is what lets hard samples skip work.
    good = torch.randn(2, 3, 4)
    poisoned = torch.full((2, 3, 4), float("nan"))
    out = weighted_sum([poisoned, good, poisoned], torch.tensor([0.0, 2.0, 0.0]))
    torch.testing.assert_close(out, 2.0 * good)


def test_zero_weight_per_sample():
    x = [torch.full((2, 3), float("nan")), torch.ones(2, 3)]
    weights = torch.tensor([[0.0, 1.0], [0.0, 3.0]])
    out = weighted_sum(x, weights)
    torch.testing.assert_close(out, torch.tensor([[1.0] * 3, [3.0] * 3]))


def test_all_zero_weights_give_zeros():
    out = weighted_sum([torch.full((3,), float("inf"))] * 2, torch.zeros(2))
    assert torch.equal(out, torch.zeros(3))


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_gradcheck_float64(per_sample, channels_last):
    branches = make_branches((2, 3, 4, 5), 3, torch.float64)
    if channels_last:
        branches = [b.to(memory_format=torch.channels_last) for b in branches]
    branches = [b.requires_grad_() for b in branches]
    weights = make_weights(3, 2, per_sample, torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w, *xs: weighted_sum(xs, w), (weights, *branches))


def test_gradients_match_eager_autograd():
    branches = make_branches((4, 6, 7, 7), 5, requires_grad=True)
    weights = torch.softmax(torch.randn(5), 0).requires_grad_()
    grad_out = torch.randn(4, 6, 7, 7).to(memory_format=torch.channels_last)  # another layout
    weighted_sum(branches, weights).backward(grad_out)
    fused = [b.grad.clone() for b in branches], weights.grad.clone()
    for t in branches + [weights]:
        t.grad = None
    sum(weights[i] * b for i, b in enumerate(branches)).backward(grad_out)
    for got, want in zip(fused[0], [b.grad for b in branches]):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(fused[1], weights.grad, atol=1e-4, rtol=1e-5)


def test_only_weights_need_grad():
    branches = make_branches((3, 4, 5), 3)
    weights = make_weights(3, 3, True, requires_grad=True)
    weighted_sum(branches, weights).sum().backward()
    expected = torch.stack([b.sum(dim=(1, 2)) for b in branches], dim=1)
    torch.testing.assert_close(weights.grad, expected)


def test_only_branches_need_grad_frees_branches():
    # With constant weights the branches are not saved for backward.
    branches = make_branches((3, 4), 2, requires_grad=True)
    weights = torch.tensor([0.25, 0.75])
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = weighted_sum(branches, weights)
    assert len(saved) == 1 and saved[0] is weights
    out.sum().backward()
    torch.testing.assert_close(branches[0].grad, torch.full((3, 4), 0.25))
    torch.testing.assert_close(branches[1].grad, torch.full((3, 4), 0.75))


def test_opcheck():
    for per_sample in (False, True):
        branches = make_branches((2, 3, 4, 4), 3, requires_grad=True)
        weights = make_weights(3, 2, per_sample, requires_grad=True)
        torch.library.opcheck(torch.ops.hwnas.weighted_sum.default, (branches, weights))
    grad = torch.randn(2, 3, 4)
    branches = make_branches((2, 3, 4), 3)
    torch.library.opcheck(
        torch.ops.hwnas.weighted_sum_backward.default, (grad, branches, torch.randn(3), True, True)
    )
    torch.library.opcheck(
        torch.ops.hwnas.weighted_sum_backward.default, (grad, [], torch.randn(2, 3), True, False)
    )


def test_torch_compile_fullgraph():
    def mixed(xs, alpha):
        return torch.relu(weighted_sum(xs, torch.softmax(alpha, -1)))

    compiled = torch.compile(mixed, fullgraph=True, backend="aot_eager")
    branches = make_branches((2, 4, 6, 6), 3, requires_grad=True)
    alpha = torch.randn(3, requires_grad=True)
    out = compiled(branches, alpha)
    torch.testing.assert_close(out, mixed(branches, alpha))
    out.sum().backward()
    grad_compiled = alpha.grad.clone()
    alpha.grad = None
    mixed(branches, alpha).sum().backward()
    torch.testing.assert_close(grad_compiled, alpha.grad)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(0, 7), min_size=1, max_size=4),
    n=st.integers(1, 6),
    per_sample=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    zero_mask=st.integers(0, 63),
)
def test_random_shapes_hypothesis(shape, n, per_sample, dtype, zero_mask):
    branches = make_branches(tuple(shape), n, dtype, requires_grad=True)
    weights = make_weights(n, shape[0], per_sample, dtype)
    for i in range(n):  # exercise the zero-weight skip on random subsets
        if zero_mask >> i & 1:
            weights[..., i] = 0.0
    weights.requires_grad_()
    out = weighted_sum(branches, weights)
    torch.testing.assert_close(out.double(), eager_reference(branches, weights), **TOL[dtype])
    grad = torch.randn_like(out)
    out.backward(grad)
    for i, b in enumerate(branches):
        w = weights[..., i].detach()
        if per_sample:
            w = w.reshape((-1,) + (1,) * (len(shape) - 1))
        torch.testing.assert_close(b.grad, (w * grad).to(dtype), **TOL[dtype])
    # Sum over every dim but the batch (per-sample weights) or over all dims.
    per_branch = [(grad.double() * b.double()) for b in branches]
    if per_sample:
        per_branch = [p.reshape(shape[0], *shape[1:], 1).flatten(1).sum(1) for p in per_branch]
    else:
        per_branch = [p.sum() for p in per_branch]
    expected_w = torch.stack(per_branch, -1)
    torch.testing.assert_close(weights.grad.double(), expected_w, atol=1e-4, rtol=1e-4)


# --- bad input -----------------------------------------------------------------

BAD_INPUTS = [
    ("no branches", lambda: ([], torch.ones(0)), "at least one branch"),
    ("N mismatch", lambda: ([torch.ones(2, 3)] * 3, torch.ones(2)), "N=2"),
    ("shape mismatch", lambda: ([torch.ones(2, 3), torch.ones(2, 4)], torch.ones(2)), "same shape"),
    (
        "dtype mismatch",
        lambda: ([torch.ones(2, 3), torch.ones(2, 3, dtype=torch.float64)], torch.ones(2)),
        "same dtype",
    ),
    ("weights rank 0", lambda: ([torch.ones(2, 3)], torch.tensor(1.0)), "shape [N]"),
    ("weights rank 3", lambda: ([torch.ones(2, 3)], torch.ones(2, 1, 1)), "shape [N]"),
    ("integer weights", lambda: ([torch.ones(2, 3)], torch.ones(1, dtype=torch.int64)), "dtype"),
    ("float64 weights, float32 branches", lambda: ([torch.ones(2)], torch.ones(1, dtype=torch.float64)), "dtype"),
    ("integer branches", lambda: ([torch.ones(2, dtype=torch.int32)], torch.ones(1)), "float32, float64"),
    ("per-sample batch mismatch", lambda: ([torch.ones(2, 3)], torch.ones(4, 1)), "B=4"),
    ("device mismatch", lambda: ([torch.ones(2), torch.ones(2, device="meta")], torch.ones(2)), "same device"),
]


@pytest.mark.parametrize("name,make,message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_clear_error(name, make, message):
    branches, weights = make()
    with pytest.raises(RuntimeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        weighted_sum(branches, weights)


def test_backward_bad_input():
    with pytest.raises(RuntimeError, match="needs the 3 branches"):
        torch.ops.hwnas.weighted_sum_backward(torch.ones(2), [torch.ones(2)], torch.ones(3), True, True)
