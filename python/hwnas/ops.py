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
import operator
import os
import reprlib
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
        TypeError: for branches that are not a sequence of tensors, or weights that
            are not a tensor.
        RuntimeError: for an empty list, branches that differ in shape, dtype or
            device, or weights of the wrong rank, length, dtype or device.
    """
    try:
        branches = list(branches)
    except TypeError:
        raise TypeError(f"weighted_sum: branches must be a sequence of tensors, got {_brief(branches)}") from None
    if _use_torch_ops((weights, *branches)):
        _refuse_weighted_sum_arguments(branches, weights)
        return torch.ops.hwnas.weighted_sum.default(branches, weights)
    try:
        return _NATIVE.weighted_sum(branches, weights)
    except TypeError:
        # Only pybind raises TypeError here, for an argument that is not a tensor. The
        # types are looked at after the fact so that a call with good ones pays nothing.
        _refuse_weighted_sum_arguments(branches, weights)
        raise


# Tensors and objects that stand for them through __torch_function__ (which go the
# torch.ops way): what the argument checks accept as a tensor.
_is_tensor_like = torch.overrides.is_tensor_like


class _ShortRepr(reprlib.Repr):
    # Tensors of more than a few values as their shape and dtype: the values would drown
    # the message.
    def repr1(self, x, level):
        if isinstance(x, Tensor) and x.numel() > 4:
            return f"tensor(shape={list(x.shape)}, dtype={x.dtype})"
        return super().repr1(x, level)


def _brief(value) -> str:
    """The type and a short repr of a value, for messages (never a whole tensor)."""
    return f"{type(value).__name__} {_ShortRepr().repr(value)}"


def _refuse_weighted_sum_arguments(branches, weights):
    """Raises a TypeError that names the argument that is not a tensor, if one is not.

    Without it, pybind refuses the call with "incompatible function arguments" and prints
    every tensor it was given, and torch.ops with a message about the schema."""
    for i, b in enumerate(branches):
        if not _is_tensor_like(b):
            raise TypeError(f"weighted_sum: branches must all be tensors, but branches[{i}] is {_brief(b)}")
    if not _is_tensor_like(weights):
        raise TypeError(
            f"weighted_sum: weights must be a tensor of shape [N] or [B, N] (e.g. torch.tensor(...)), "
            f"got {_brief(weights)}"
        )


# The names the C++ checks print for dtypes (c10::toString(ScalarType)), so that a fake or
# meta kernel refuses an input with the very message the CPU or CUDA kernel gives.
_CPP_DTYPE_NAMES = {
    torch.float32: "Float", torch.float64: "Double", torch.bfloat16: "BFloat16", torch.float16: "Half",
    torch.int64: "Long", torch.int32: "Int", torch.int16: "Short", torch.int8: "Char", torch.uint8: "Byte",
    torch.bool: "Bool", torch.complex32: "ComplexHalf", torch.complex64: "ComplexFloat",
    torch.complex128: "ComplexDouble",
}
_SUPPORTED_FLOATS = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
_REDUCED_FLOATS = (torch.bfloat16, torch.float16)


def _cpp_name(dtype) -> str:
    return _CPP_DTYPE_NAMES.get(dtype, str(dtype))


def _check_mixing_dtype(where, what, value_dtype, like, like_dtype):
    """check_mixture_weights' and check_channel_gates' dtype rule: `like`'s dtype, or
    float32 with bfloat16/float16 data."""
    torch._check(
        value_dtype == like_dtype or (value_dtype == torch.float32 and like_dtype in _REDUCED_FLOATS),
        lambda: f"{where}: {what} must have {like} dtype ({_cpp_name(like_dtype)})"
        f"{' or float32' if like_dtype in _REDUCED_FLOATS else ''}, got {_cpp_name(value_dtype)}",
    )


def _check_mixture_weights(where, weights, num_branches, branch_shape, branch_dtype, branch_device):
    """check_mixture_weights (csrc/ops/weighted_sum_checks.h): the same conditions, order
    and messages, so that tracing and meta tensors fail as the kernels do."""
    torch._check(
        weights.dim() in (1, 2),
        lambda: f"{where}: weights must have shape [N] (one mixture for the batch) or [B, N] "
        f"(one mixture per sample), got shape {list(weights.shape)}",
    )
    torch._check(
        weights.shape[-1] == num_branches,
        lambda: f"{where}: weights has N={weights.shape[-1]} entries along its last dimension but "
        f"{num_branches} branches were given",
    )
    _check_mixing_dtype(where, "weights", weights.dtype, "the branches'", branch_dtype)
    torch._check(
        weights.device == branch_device,
        lambda: f"{where}: weights are on {weights.device} but the branches are on {branch_device}"
        "; move them to the same device",
    )
    if weights.dim() == 2:
        torch._check(
            len(branch_shape) > 0 and branch_shape[0] == weights.shape[0],
            lambda: f"{where}: per-sample weights of shape {list(weights.shape)} need branches whose first "
            f"(batch) dimension is B={weights.shape[0]}, got branches of shape {list(branch_shape)}",
        )


def _check_weighted_sum_inputs(branches, weights, where="hwnas::weighted_sum"):
    """check_weighted_sum_inputs (csrc/ops/weighted_sum_checks.h), for fake and meta tensors."""
    torch._check(len(branches) > 0, lambda: f"{where}: expected at least one branch, got an empty list")
    first = branches[0]
    torch._check(
        first.dtype in _SUPPORTED_FLOATS,
        lambda: f"{where}: branches must be float32, float64, bfloat16 or float16, got {_cpp_name(first.dtype)}",
    )
    for i, b in enumerate(branches[1:], start=1):
        torch._check(
            b.shape == first.shape,
            lambda: f"{where}: all branches must have the same shape; branch 0 has shape "
            f"{list(first.shape)} but branch {i} has shape {list(b.shape)}",
        )
        torch._check(
            b.dtype == first.dtype,
            lambda: f"{where}: all branches must have the same dtype; branch 0 is {_cpp_name(first.dtype)} "
            f"but branch {i} is {_cpp_name(b.dtype)}",
        )
        torch._check(
            b.device == first.device,
            lambda: f"{where}: all branches must be on the same device; branch 0 is on "
            f"{first.device} but branch {i} is on {b.device}",
        )
    _check_mixture_weights(where, weights, len(branches), first.shape, first.dtype, first.device)


# The layout rule of the kernels (csrc/ops/common/dense_layout.h), for fake tensors: the
# outputs get the exact strides of the tensors the kernels walk, which are the inputs
# when they share one dense layout and contiguous copies otherwise.


def _same_layout(a, b) -> bool:
    # Strides of size-1 dimensions do not matter: those dimensions are never stepped over.
    return a.shape == b.shape and all(n <= 1 or sa == sb for n, sa, sb in zip(a.shape, a.stride(), b.stride()))


def _batch_is_outermost(t) -> bool:
    if t.dim() == 0 or t.shape[0] <= 1 or t.numel() == 0:
        return True
    return t.stride(0) == t.numel() // t.shape[0]


def _is_dense(t) -> bool:
    from torch._prims_common import is_non_overlapping_and_dense_or_false

    return is_non_overlapping_and_dense_or_false(t)


def _walked_layout(tensors, need_batch_outermost):
    """with_shared_dense_layout(tensors, need_batch_outermost)[0]: the tensor whose
    strides the kernels give their outputs."""
    first = tensors[0]
    shared = _is_dense(first) and (not need_batch_outermost or _batch_is_outermost(first))
    shared = shared and all(_same_layout(t, first) for t in tensors[1:])
    # Tensor.contiguous() returns the tensor itself, strides of size-1 dimensions and
    # all, when it already is contiguous: as at::Tensor::contiguous does.
    return first if shared else first.contiguous()


def _empty_with_strides_of(reference, dtype=None):
    return torch.empty_strided(
        reference.shape, reference.stride(), dtype=dtype or reference.dtype, device=reference.device
    )


@torch.library.register_fake("hwnas::weighted_sum")
def _weighted_sum_fake(branches, weights):
    _check_weighted_sum_inputs(branches, weights)
    return _empty_with_strides_of(_walked_layout(branches, need_batch_outermost=weights.dim() == 2))


@torch.library.register_fake("hwnas::weighted_sum_backward")
def _weighted_sum_backward_fake(grad, branches, weights, branches_need_grad, weights_need_grad):
    where = "hwnas::weighted_sum_backward"
    n = weights.shape[-1]
    per_sample = weights.dim() == 2
    if weights_need_grad:
        torch._check(
            len(branches) == n, lambda: f"{where}: the weight gradient needs the {n} branches, got {len(branches)}"
        )
        _check_weighted_sum_inputs(branches, weights, where)
        torch._check(
            branches[0].shape == grad.shape,
            lambda: f"{where}: grad has shape {list(grad.shape)} but the branches have shape "
            f"{list(branches[0].shape)}",
        )
        # like_layout(grad, the branches' walked layout).
        reference = _walked_layout(branches, per_sample)
        walked_grad = grad if _same_layout(grad, reference) and _is_dense(grad) else reference
    else:
        _check_mixture_weights(where, weights, n, grad.shape, grad.dtype, grad.device)
        walked_grad = _walked_layout([grad], per_sample)
    grad_branches = [_empty_with_strides_of(walked_grad, grad.dtype) for _ in range(n)] if branches_need_grad else []
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
        TypeError: for x or gates that are not tensors, and widths that are not a
            sequence of integers (an int, a string, floats or float tensors, bools).
        RuntimeError: for widths that do not increase, are not positive, exceed C
            (any beyond 64 bits does) or disagree with K, and for gates of the wrong
            rank, batch, dtype or device.
    """
    # Fast path: a list or tuple of Python ints in range, what a layer passes every step.
    if type(widths) is list or type(widths) is tuple:
        for w in widths:
            if type(w) is not int or not -_INT64_LIMIT <= w < _INT64_LIMIT:
                widths = _channel_widths(widths, x)
                break
    else:
        widths = _channel_widths(widths, x)
    if _use_torch_ops((x, gates)):
        _refuse_channel_mask_arguments(x, gates)
        return torch.ops.hwnas.channel_mask.default(x, gates, widths)
    try:
        return _NATIVE.channel_mask(x, gates, widths)
    except TypeError:
        # Only pybind raises TypeError here (see weighted_sum).
        _refuse_channel_mask_arguments(x, gates)
        raise


