"""Public fused operators of hwnas, with their autograd and fake (meta) kernels.

The kernels are registered in C++ (``csrc/ops``) as ``torch.ops.hwnas.*``; this module
adds what PyTorch needs to differentiate them and to trace them under
``torch.compile``, and wraps them in documented Python functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hwnas import _extension  # noqa: F401  (registers the hwnas:: operators)

__all__ = ["weighted_sum"]


def weighted_sum(branches: Sequence[Tensor], weights: Tensor) -> Tensor:
    """Weighted sum of candidate-block outputs, fused into one pass over memory.

    ``out = sum_i weights[..., i] * branches[i]``: the mixture computed by an FBNet
    (Gumbel-softmax), DARTS (softmax) or single-path supernet layer. A branch whose
    weight is exactly zero is not read (its values, even NaN, do not reach the
    output), so a hard one-hot sample costs one branch, not N.

    Args:
        branches: N tensors of one shape ``[B, ...]`` (any rank, any dense layout
            such as channels_last), dtype float32, float64, bfloat16 or float16, on
            one device.
        weights: ``[N]`` (one mixture for the whole batch) or ``[B, N]`` (one mixture
            per sample). Same dtype as the branches, or float32 with bfloat16/float16
            branches; accumulation is in float32 (float64 for float64).

    Returns:
        Tensor of the branches' shape, dtype and layout.

    Raises:
        RuntimeError: for an empty list, branches that differ in shape, dtype or
            device, or weights of the wrong rank, length, dtype or device.
    """
    return torch.ops.hwnas.weighted_sum.default(list(branches), weights)


@torch.library.register_fake("hwnas::weighted_sum")
def _weighted_sum_fake(branches, weights):
    torch._check(len(branches) > 0, lambda: "hwnas::weighted_sum: expected at least one branch")
    torch._check(
        weights.dim() in (1, 2),
        lambda: f"hwnas::weighted_sum: weights must have shape [N] or [B, N], got {tuple(weights.shape)}",
    )
    torch._check(
        weights.shape[-1] == len(branches),
        lambda: "hwnas::weighted_sum: weights and branches disagree on N",
    )
    return torch.empty_like(branches[0])


@torch.library.register_fake("hwnas::weighted_sum_backward")
def _weighted_sum_backward_fake(grad, branches, weights, branches_need_grad, weights_need_grad):
    n = weights.shape[-1]
    grad_branches = [torch.empty_like(grad) for _ in range(n)] if branches_need_grad else []
    if weights_need_grad:
        grad_weights = torch.empty_like(weights, memory_format=torch.contiguous_format)
    else:
        grad_weights = weights.new_empty((0,))
    return grad_branches, grad_weights


def _weighted_sum_setup_context(ctx, inputs, output):
    branches, weights = inputs
    ctx.weights_need_grad = weights.requires_grad
    ctx.num_branches = len(branches)
    # The branches are needed only for the weight gradient; not keeping them otherwise
    # lets autograd free them as soon as the forward is done with them.
    ctx.save_for_backward(weights, *(branches if weights.requires_grad else ()))


def _weighted_sum_backward(ctx, grad):
    weights, *branches = ctx.saved_tensors
    branches_need_grad = bool(ctx.needs_input_grad[0])
    weights_need_grad = bool(ctx.needs_input_grad[1])
    if not (branches_need_grad or weights_need_grad):
        return None, None
    grad_branches, grad_weights = torch.ops.hwnas.weighted_sum_backward.default(
        grad, branches if weights_need_grad else [], weights, branches_need_grad, weights_need_grad
    )
    return (
        list(grad_branches) if branches_need_grad else None,
        grad_weights if weights_need_grad else None,
    )


torch.library.register_autograd(
    "hwnas::weighted_sum", _weighted_sum_backward, setup_context=_weighted_sum_setup_context
)
