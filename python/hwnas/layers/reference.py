"""Eager reference implementations of the fused operators.

They compute exactly what :func:`hwnas.ops.weighted_sum` and
:func:`hwnas.ops.channel_mask` compute, with ordinary PyTorch operations, so that a
layer built with ``fused=False`` runs the same mathematics without the custom kernels
(for tests, benchmarks and platforms without a kernel).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["weighted_sum_reference", "channel_mask_reference", "prefix_mask_matrix"]


def weighted_sum_reference(branches: Sequence[Tensor], weights: Tensor) -> Tensor:
    """Eager ``sum_i weights[..., i] * branches[i]``.

    Args:
        branches: N tensors of one shape ``[B, ...]``.
        weights: ``[N]`` or ``[B, N]``.

    Returns:
        Tensor of the branches' shape.
    """
    if len(branches) != weights.shape[-1]:
        raise ValueError(f"weights has N={weights.shape[-1]} entries but {len(branches)} branches were given")
    out = None
    for i, branch in enumerate(branches):
        w = weights[..., i]
        if weights.dim() == 2:  # one weight per sample: broadcast over [B, ...]
            w = w.reshape(-1, *([1] * (branch.dim() - 1)))
        term = w * branch
        out = term if out is None else out + term
    return out


def prefix_mask_matrix(widths: Sequence[int], channels: int, dtype=None, device=None) -> Tensor:
    """The ``[K, C]`` matrix ``M`` with ``M[i, c] = 1`` where ``c < widths[i]``, else 0."""
    columns = torch.arange(channels, device=device)
    limits = torch.as_tensor(list(widths), device=device).unsqueeze(1)
    return (columns.unsqueeze(0) < limits).to(dtype or torch.get_default_dtype())


def channel_mask_reference(x: Tensor, gates: Tensor, widths: Sequence[int], mask: Tensor | None = None) -> Tensor:
    """Eager ``x * (gates @ M)``, broadcast over the channels (dimension 1) of ``x``.

    Args:
        x: ``[B, C, ...]``.
        gates: ``[K]`` or ``[B, K]``.
        widths: K increasing channel counts.
        mask: the ``[K, C]`` prefix-mask matrix, when the caller keeps one (built from
            ``widths`` otherwise).

    Returns:
        Tensor of ``x``'s shape.
    """
    if mask is None:
        mask = prefix_mask_matrix(widths, x.shape[1], dtype=gates.dtype, device=gates.device)
    scale = gates @ mask.to(gates.dtype)  # [C] or [B, C]
    batch = x.shape[0] if gates.dim() == 2 else 1
    return x * scale.reshape(batch, x.shape[1], *([1] * (x.dim() - 2))).to(x.dtype)
