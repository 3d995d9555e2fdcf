"""The architecture choice shared by the searchable layers.

A layer that searches among K choices (candidate blocks, channel widths) holds K
architecture logits, a search mode, a Gumbel temperature, an optional fixed choice
and optional per-choice latencies. :class:`ArchChoice` keeps and validates those
settings once, so every searchable layer behaves the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor, nn

from hwnas._checks import as_integer

from .sampling import SEARCH_MODES, check_mode, check_temperature, sample_mixture

__all__ = ["ArchChoice", "cost_precision"]


def cost_precision(weights: Tensor) -> Tensor:
    """``weights`` in float32 unless they are float32 or float64 already.

    Why: expected costs sum weights times latencies or MAC counts, which pass float16's
    largest value (65504) in one layer and lose digits in bfloat16; a module converted
    with ``.half()`` would report ``inf`` and hand its logits NaN gradients.
    """
    return weights if weights.dtype in (torch.float32, torch.float64) else weights.float()


class ArchChoice(nn.Module):
    """Base of searchable layers: K architecture logits and how they are sampled.

    Args:
        num_choices: K, the number of choices (K >= 1).
        mode: one of ``softmax, gumbel, gumbel_hard, single_path, fixed`` (see
            :mod:`hwnas.layers.sampling`); may be changed between steps.
        temperature: Gumbel-softmax temperature (positive); may be changed.
        latencies: optional K per-choice latencies (any unit), kept as a buffer.
        fixed_index: the choice used in ``fixed`` mode.

    Attributes:
        arch_logits: ``[K]`` parameter, the architecture logits (zeros at start).
        latencies: ``[K]`` float32 buffer or None.
    """

    def __init__(
        self,
        num_choices: int,
        *,
        mode: str,
        temperature: float,
        latencies: Optional[Sequence[float]],
        fixed_index: Optional[int],
    ) -> None:
        super().__init__()
        if num_choices < 1:
            raise ValueError(f"a searchable layer needs at least one choice, got {num_choices}")
        self.num_choices = int(num_choices)
        self.arch_logits = nn.Parameter(torch.zeros(self.num_choices))
        self.register_buffer("latencies", None)
        if latencies is not None:
            self.set_latencies(latencies)
        self.mode = mode
        self.temperature = temperature
        self.fixed_index = fixed_index

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
        """The choice used in ``fixed`` mode (None until chosen)."""
        return self._fixed_index

    @fixed_index.setter
    def fixed_index(self, value: Optional[int]) -> None:
        if value is not None:
            value = as_integer("fixed_index", value)  # 1.7 or True are refused, not rounded
            if not 0 <= value < self.num_choices:
                raise ValueError(f"fixed_index must be in [0, {self.num_choices}), got {value!r}")
        self._fixed_index = value

    # Attributes each forward sets to tensors of its autograd graph (mixture weights,
    # expectations). A copy or pickle keeps their values, detached: deepcopy refuses
    # non-leaf tensors, and a copy's parameters are not in the original's graph anyway.
    _PER_FORWARD: tuple[str, ...] = ()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        for name in self._PER_FORWARD:
            value = state.get(name)
            if isinstance(value, Tensor):
                state[name] = value.detach()
        return state

    # Cost buffers stay float32 when the module is converted (``.half()``, ``.to(dtype)``):
    # 70000 us is ``inf`` in float16. Device moves still apply to them.
    _COST_BUFFERS: tuple[str, ...] = ("latencies",)

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        kept = {name: self._buffers[name] for name in self._COST_BUFFERS if self._buffers.get(name) is not None}
        super()._apply(fn, recurse)
        for name, before in kept.items():
            after = self._buffers[name]
            if after is not None and after.dtype != before.dtype:
                self._buffers[name] = before.to(device=after.device)
        return self

    def set_latencies(self, latencies: Sequence[float]) -> None:
        """Sets the K per-choice latencies used by ``expected_latency``.

        Args:
            latencies: K costs (latencies or energies, any unit), finite and ``>= 0``
                (a zero cost, e.g. a skip, is allowed; a negative one would reward a
                search for choosing that block).

        Raises:
            ValueError: Not K numbers, or a value that is not finite or is negative.
        """
        try:
            values = torch.as_tensor(latencies, dtype=torch.float32).flatten()
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"latencies must be {self.num_choices} numbers, got {latencies!r}") from None
        if values.numel() != self.num_choices:
            raise ValueError(f"latencies has {values.numel()} entries for {self.num_choices} choices")
        if not torch.isfinite(values).all():
            raise ValueError(f"latencies must be finite, got {values.tolist()}")
        if (values < 0).any():
            raise ValueError(f"latencies must be >= 0 (they are costs: latencies or energies), got {values.tolist()}")
        self.latencies = values.to(self.arch_logits.device)

    def probabilities(self) -> Tensor:
        """``softmax(arch_logits)``, ``[K]``: the current architecture distribution."""
        return torch.softmax(self.arch_logits, dim=-1)

    def latency_of(self, weights: Tensor) -> Tensor:
        """``sum_i weights[i] * LAT_i`` (0-dim), differentiable in ``weights``."""
        if self.latencies is None:
            raise ValueError(f"this {type(self).__name__} has no latencies; pass latencies= or call set_latencies()")
        weights = cost_precision(weights)
        return (weights * self.latencies.to(weights.dtype)).sum()

    def sample_weights(self) -> tuple[Tensor, Optional[int]]:
        """Mixture weights ``[K]`` for one forward and the sampled index (one-hot modes)."""
        return sample_mixture(self.arch_logits, self._mode, self._temperature, self._fixed_index)

    def _choice_repr(self) -> list[str]:
        parts = [f"mode={self._mode!r}", f"temperature={self._temperature:g}"]
        if self._fixed_index is not None:
            parts.append(f"fixed_index={self._fixed_index}")
        parts.append(f"latencies={'set' if self.latencies is not None else None}")
        return parts
