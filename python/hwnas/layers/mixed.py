"""A drop-in supernet layer that mixes candidate blocks with :func:`hwnas.ops.weighted_sum`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor, nn

from hwnas.ops import weighted_sum

from .reference import weighted_sum_reference
from .sampling import SEARCH_MODES, check_mode, check_temperature, sample_mixture

__all__ = ["MixedLayer"]


class MixedLayer(nn.Module):
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
    draw the same random numbers, so under one seed they compute the same thing.

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
        super().__init__()
        candidates = list(candidates)
        if not candidates:
            raise ValueError("MixedLayer needs at least one candidate, got an empty list")
        for i, op in enumerate(candidates):
            if not isinstance(op, nn.Module):
                raise ValueError(f"candidate {i} must be an nn.Module, got {type(op).__name__}")
        self.candidates = nn.ModuleList(candidates)
        self.arch_logits = nn.Parameter(torch.zeros(len(candidates)))
        self.mode = mode
        self.temperature = temperature
        self.fixed_index = fixed_index
        self.fused = bool(fused)
        self.register_buffer("latencies", None)
        if latencies is not None:
            self.set_latencies(latencies)
        self.last_weights: Optional[Tensor] = None
        self.expected_latency: Optional[Tensor] = None

    # ------------------------------------------------------------------ settings

    @property
    def num_candidates(self) -> int:
        return len(self.candidates)

    @property
    def mode(self) -> str:
        """The search mode, one of ``softmax, gumbel, gumbel_hard, single_path, fixed``."""
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        self._mode = check_mode(value, SEARCH_MODES)

    @property
    def temperature(self) -> float:
        """Gumbel-softmax temperature; annealing it is the caller's choice."""
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self._temperature = check_temperature(value)

    @property
    def fixed_index(self) -> Optional[int]:
        """Candidate run in ``fixed`` mode (None until chosen)."""
        return self._fixed_index

    @fixed_index.setter
    def fixed_index(self, value: Optional[int]) -> None:
        if value is not None and not 0 <= int(value) < len(self.candidates):
            raise ValueError(f"fixed_index must be in [0, {len(self.candidates)}), got {value!r}")
        self._fixed_index = None if value is None else int(value)

    def set_latencies(self, latencies: Sequence[float]) -> None:
        """Sets the N per-candidate latencies used by ``expected_latency``."""
        values = torch.as_tensor(latencies, dtype=torch.float32).flatten()
        if values.numel() != len(self.candidates):
            raise ValueError(f"latencies has {values.numel()} entries for {len(self.candidates)} candidates")
        if not torch.isfinite(values).all():
            raise ValueError(f"latencies must be finite, got {values.tolist()}")
        self.latencies = values.to(self.arch_logits.device)

    # ------------------------------------------------------------------ queries

    def probabilities(self) -> Tensor:
        """``softmax(arch_logits)``, ``[N]``: the current architecture distribution."""
        return torch.softmax(self.arch_logits, dim=-1)

    def best_index(self) -> int:
        """The candidate with the largest logit (the derived architecture)."""
        return int(self.arch_logits.detach().argmax())

    def latency_of(self, weights: Tensor) -> Tensor:
        """``sum_i weights[i] * LAT_i`` (0-dim), differentiable in ``weights``."""
        if self.latencies is None:
            raise ValueError("this MixedLayer has no latencies; pass latencies= or call set_latencies()")
        return (weights * self.latencies.to(weights.dtype)).sum()

    # ------------------------------------------------------------------ forward

    def forward(self, x: Tensor) -> Tensor:
        weights, index = sample_mixture(self.arch_logits, self._mode, self._temperature, self._fixed_index)
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
        branch_weights = branch_weights.to(self._weight_dtype(branches[0]))
        if self.fused:
            return weighted_sum(branches, branch_weights)
        return weighted_sum_reference(branches, branch_weights)

    @staticmethod
    def _weight_dtype(branch: Tensor) -> torch.dtype:
        # weighted_sum takes weights in the branches' dtype, or float32 for 16-bit floats.
        return torch.float32 if branch.dtype in (torch.float16, torch.bfloat16) else branch.dtype

    def extra_repr(self) -> str:
        parts = [f"num_candidates={len(self.candidates)}", f"mode={self._mode!r}", f"temperature={self._temperature:g}"]
        if self._fixed_index is not None:
            parts.append(f"fixed_index={self._fixed_index}")
        parts.append(f"latencies={'set' if self.latencies is not None else None}")
        parts.append(f"fused={self.fused}")
        return ", ".join(parts)
