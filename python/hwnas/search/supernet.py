"""The FBNet supernet: a search space's stem, one :class:`~hwnas.layers.MixedLayer` per
searchable layer (all candidate blocks, mixed with the fused ``weighted_sum``), and head.

Each mixed layer gets its candidates' latencies from a
:class:`~hwnas.latency.table.LatencyTable`, so after a forward pass
:meth:`Supernet.expected_latency` is FBNet's eq. 9 under the mask that pass used
(the Gumbel-softmax sample in ``gumbel`` mode), plus the fixed stem and head.
"""

from __future__ import annotations

import random
from typing import Iterator, Optional

import torch
from torch import Tensor, nn

from hwnas.layers import MixedLayer
from hwnas.layers.depthwise import swap_in_native_depthwise
from hwnas.spaces import Architecture, SearchSpace, build_block, parse_block_name

__all__ = ["Supernet", "check_table_matches_space"]


def check_table_matches_space(table, space: SearchSpace) -> None:
    """Raises ``ValueError`` unless ``table`` is a complete table of ``space`` as defined now
    (:meth:`hwnas.latency.LatencyTable.check_space`)."""
    table.check_space(space, require_complete=True)


class Supernet(nn.Module):
    """All architectures of a search space in one network.

    Args:
        space: The search space (its default resolution and widths).
        table: Latency table of ``space`` on the target; ``None`` searches without
            latency (``expected_latency`` then raises).
        mode: Initial mode of every mixed layer (see :mod:`hwnas.layers.sampling`).
        temperature: Initial Gumbel-softmax temperature.
        fused: Mix with the fused ``weighted_sum`` kernel (True) or the eager reference.
        native_depthwise: Run the candidates' depthwise convolutions on
            :func:`hwnas.ops.depthwise_conv2d` (see :mod:`hwnas.layers.depthwise`): on an
            AVX2 CPU a soft supernet step on digits took 1.4 s with oneDNN's depthwise
            backward, 1.0 s of it in the depthwise convolutions. ``False`` keeps ``nn.Conv2d`` (e.g. for cuDNN on a GPU).

    Shapes:
        ``x``: ``[B, space.in_channels, R, R]`` with ``R = space.resolution``;
        output: ``[B, space.num_classes]`` logits.
    """

    def __init__(self, space: SearchSpace, table=None, *, mode: str = "gumbel", temperature: float = 5.0,
                 fused: bool = True, native_depthwise: bool = True) -> None:
        super().__init__()
        if any(layer.channel_choices for layer in space.layers) or space.resolution_choices:
            raise ValueError(
                f"space {space.name!r} searches channel widths or resolutions; the FBNet supernet searches "
                "block choices only (use a space such as fbnet_small or fbnet)"
            )
        if table is not None:
            check_table_matches_space(table, space)
        self.space = space
        self.stem = space.build_stem()
        self.layers = nn.ModuleList()
        for index, spec in enumerate(space.layers):
            candidates = [build_block(choice, spec.c_in, spec.c_out, spec.stride) for choice in spec.choices]
            latencies = None if table is None else table.layer_costs(index).tolist()
            self.layers.append(MixedLayer(candidates, mode=mode, temperature=temperature, latencies=latencies, fused=fused))
        if native_depthwise:
            swap_in_native_depthwise(self.layers)  # for good: a supernet is never exported
        # Per layer, 1 for the candidates that are blocks and 0 for skips: the block
        # term of a table's correction counts blocks (not saved: it follows from the space).
        for index, spec in enumerate(space.layers):
            is_block = [0.0 if parse_block_name(choice).is_skip else 1.0 for choice in spec.choices]
            self.register_buffer(f"is_block_{index}", torch.tensor(is_block), persistent=False)
        self.head = space.build_head()
        fixed = 0.0 if table is None else table.value(table.stem_key) + table.value(table.head_key)
        self.register_buffer("fixed_latency", torch.tensor(float(fixed)))
        self.has_latency = table is not None

    # ------------------------------------------------------------------ forward

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(x)

    def expected_latency(self) -> Tensor:
        """0-dim ``stem + sum_l sum_i m_{l,i} LAT_{l,i} + head`` of the last forward's masks.

        Differentiable with respect to the architecture logits (FBNet eq. 9 with the
        Gumbel-softmax mask in place of the probabilities).
        """
        if not self.has_latency:
            raise ValueError("this supernet was built without a latency table")
        terms = [layer.expected_latency for layer in self.layers]
        if any(t is None for t in terms):
            raise ValueError("expected_latency is known only after a forward pass")
        return self.fixed_latency + torch.stack(terms).sum()

    def distribution_latency(self) -> Tensor:
        """0-dim expected latency under ``softmax(logits)`` (no noise): the distribution's own."""
        if not self.has_latency:
            raise ValueError("this supernet was built without a latency table")
        total = self.fixed_latency
        for layer in self.layers:
            total = total + layer.latency_of(layer.probabilities())
        return total

    def _is_block(self, index: int) -> Tensor:
        return getattr(self, f"is_block_{index}")

    def expected_blocks(self) -> Tensor:
        """0-dim ``sum_l sum_i m_{l,i} [candidate i is a block]`` of the last forward's masks:
        the number of non-skip blocks (exact for one-hot masks), differentiable in the logits."""
        weights = [layer.last_weights for layer in self.layers]
        if any(w is None for w in weights):
            raise ValueError("expected_blocks is known only after a forward pass")
        return torch.stack([w @ self._is_block(i).to(w.dtype) for i, w in enumerate(weights)]).sum()

    def _block_probabilities(self) -> Tensor:
        """``[L]``: per layer, the probability under ``softmax(logits)`` that it runs a block."""
        return torch.stack([layer.probabilities() @ self._is_block(i).to(layer.arch_logits.dtype)
                            for i, layer in enumerate(self.layers)])

    def distribution_blocks(self) -> Tensor:
        """0-dim ``E[n]`` of the number ``n`` of non-skip blocks under ``softmax(logits)``."""
        return self._block_probabilities().sum()

    def distribution_blocks_squared(self) -> Tensor:
        """0-dim ``E[n^2]`` of the number ``n`` of non-skip blocks under ``softmax(logits)``.

        Layers are drawn independently, so with ``q_l`` the probability that layer
        ``l`` runs a block, ``E[n^2] = (sum_l q_l)^2 + sum_l q_l (1 - q_l)``.
        """
        q = self._block_probabilities()
        return q.sum() ** 2 + (q * (1 - q)).sum()

    # ------------------------------------------------------------------ parameters

    def arch_parameters(self) -> list[nn.Parameter]:
        """The ``[N_l]`` architecture logits, one per layer."""
        return [layer.arch_logits for layer in self.layers]

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter except the architecture logits."""
        arch_ids = {id(p) for p in self.arch_parameters()}
        return (p for p in self.parameters() if id(p) not in arch_ids)

    def set_mode(self, mode: str) -> None:
        for layer in self.layers:
            layer.mode = mode

    def set_temperature(self, temperature: float) -> None:
        for layer in self.layers:
            layer.temperature = temperature

    def probabilities(self) -> list[Tensor]:
        """Per layer, ``softmax(logits)`` (``[N_l]``, detached)."""
        return [layer.probabilities().detach().clone() for layer in self.layers]

    # ------------------------------------------------------------------ architectures

    def derive(self) -> Architecture:
        """The most likely architecture: each layer's arg-max candidate."""
        return self.space.make_arch([spec.choices[layer.best_index()] for spec, layer in zip(self.space.layers, self.layers)])

    def sample_architecture(self, rng: random.Random) -> Architecture:
        """One architecture drawn from the learned per-layer distributions.

        Args:
            rng: The source of randomness (kept separate from torch's global RNG so that
                sampling after a search does not depend on what ran before).
        """
        probs = [p.tolist() for p in self.probabilities()]
        return self.space.sample(rng=rng, probs=probs)

    def use_architecture(self, arch: Optional[Architecture]) -> None:
        """Runs only ``arch``'s blocks (``fixed`` mode), or returns to search mode with ``None``.

        After ``use_architecture(None)`` the layers are in ``gumbel`` mode; set the
        mode explicitly if another one is wanted.
        """
        if arch is None:
            for layer in self.layers:
                layer.fixed_index = None
                layer.mode = "gumbel"
            return
        self.space.validate(arch)
        for spec, layer, choice in zip(self.space.layers, self.layers, arch.choices):
            layer.fixed_index = spec.choices.index(choice)
            layer.mode = "fixed"


def candidate_indices(space: SearchSpace, arch: Architecture) -> list[int]:
    """Per layer, the index of ``arch``'s choice in the layer's candidate list."""
    return [spec.choices.index(choice) for spec, choice in zip(space.layers, arch.choices)]