def _refuse_channel_mask_arguments(x, gates):
    """Raises a TypeError that names x or gates if it is not a tensor (see
    _refuse_weighted_sum_arguments)."""
    if not _is_tensor_like(x):
        raise TypeError(f"channel_mask: x must be a tensor of shape [B, C, ...], got {_brief(x)}")
    if not _is_tensor_like(gates):
        raise TypeError(
            f"channel_mask: gates must be a tensor of shape [K] or [B, K] (e.g. torch.tensor(...)), "
            f"got {_brief(gates)}"
        )


_INT64_LIMIT = 1 << 63


def _channel_widths(widths, x) -> list[int]:
    """widths as a list of Python ints, refusing anything that is not an integer.

    int() would read "258" as [2, 5, 8], 2.7 or tensor(2.7) as 2 and True as 1: mistakes
    to report, not to round. Integer tensors and numpy integers are integers.
    """
    try:
        if isinstance(widths, (str, bytes)):
            raise TypeError
        items = list(widths)
    except TypeError:  # an int, a 0-d tensor, None, ...
        raise TypeError(
            f"channel_mask: widths must be a sequence of integers (one channel count per gate), got {_brief(widths)}"
        ) from None
    result = []
    for i, w in enumerate(items):
        # operator.index refuses floats, float tensors and numpy floats, but takes Python
        # bools and bool tensors; a 1-element tensor of any rank passes it too.
        refused = isinstance(w, bool) or (isinstance(w, Tensor) and (w.dtype == torch.bool or w.dim() != 0))
        try:
            if refused:
                raise TypeError
            value = operator.index(w)
        except TypeError:
            raise TypeError(
                f"channel_mask: widths must be a sequence of integers (one channel count per gate), "
                f"but widths[{i}] is {_brief(w)}"
            ) from None
        if not -_INT64_LIMIT <= value < _INT64_LIMIT:
            # The kernels take 64-bit widths: a larger one is out of range for any x.
            channels = f"={x.shape[1]}" if isinstance(x, Tensor) and x.dim() >= 2 else ""
            raise RuntimeError(
                f"channel_mask: widths[{i}]={value} is out of range: widths are channel counts "
                f"between 1 and the C{channels} channels of x"
            )
        result.append(value)
    return result


