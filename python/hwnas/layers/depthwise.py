"""A depthwise convolution on hwnas' native kernels, and a swap for training.

:class:`DepthwiseConv2d` is an :class:`torch.nn.Conv2d` (same parameters, same
``state_dict`` keys) whose forward is :func:`hwnas.ops.depthwise_conv2d`. Training code
swaps it in for the depthwise convolutions of a model with :func:`native_depthwise`
and swaps the originals back afterwards, so the model that is measured and exported is
built from plain ``nn.Conv2d`` modules, as a user deploys it.

Why: on an AVX2 CPU without AVX-512 (AMD EPYC, family 25), oneDNN ran the weight
gradient of a depthwise convolution with its GEMM-based implementation (``x64:gemm:jit``
in ``ONEDNN_VERBOSE``); at the 2x2 to 8x8 feature maps of a search on small images that
made the depthwise convolutions 1.0 s of a 1.4 s supernet step
(``benchmarks/bench_depthwise_conv.py`` times both).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor, nn

from hwnas.ops import depthwise_conv2d

__all__ = ["DepthwiseConv2d", "is_depthwise", "swap_in_native_depthwise", "restore_modules", "native_depthwise"]


def is_depthwise(module: nn.Module) -> bool:
    """True for a plain ``nn.Conv2d`` with one filter per channel and zero padding given as
    numbers, whose weight is its own parameter and which has no hooks.

    Modules with hooks (``weight_norm``, ``spectral_norm``, user hooks) are left alone: a
    swapped-in module would not run them.
    """
    return (
        type(module) is nn.Conv2d
        and module.groups > 1
        and module.groups == module.in_channels == module.out_channels
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
        and isinstance(module.weight, nn.Parameter)
        and (module.bias is None or isinstance(module.bias, nn.Parameter))
        and not (module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                 or module._backward_pre_hooks)
    )


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(C, C, kernel, stride, padding, dilation, groups=C, bias)`` on
    :func:`hwnas.ops.depthwise_conv2d`, with ``nn.Conv2d``'s defaults (``bias=True``)
    and its ``state_dict`` keys; under ``torch.autocast`` it computes in the autocast
    dtype, as ``nn.Conv2d`` does.

    Shapes:
        ``(N, C, H, W)`` -> ``(N, C, OH, OW)`` as ``nn.Conv2d``, and ``(C, H, W)`` ->
        ``(C, OH, OW)``; the output has the input's layout (channels_last or contiguous).
    """

    def __init__(self, channels: int, kernel_size, stride=1, padding=0, dilation=1, bias: bool = True,
                 device=None, dtype=None) -> None:
        if isinstance(padding, str):
            # The native kernel pads symmetrically by numbers; nn.Conv2d's 'same' may not be.
            raise ValueError(f"DepthwiseConv2d takes numeric padding (an int or 2 ints), got {padding!r}")
        super().__init__(channels, channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         groups=channels, bias=bias, device=device, dtype=dtype)

    @classmethod
    def sharing(cls, conv: nn.Conv2d) -> "DepthwiseConv2d":
        """A module that shares ``conv``'s parameters (the same tensors, not copies)."""
        if not is_depthwise(conv):
            raise ValueError(f"not a depthwise nn.Conv2d with numeric zero padding: {conv}")
        # Built on the meta device (no memory, no draw from the random generator), then
        # given conv's own parameters.
        native = cls(conv.in_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                     bias=conv.bias is not None, device="meta", dtype=conv.weight.dtype)
        native.weight = conv.weight
        if conv.bias is not None:
            native.bias = conv.bias
        native.train(conv.training)
        return native

    def forward(self, x: Tensor) -> Tensor:
        unbatched = x.dim() == 3  # nn.Conv2d takes (C, H, W) too
        if unbatched:
            x = x.unsqueeze(0)
        weight, bias = self.weight, self.bias
        if torch.is_autocast_enabled(x.device.type) and x.is_floating_point() and x.dtype != torch.float64:
            # nn.Conv2d runs in autocast's lower precision, its float32 weight cast too
            # (float64 is left alone); so does its drop-in, whose native op has no autocast rule.
            dtype = torch.get_autocast_dtype(x.device.type)
            x, weight = x.to(dtype), weight.to(dtype)
            bias = bias.to(dtype) if bias is not None else None
        out = depthwise_conv2d(x, weight, self.stride, self.padding, self.dilation)
        if bias is not None:
            out = out + bias.view(1, -1, 1, 1)
        return out.squeeze(0) if unbatched else out


def swap_in_native_depthwise(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """Replaces every depthwise ``nn.Conv2d`` inside ``model`` by a :class:`DepthwiseConv2d`
    sharing its parameters.

    Returns:
        ``(parent, name, original)`` per replaced module, for :func:`restore_modules`.
    """
    if is_depthwise(model):
        # Only a child can be swapped (in its parent); the caller holds the model itself.
        raise ValueError("the model is itself a depthwise nn.Conv2d: pass a module that contains it "
                         "(e.g. nn.Sequential(conv)), or use DepthwiseConv2d.sharing(conv)")
    swapped = []
    for parent in list(model.modules()):
        # _modules, not named_children(): the latter skips a module registered twice
        # in one parent, which would then run its second use on the slow path.
        for name, child in list(parent._modules.items()):
            if is_depthwise(child):
                setattr(parent, name, DepthwiseConv2d.sharing(child))
                swapped.append((parent, name, child))
    return swapped


def restore_modules(swapped: list[tuple[nn.Module, str, nn.Module]]) -> None:
    """Puts back the modules :func:`swap_in_native_depthwise` replaced (their parameters
    were shared all along, so training is kept; their train/eval mode follows the swap's)."""
    for parent, name, original in reversed(swapped):
        original.train(getattr(parent, name).training)
        setattr(parent, name, original)


@contextlib.contextmanager
def native_depthwise(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block, ``model``'s depthwise convolutions run on hwnas' native kernels.

    The parameters are shared, so what is trained inside is kept; on exit (also on an
    exception or interrupt) the original ``nn.Conv2d`` modules are back in place.
    """
    swapped = swap_in_native_depthwise(model)
    try:
        yield model
    finally:
        restore_modules(swapped)
