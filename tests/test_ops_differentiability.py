"""The fused ops are differentiable once, in reverse mode, and say so.

Under ``create_graph=True`` their first derivatives equal those of an eager PyTorch
formula; differentiating those gradients again, or feeding forward-mode dual tensors,
raises instead of returning a second derivative with missing terms.
"""

from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F

from hwnas.ops import channel_mask, depthwise_conv2d, weighted_sum


def _weighted_sum_case():
    torch.manual_seed(0)
    branches = [torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    weights = torch.randn(3, dtype=torch.float64, requires_grad=True)

    def native(*t):
        return weighted_sum(list(t[:-1]), t[-1])

    def eager(*t):
        return sum(w * b for w, b in zip(t[-1], t[:-1]))

    return native, eager, [*branches, weights]


def _channel_mask_case():
    torch.manual_seed(1)
    x = torch.randn(2, 6, 3, 3, dtype=torch.float64, requires_grad=True)
    gates = torch.randn(3, dtype=torch.float64, requires_grad=True)
    widths = [2, 4, 6]

    def eager(x, gates):
        # channel c is scaled by the sum of the gates whose width covers it
        scale = torch.stack([gates[[i for i, w in enumerate(widths) if c < w]].sum() for c in range(6)])
        return x * scale.view(1, -1, 1, 1)

    return (lambda x, g: channel_mask(x, g, widths)), eager, [x, gates]


def _depthwise_case():
    torch.manual_seed(2)
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    return (lambda x, w: depthwise_conv2d(x, w, 2, 1, 1)), (lambda x, w: F.conv2d(x, w, None, 2, 1, 1, 4)), [x, w]


CASES = {"weighted_sum": _weighted_sum_case, "channel_mask": _channel_mask_case, "depthwise_conv2d": _depthwise_case}


def _first_derivatives(fn, inputs):
    out = fn(*inputs)
    probe = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape)
    return torch.autograd.grad((out * probe).sum(), inputs, create_graph=True)


@pytest.mark.parametrize("name", list(CASES))
def test_first_derivative_under_create_graph_matches_eager(name):
    native, eager, inputs = CASES[name]()
    got = _first_derivatives(native, inputs)
    want = _first_derivatives(eager, inputs)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("name", list(CASES))
def test_second_derivative_raises(name):
    native, _, inputs = CASES[name]()
    grads = _first_derivatives(native, inputs)
    assert all(g.requires_grad for g in grads)  # a graph was asked for and recorded
    penalty = sum(g.square().sum() for g in grads)
    with pytest.raises(RuntimeError, match=f"hwnas::{name}: a second derivative .* is not supported"):
        penalty.backward()


@pytest.mark.parametrize("name", list(CASES))
def test_second_derivative_towards_any_one_input_raises(name):
    # torch.autograd.grad(g, w) follows only the paths from g to w: the error has to lie on
    # every one of them, or autograd reports w unused (a zero with materialize_grads).
    native, _, inputs = CASES[name]()
    for g in _first_derivatives(native, inputs):
        for x in inputs:
            with pytest.raises(RuntimeError, match=f"hwnas::{name}: a second derivative .* is not supported"):
                torch.autograd.grad(g.sum(), x, retain_graph=True, materialize_grads=True)


@pytest.mark.parametrize("name", list(CASES))
def test_second_derivative_elsewhere_in_the_graph_still_works(name):
    # A gradient penalty on another part of the model: the op's backward runs under
    # create_graph=True, its gradients are right, and the other part's second
    # derivative (d2/da2 of a^3 = 6a) is exact as long as it does not pass through the op.
    native, eager, inputs = CASES[name]()
    a = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    loss = native(*inputs).sum() + a ** 3
    *op_grads, da = torch.autograd.grad(loss, [*inputs, a], create_graph=True)
    want = torch.autograd.grad(eager(*inputs).sum(), inputs)
    for g, w in zip(op_grads, want):
        torch.testing.assert_close(g.detach(), w, atol=1e-12, rtol=1e-12)
    (dda,) = torch.autograd.grad(da, a)
    torch.testing.assert_close(dda, 6 * a.detach())


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("requires_grad", [False, True], ids=["no_grad_inputs", "grad_inputs"])
def test_forward_mode_dual_tensors_are_refused(name, requires_grad):
    native, _, inputs = CASES[name]()
    inputs = [t.detach().requires_grad_(requires_grad) for t in inputs]
    with fwAD.dual_level():
        duals = [fwAD.make_dual(t, torch.ones_like(t)) for t in inputs]
        with pytest.raises(RuntimeError, match=f"hwnas::{name}: forward-mode AD"):
            native(*duals)