def _check_channel_gates(where, gates, widths, x_shape, x_dtype, x_device):
    """check_channel_gates (csrc/ops/channel_mask_checks.h): the same conditions, order
    and messages, so that tracing and meta tensors fail as the kernels do."""
    torch._check(
        len(x_shape) >= 2,
        lambda: f"{where}: x must have shape [B, C, ...] (at least 2 dimensions), got shape {list(x_shape)}",
    )
    torch._check(
        gates.dim() in (1, 2),
        lambda: f"{where}: gates must have shape [K] (one choice for the batch) or [B, K] "
        f"(one choice per sample), got shape {list(gates.shape)}",
    )
    k = gates.shape[-1]
    torch._check(
        len(widths) == k,
        lambda: f"{where}: widths has {len(widths)} entries but gates has K={k} along its last dimension; "
        "give one width per gate",
    )
    torch._check(k >= 1, lambda: f"{where}: expected at least one width, got none")
    torch._check(
        widths[0] >= 1, lambda: f"{where}: widths must be positive, got widths[0]={widths[0]} in widths={list(widths)}"
    )
    for i in range(1, len(widths)):
        torch._check(
            widths[i] > widths[i - 1],
            lambda: f"{where}: widths must be strictly increasing, but widths[{i}]={widths[i]} <= "
            f"widths[{i - 1}]={widths[i - 1]} in widths={list(widths)}",
        )
    torch._check(
        widths[-1] <= x_shape[1],
        lambda: f"{where}: the largest width {widths[-1]} exceeds the C={x_shape[1]} channels of x "
        f"(shape {list(x_shape)})",
    )
    _check_mixing_dtype(where, "gates", gates.dtype, "x's", x_dtype)
    torch._check(
        gates.device == x_device,
        lambda: f"{where}: gates are on {gates.device} but x is on {x_device}; move them to the same device",
    )
    if gates.dim() == 2:
        torch._check(
            gates.shape[0] == x_shape[0],
            lambda: f"{where}: per-sample gates of shape {list(gates.shape)} need x whose first (batch) "
            f"dimension is B={gates.shape[0]}, got x of shape {list(x_shape)}",
        )


