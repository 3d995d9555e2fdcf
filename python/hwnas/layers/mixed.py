"""A drop-in supernet layer that mixes candidate blocks with :func:`hwnas.ops.weighted_sum`."""

from __future__ import annotations

import functools

from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor, nn

from hwnas.ops import weighted_sum

from .choice import ArchChoice
from .reference import weighted_sum_reference

__all__ = ["MixedLayer"]


class MixedLayer(ArchChoice):
    """Searchable layer: a mixture of candidate blocks weighted by architecture logits.

    Every candidate maps ``[B, C_in, H, W]`` (or any input) to one common output
    shape ``[B, C_out, H', W']``. The mixture weights ``m`` come from the logits
    ``arch_logits`` (``[N]``) according to ``mode`` (see :mod:`hwnas.layers.sampling`):

    - ``"softmax"`` (DARTS) and ``"gumbel"`` (FBNet, soft Gumbel-softmax with
      ``temperature``): every candidate runs, ``out = sum_i m_i * op_i(x)``.
    - ``"gumbel_hard"``: a one-hot Gumbel sample; only the sampled candidate runs and
      the logits get a straight-through gradient through that branch alone.
    - ``"single_path"`` (SPOS): one uniformly sampled candidate runs; no logit gradient.
    - ``"fixed"``: candidate ``fixed_index`` runs.

    ``mode``, ``temperature`` and ``fixed_index`` may be changed between steps. After
    each forward, ``last_weights`` holds the ``[N]`` mixture weights used and, when
    per-candidate latencies were given, ``expected_latency`` holds the 0-dim tensor
    ``sum_i m_i * LAT_i``, differentiable with respect to ``arch_logits`` (in the
    one-hot modes its value is the chosen candidate's latency; in ``gumbel_hard`` it
    still has the Gumbel-softmax gradient).

    With ``fused=False`` the mixture is the eager ``sum_i m_i * op_i(x)``; both paths
    draw the same random numbers, so under one seed they compute the same thing. ONNX
    export needs ``fused=False``: the exporters know no translation of the ``hwnas``
    ops (the searched models hwnas builds and exports contain no mixed layers). Under
    ``torch.autocast``, branches that come out in different dtypes are mixed in the
    widest of them. ``expected_latency`` is computed in float32 at least.

    The mode alone decides the sampling: ``eval()`` does not stop the Gumbel draws (it
    only switches the candidates' own train/eval behaviour); for a deterministic output
    use ``softmax`` or ``fixed``. ``torch.compile(fullgraph=True)`` takes the
    ``softmax``, ``gumbel`` and ``fixed`` modes; ``gumbel_hard`` and ``single_path``
    pick the branch to run from a sampled value, a graph break. ``latencies`` is a
    buffer only once set, so a state dict saved with latencies loads into a layer
    built with them (or pass ``strict=False``).

    Args:
        candidates: N candidate blocks (``nn.Module``), all producing one shape.
        mode: initial search mode.
        temperature: Gumbel-softmax temperature (positive).
        latencies: optional N per-candidate latencies (any unit), kept as a buffer.
        fixed_index: the candidate used in ``fixed`` mode.
        fused: use the fused ``weighted_sum`` kernel (True) or the eager reference.

    Shapes:
        ``x``: whatever the candidates take; output: the candidates' common output shape.

    Example::

        layer = MixedLayer([block_a, block_b, nn.Identity()], latencies=[1.2, 2.5, 0.0])
        out = layer(x)
        loss = task_loss(out) + 0.1 * layer.expected_latency
    """

    _PER_FORWARD = ("last_weights", "expected_latency")

    def __init__(
        self,
        candidates: Sequence[nn.Module],
        *,
        mode: str = "gumbel",
        temperature: float = 5.0,
        latencies: Optional[Sequence[float]] = None,
        fixed_index: Optional[int] = None,
        fused: bool = True,
    ) -> None:
        candidates = list(candidates)
        if not candidates:
            raise ValueError("MixedLayer needs at least one candidate, got an empty list")
        for i, op in enumerate(candidates):
            if not isinstance(op, nn.Module):
                raise ValueError(f"candidate {i} must be an nn.Module, got {type(op).__name__}")
        super().__init__(
            len(candidates), mode=mode, temperature=temperature, latencies=latencies, fixed_index=fixed_index
        )
        self.candidates = nn.ModuleList(candidates)
        self.fused = bool(fused)
        self.last_weights: Optional[Tensor] = None
        self.expected_latency: Optional[Tensor] = None

    @property
    def num_candidates(self) -> int:
        return self.num_choices

    def best_index(self) -> int:
        """The candidate with the largest logit (the derived architecture)."""
        return int(self.arch_logits.detach().argmax())

    # ------------------------------------------------------------------ forward

    def forward(self, x: Tensor) -> Tensor:
        weights, index = self.sample_weights()
        self.last_weights = weights
        self.expected_latency = self.latency_of(weights) if self.latencies is not None else None
        if self._mode in ("single_path", "fixed"):
            # A constant one-hot mixture: the output is the candidate's, untouched.
            return self.candidates[index](x)
        if index is not None:
            # gumbel_hard: only the sampled branch runs; its weight is exactly 1 in
            # value and carries the straight-through gradient.
            branches = [self.candidates[index](x)]
            branch_weights = weights[index : index + 1]
        else:
            branches = [op(x) for op in self.candidates]
            branch_weights = weights
        if len({b.dtype for b in branches}) > 1:
            # Under torch.autocast convolutions return bfloat16/float16 while identity or
            # pooling candidates pass float32 through: mix in the widest dtype, as eager
            # addition (fused=False) promotes.
            common = functools.reduce(torch.promote_types, [b.dtype for b in branches])
            branches = [b.to(common) for b in branches]
        branch_weights = branch_weights.to(self._weight_dtype(branches[0]))
        if self.fused:
            return weighted_sum(branches, branch_weights)
        return weighted_sum_reference(branches, branch_weights)

    @staticmethod
    def _weight_dtype(branch: Tensor) -> torch.dtype:
        # weighted_sum takes weights in the branches' dtype, or float32 for 16-bit floats.
        return torch.float32 if branch.dtype in (torch.float16, torch.bfloat16) else branch.dtype

    def extra_repr(self) -> str:
        parts = [f"num_candidates={self.num_choices}", *self._choice_repr(), f"fused={self.fused}"]
        return ", ".join(parts)
