"""Public fused operators of hwnas, with their autograd and fake (meta) kernels.

The kernels are registered in C++ (``csrc/ops``) as ``torch.ops.hwnas.*``; this module
adds what PyTorch needs to differentiate them and to trace them under
``torch.compile``, and wraps them in documented Python functions.

Every op is differentiable once, in reverse mode (what training and search need).
Gradients taken with ``create_graph=True`` are right, but differentiating them again,
or passing forward-mode dual tensors (``torch.func.jvp``), raises a ``RuntimeError``
instead of returning wrong higher derivatives.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from hwnas import _extension  # noqa: F401  (registers the hwnas:: operators)

__all__ = ["weighted_sum"]

# Typed entry points (csrc/ops/python_bindings.cpp): the same dispatcher calls as
# torch.ops.hwnas.*, without the generic boxed-call argument parsing (~3.5 us a call).
_NATIVE = _extension._C.ops
_has_torch_function = torch._C._has_torch_function
_is_compiling = torch.compiler.is_compiling


def _use_torch_ops(tensors) -> bool:
    """True where only the torch.ops path is right: tracing by torch.compile, and
    tensor subclasses or modes that override __torch_function__."""
    return _is_compiling() or _has_torch_function(tensors)


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
    branches = list(branches)
    if _use_torch_ops((weights, *branches)):
        return torch.ops.hwnas.weighted_sum.default(branches, weights)
    return _NATIVE.weighted_sum(branches, weights)


def _check_weighted_sum_inputs(branches, weights):
    """The C++ checks (csrc/ops/weighted_sum_checks.h), for fake and meta tensors."""
    where = "hwnas::weighted_sum"
    torch._check(len(branches) > 0, lambda: f"{where}: expected at least one branch, got an empty list")
    first = branches[0]
    for i, b in enumerate(branches[1:], start=1):
        torch._check(
            b.shape == first.shape,
            lambda: f"{where}: all branches must have the same shape; branch 0 has shape "
            f"{list(first.shape)} but branch {i} has shape {list(b.shape)}",
        )
        torch._check(
            b.dtype == first.dtype,
            lambda: f"{where}: all branches must have the same dtype; branch 0 is {first.dtype} "
            f"but branch {i} is {b.dtype}",
        )
        torch._check(
            b.device == first.device,
            lambda: f"{where}: all branches must be on the same device; branch 0 is on "
            f"{first.device} but branch {i} is on {b.device}",
        )
    torch._check(
        weights.dim() in (1, 2),
        lambda: f"{where}: weights must have shape [N] (one mixture for the batch) or [B, N] "
        f"(one mixture per sample), got shape {list(weights.shape)}",
    )
    torch._check(
        weights.shape[-1] == len(branches),
        lambda: f"{where}: weights has N={weights.shape[-1]} entries along its last dimension "
        f"but {len(branches)} branches were given",
    )
    torch._check(
        weights.device == first.device,
        lambda: f"{where}: weights are on {weights.device} but the branches are on {first.device}",
    )


@torch.library.register_fake("hwnas::weighted_sum")
def _weighted_sum_fake(branches, weights):
    _check_weighted_sum_inputs(branches, weights)
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


# Autograd of weighted_sum is registered in C++ (csrc/ops/autograd/), where it costs
# no Python call per step; its backward is the fused hwnas::weighted_sum_backward op.


# --------------------------------------------------------------------------- channel_mask

__all__ += ["channel_mask"]


def channel_mask(x: Tensor, gates: Tensor, widths: Sequence[int]) -> Tensor:
    """FBNetV2 channel masking: a weighted sum of K prefix channel masks, in one pass.

    ``out[:, c] = x[:, c] * sum_{i : c < widths[i]} gates[..., i]``, which equals
    ``sum_i gates[i] * (x * mask_i)`` with ``mask_i`` keeping the first ``widths[i]``
    channels, without building any mask or masked copy. Channels at or beyond
    ``widths[-1]`` are zero. A channel whose scale is exactly zero is written as zero
    without reading ``x`` (so NaN there does not propagate), as after a hard sample.

    The backward computes the gradient of ``x`` and of every gate in one pass; the
    gradient of gate ``i`` is ``sum_{c < widths[i]} <grad_out[:, c], x[:, c]>``. Only
    ``x`` (when the gates need a gradient) and the gates are saved for it.

    Args:
        x: ``[B, C, ...]`` (any rank >= 2, any dense layout such as channels_last),
            dtype float32, float64, bfloat16 or float16.
        gates: ``[K]`` (one channel choice for the whole batch) or ``[B, K]`` (one per
            sample). Same dtype as ``x``, or float32 with bfloat16/float16 ``x``;
            accumulation is in float32 (float64 for float64).
        widths: K strictly increasing positive channel counts, ``widths[-1] <= C``.

    Returns:
        Tensor of ``x``'s shape, dtype and layout.

    Raises:
        TypeError: for widths that are not integers (a string, floats, bools).
        RuntimeError: for widths that do not increase, are not positive, exceed C or
            disagree with K, and for gates of the wrong rank, batch, dtype or device.
    """
    if isinstance(widths, (str, bytes)) or any(isinstance(w, (bool, float)) for w in widths):
        # int() would read "258" as [2, 5, 8] and 2.7 as 2: a mistake to report, not to round.
        raise TypeError(f"channel_mask: widths must be a sequence of integers, got {widths!r}")
    widths = [int(w) for w in widths]
    if _use_torch_ops((x, gates)):
        return torch.ops.hwnas.channel_mask.default(x, gates, widths)
    return _NATIVE.channel_mask(x, gates, widths)


def _check_channel_mask_meta(where, x, gates, widths):
    # The same conditions as the C++ checks, so that tracing fails as eagerly does.
    torch._check(x.dim() >= 2, lambda: f"{where}: x must have shape [B, C, ...], got {tuple(x.shape)}")
    torch._check(
        gates.dim() in (1, 2), lambda: f"{where}: gates must have shape [K] or [B, K], got {tuple(gates.shape)}"
    )
    torch._check(
        gates.shape[-1] == len(widths),
        lambda: f"{where}: widths has {len(widths)} entries but gates has K={gates.shape[-1]}",
    )
    torch._check(
        gates.device == x.device,
        lambda: f"{where}: gates are on {gates.device} but x is on {x.device}; move them to the same device",
    )
    torch._check(len(widths) >= 1, lambda: f"{where}: expected at least one width")
    torch._check(
        all(a < b for a, b in zip(widths, widths[1:])) and widths[0] >= 1,
        lambda: f"{where}: widths must be positive and strictly increasing, got {list(widths)}",
    )
    torch._check(
        widths[-1] <= x.shape[1],
        lambda: f"{where}: the largest width {widths[-1]} exceeds the C={x.shape[1]} channels of x",
    )


@torch.library.register_fake("hwnas::channel_mask")
def _channel_mask_fake(x, gates, widths):
    _check_channel_mask_meta("hwnas::channel_mask", x, gates, widths)
    return torch.empty_like(x)


@torch.library.register_fake("hwnas::channel_mask_backward")
def _channel_mask_backward_fake(grad, x, gates, widths, x_needs_grad, gates_needs_grad):
    grad_x = torch.empty_like(grad) if x_needs_grad else grad.new_empty((0,))
    if gates_needs_grad:
        grad_gates = torch.empty_like(gates, memory_format=torch.contiguous_format)
    else:
        grad_gates = gates.new_empty((0,))
    return grad_x, grad_gates


# Autograd of channel_mask is registered in C++ (csrc/ops/autograd/), as weighted_sum's.


# --------------------------------------------------------------------------- depthwise_conv2d

__all__ += ["depthwise_conv2d"]


def _pair(value, name: str) -> list[int]:
    def whole(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if whole(value):
        return [value, value]
    pair = list(value) if isinstance(value, (tuple, list)) else None
    if pair is None or len(pair) != 2 or not all(whole(v) for v in pair):
        raise ValueError(f"depthwise_conv2d: {name} must be an int or 2 ints (height, width), got {value!r}")
    return pair


def depthwise_conv2d(x: Tensor, weight: Tensor, stride=1, padding=0, dilation=1) -> Tensor:
    """Depthwise 2-D convolution (one filter per channel, no bias) with a native backward.

    Equals ``torch.nn.functional.conv2d(x, weight, None, stride, padding, dilation,
    groups=C)``. The CPU kernels walk the channels of each position as one vector, so
    the backward costs about what the forward does; on an AVX2 CPU oneDNN ran the
    weight gradient of a depthwise convolution as GEMMs, which at a search's small
    feature maps made it most of a supernet step
    (``benchmarks/bench_depthwise_conv.py``). Results come back in ``x``'s layout
    (channels_last or contiguous); other layouts are copied once.

    Args:
        x: ``[B, C, H, W]``, float32, float64, bfloat16 or float16 (accumulation in
            float32, float64 for float64).
        weight: ``[C, 1, KH, KW]``, same dtype and device as ``x``.
        stride: int or (height, width), >= 1.
        padding: int or (height, width) zeros on each side, >= 0.
        dilation: int or (height, width), >= 1.

    Returns:
        ``[B, C, OH, OW]`` with ``OH = (H + 2 * padding - dilation * (KH - 1) - 1) // stride + 1``.

    Raises:
        ValueError: for a stride, padding or dilation that is not an int or 2 ints.
        RuntimeError: for a weight that is not ``[C, 1, KH, KW]``, mismatched dtypes or
            devices, a stride, dilation below 1 or padding below 0, an input smaller than
            the kernel, a second derivative or a forward-mode (dual) tangent: the op is
            differentiable once, in reverse mode.
    """
    stride, padding, dilation = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    if _use_torch_ops((x, weight)):
        return torch.ops.hwnas.depthwise_conv2d.default(x, weight, stride, padding, dilation)
    return _NATIVE.depthwise_conv2d(x, weight, stride, padding, dilation)


_DEPTHWISE_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def _depthwise_output_shape(x, weight, stride, padding, dilation) -> list:
    """The C++ checks (csrc/ops/depthwise_conv2d_checks.h) and the output shape, for fake tensors."""
    where = "hwnas::depthwise_conv2d"
    torch._check(x.dim() == 4, lambda: f"{where}: x must have shape [B, C, H, W], got shape {list(x.shape)}")
    torch._check(x.dtype in _DEPTHWISE_DTYPES,
                 lambda: f"{where}: x must be float32, float64, bfloat16 or float16, got {x.dtype}")
    torch._check(
        weight.dim() == 4 and weight.shape[0] == x.shape[1] and weight.shape[1] == 1,
        lambda: f"{where}: weight must have shape [C, 1, KH, KW] with C = {x.shape[1]}, got shape {list(weight.shape)}",
    )
    torch._check(weight.shape[2] >= 1 and weight.shape[3] >= 1,
                 lambda: f"{where}: weight must have at least one tap, got shape {list(weight.shape)}")
    torch._check(weight.dtype == x.dtype, lambda: f"{where}: weight must have x's dtype ({x.dtype}), got {weight.dtype}")
    torch._check(weight.device == x.device,
                 lambda: f"{where}: weight is on {weight.device} but x is on {x.device}; move them to the same device")
    for name, values, least in (("stride", stride, 1), ("padding", padding, 0), ("dilation", dilation, 1)):
        torch._check(len(values) == 2 and min(values) >= least,
                     lambda: f"{where}: {name} must be 2 entries >= {least}, got {list(values)}")
    out = []
    for axis in range(2):
        span = x.shape[2 + axis] + 2 * padding[axis] - dilation[axis] * (weight.shape[2 + axis] - 1) - 1
        torch._check(span >= 0, lambda: f"{where}: the output would be empty (input smaller than the dilated kernel)")
        out.append(span // stride[axis] + 1)
    return [x.shape[0], x.shape[1], *out]


def _like_layout_of(x, shape):
    # The kernels hand results back channels_last exactly when x's suggested layout is.
    from torch._prims_common import suggest_memory_format

    return x.new_empty(shape).contiguous(memory_format=suggest_memory_format(x))


@torch.library.register_fake("hwnas::depthwise_conv2d")
def _depthwise_conv2d_fake(x, weight, stride, padding, dilation):
    return _like_layout_of(x, _depthwise_output_shape(x, weight, stride, padding, dilation))


@torch.library.register_fake("hwnas::depthwise_conv2d_backward")
def _depthwise_conv2d_backward_fake(grad, x, weight, stride, padding, dilation, x_needs_grad, weight_needs_grad):
    out_shape = _depthwise_output_shape(x, weight, stride, padding, dilation)
    where = "hwnas::depthwise_conv2d_backward"
    torch._check(list(grad.shape) == out_shape,
                 lambda: f"{where}: grad must have the output's shape {out_shape}, got {list(grad.shape)}")
    torch._check(grad.dtype == x.dtype, lambda: f"{where}: grad must have dtype {x.dtype}, got {grad.dtype}")
    torch._check(grad.device == x.device,
                 lambda: f"{where}: grad is on {grad.device} but the inputs are on {x.device}")
    grad_x = _like_layout_of(x, x.shape) if x_needs_grad else x.new_empty((0,))
    grad_weight = weight.new_empty(weight.shape) if weight_needs_grad else weight.new_empty((0,))
    return grad_x, grad_weight


# Autograd of depthwise_conv2d is registered in C++ (csrc/ops/autograd/), as weighted_sum's.


__all__ += ["cpu_pool_stats", "release_cpu_pool", "set_cpu_pool_limit"]


def cpu_pool_stats() -> dict[str, int]:
    """Statistics of the CPU buffer pool behind the tensors the fused ops return.

    The CPU kernels take their outputs and gradients of 128 KiB or more from a cache
    of freed blocks instead of the system allocator, which would give such blocks
    back to the OS and fault them in again, page by page, on the next training step.
    The cache keeps at most ``HWNAS_CPU_POOL_MB`` MiB (default 1024; 0 turns it off)
    of unused blocks.

    Returns:
        ``cached_bytes`` (held while unused), ``limit_bytes`` (the cap), ``hits`` and
        ``misses`` (requests served from the cache, and those that allocated).
    """
    return dict(_NATIVE.cpu_pool_stats())


def release_cpu_pool() -> None:
    """Frees every unused block the CPU buffer pool holds (live tensors are untouched)."""
    _NATIVE.release_cpu_pool()


def set_cpu_pool_limit(megabytes: float) -> None:
    """Caps the unused memory the CPU buffer pool keeps, in MiB; 0 turns pooling off.

    Also frees what the pool holds now. The starting cap comes from the environment
    variable ``HWNAS_CPU_POOL_MB``.
    """
    if not (megabytes >= 0 and math.isfinite(megabytes)):
        raise ValueError(f"set_cpu_pool_limit: megabytes must be a finite number >= 0, got {megabytes}")
    _NATIVE.set_cpu_pool_limit(int(megabytes * (1 << 20)))


def _warn_about_an_unreadable_pool_setting() -> None:
    # The native pool reads HWNAS_CPU_POOL_MB once, on its own, and cannot report a value
    # it could not use; say so here rather than run with a cap the user did not ask for.
    value = os.environ.get("HWNAS_CPU_POOL_MB", "").strip()
    if value and not value.isdigit():
        limit_mb = cpu_pool_stats()["limit_bytes"] / (1 << 20)
        warnings.warn(f"HWNAS_CPU_POOL_MB={value!r} is not a whole number of MiB >= 0; the CPU buffer pool "
                      f"keeps at most {limit_mb:g} MiB", stacklevel=2)


_warn_about_an_unreadable_pool_setting()