def _check_supported_float(where, what, dtype):
    torch._check(
        dtype in _SUPPORTED_FLOATS,
        lambda: f"{where}: {what} must be float32, float64, bfloat16 or float16, got {_cpp_name(dtype)}",
    )


@torch.library.register_fake("hwnas::channel_mask")
def _channel_mask_fake(x, gates, widths):
    # check_channel_mask_inputs.
    where = "hwnas::channel_mask"
    _check_supported_float(where, "x", x.dtype)
    _check_channel_gates(where, gates, widths, x.shape, x.dtype, x.device)
    # The kernels' output is empty_like(x): x's strides when x is dense.
    return torch.empty_like(x)


@torch.library.register_fake("hwnas::channel_mask_backward")
def _channel_mask_backward_fake(grad, x, gates, widths, x_needs_grad, gates_needs_grad):
    # plan_channel_mask_backward's checks (csrc/ops/channel_mask_backward_plan.h).
    where = "hwnas::channel_mask_backward"
    _check_supported_float(where, "grad", grad.dtype)
    _check_channel_gates(where, gates, widths, grad.shape, grad.dtype, grad.device)
    if gates_needs_grad:
        torch._check(
            x.shape == grad.shape and x.dtype == grad.dtype and x.device == grad.device,
            lambda: f"{where}: the gate gradient needs x shaped like grad ({list(grad.shape)}, "
            f"{_cpp_name(grad.dtype)}, {grad.device}), got x of shape {list(x.shape)}, {_cpp_name(x.dtype)}, "
            f"{x.device}",
        )
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
