"""FBNetV2's DMasking: a channel-searchable convolution on :func:`hwnas.ops.channel_mask`."""

from __future__ import annotations


from collections.abc import Sequence
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from hwnas._checks import as_integer
from hwnas.ops import channel_mask

from .choice import ArchChoice, cost_precision
from .reference import channel_mask_reference, prefix_mask_matrix

__all__ = ["ChannelSearchConv2d"]


class ChannelSearchConv2d(ArchChoice):
    """Convolution (+ BN + activation) whose number of output channels is searched.

    One convolution runs at the largest width ``C_max = widths[-1]``; the K candidate
    widths are chosen by gates ``g`` (``[K]``, from ``arch_logits`` by ``mode``) and
    applied as ``channel_mask(y, g, widths)``: output channel ``c`` is scaled by the
    total gate of the widths that keep it, so channels beyond the chosen width are
    (softly) zero and the layer's memory stays that of one convolution whatever K is.

    After each forward the layer exposes, as 0-dim tensors differentiable with respect
    to ``arch_logits`` through the gates:

    - ``expected_out_channels = sum_i g_i * widths[i]``,
    - ``expected_macs = sum_i g_i * MACs(widths[i])``, where ``MACs(w)`` counts the
      convolution's multiply-accumulates for ``w`` output channels at this forward's
      output size (``in_channels`` inputs; see :meth:`expected_macs_given_input` to
      account for a searched input width as FBNetV2 does),
    - ``expected_latency = sum_i g_i * LAT_i`` when per-width latencies were given.

    Modes are those of :class:`~hwnas.layers.MixedLayer` (``softmax``, ``gumbel``,
    ``gumbel_hard``, ``single_path``, ``fixed``), applied to widths instead of blocks;
    the channel masking is cheap either way, so every mode runs the one convolution.
    With ``fused=False`` the mask is the eager ``y * (g @ M)`` (``M`` the ``[K, C_max]``
    prefix-mask matrix), drawing the same random numbers. ONNX export needs
    ``fused=False``: the exporters know no translation of the ``hwnas`` ops. Cost
    expectations are computed in float32 at least, also in a ``.half()`` module.

    Args:
        in_channels: input channels.
        widths: K strictly increasing output widths; the convolution has ``widths[-1]``.
        kernel_size, stride: positive integers (square kernels, equal strides; padding
            keeps 'same' spatial size for odd kernels: ``kernel_size // 2``).
        groups, bias: as for :class:`torch.nn.Conv2d`, except that ``bias`` defaults
            to ``False`` (a BatchNorm follows by default).
        norm: add a BatchNorm2d after the convolution.
        activation: module factory applied last (``None`` for none).
        mode, temperature, fixed_index, latencies, fused: as for ``MixedLayer``.

    Shapes:
        ``[B, in_channels, H, W] -> [B, widths[-1], H', W']``,
        ``H' = (H + 2 * (kernel_size // 2) - kernel_size) // stride + 1``.
    """

    _PER_FORWARD = ("last_gates", "expected_out_channels", "expected_macs", "expected_latency")
    _COST_BUFFERS = ("latencies", "width_values")

    def __init__(
        self,
        in_channels: int,
        widths: Sequence[int],
        kernel_size: int = 3,
        stride: int = 1,
        *,
        groups: int = 1,
        bias: bool = False,
        norm: bool = True,
        activation: Optional[Callable[[], nn.Module]] = nn.ReLU,
        mode: str = "gumbel",
        temperature: float = 5.0,
        latencies: Optional[Sequence[float]] = None,
        fixed_index: Optional[int] = None,
        fused: bool = True,
    ) -> None:
        widths = [as_integer("a width", w) for w in widths]
        if not widths:
            raise ValueError("ChannelSearchConv2d needs at least one width, got an empty list")
        for name, value in (("in_channels", in_channels), ("kernel_size", kernel_size), ("stride", stride),
                            ("groups", groups)):
            if as_integer(name, value) < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if activation is not None and (isinstance(activation, nn.Module) or not callable(activation)):
            raise ValueError(f"activation must be a factory such as nn.ReLU (called once per layer), "
                             f"got {activation!r}")
        if widths[0] < 1 or any(b <= a for a, b in zip(widths, widths[1:])):
            raise ValueError(f"widths must be positive and strictly increasing, got {widths}")
        if in_channels < 1 or in_channels % groups or widths[-1] % groups:
            raise ValueError(
                f"in_channels={in_channels} and the largest width {widths[-1]} must be positive "
                f"multiples of groups={groups}"
            )
        super().__init__(
            len(widths), mode=mode, temperature=temperature, latencies=latencies, fixed_index=fixed_index
        )
        self.in_channels = int(in_channels)
        self.widths = tuple(widths)
        self.conv = nn.Conv2d(
            in_channels, widths[-1], kernel_size, stride, padding=kernel_size // 2, groups=groups, bias=bias
        )
        self.norm = nn.BatchNorm2d(widths[-1]) if norm else None
        self.activation = activation() if activation is not None else None
        self.register_buffer("mask_matrix", prefix_mask_matrix(widths, widths[-1]), persistent=False)
        self.register_buffer("width_values", torch.tensor(widths, dtype=torch.float32), persistent=False)
        self.fused = bool(fused)
        self.last_gates: Optional[Tensor] = None
        self.expected_out_channels: Optional[Tensor] = None
        self.expected_macs: Optional[Tensor] = None
        self.expected_latency: Optional[Tensor] = None

    # ------------------------------------------------------------------ queries

    def best_width(self) -> int:
        """The width with the largest logit (the derived architecture)."""
        return self.widths[int(self.arch_logits.detach().argmax())]

    def macs_per_width(self, out_height: int, out_width: int) -> Tensor:
        """``[K]`` convolution MACs for each width at the given output size."""
        per_output_channel = (self.in_channels // self.conv.groups) * self.conv.kernel_size[0] * self.conv.kernel_size[1]
        return self.width_values * float(per_output_channel * out_height * out_width)

    def expected_macs_given_input(self, expected_in_channels: Tensor | float) -> Tensor:
        """``expected_macs`` with ``expected_in_channels`` inputs instead of ``in_channels``.

        FBNetV2 chains searched widths this way: pass the previous layer's
        ``expected_out_channels`` and the product of the two expectations is
        differentiable in both layers' gates.
        """
        if self.expected_macs is None:
            raise ValueError("expected_macs_given_input needs a forward pass first")
        return self.expected_macs * (expected_in_channels / self.in_channels)

    # ------------------------------------------------------------------ forward

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        if self.norm is not None:
            y = self.norm(y)
        if self.activation is not None:
            y = self.activation(y)
        gates, _ = self.sample_weights()
        self.last_gates = gates
        costed = cost_precision(gates)
        self.expected_out_channels = (costed * self.width_values.to(costed.dtype)).sum()
        self.expected_macs = (costed * self.macs_per_width(y.shape[-2], y.shape[-1]).to(costed.dtype)).sum()
        self.expected_latency = self.latency_of(gates) if self.latencies is not None else None
        if y.dtype in (torch.float16, torch.bfloat16):
            gates = gates.float()  # channel_mask takes float32 gates for 16-bit activations
        else:
            gates = gates.to(y.dtype)
        if self.fused:
            return channel_mask(y, gates, self.widths)
        return channel_mask_reference(y, gates, self.widths, mask=self.mask_matrix)

    def extra_repr(self) -> str:
        parts = [f"in_channels={self.in_channels}", f"widths={list(self.widths)}", *self._choice_repr()]
        parts.append(f"fused={self.fused}")
        return ", ".join(parts)
