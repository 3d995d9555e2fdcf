"""The fake (meta) kernels refuse what the CPU kernels refuse, with the same message; the
Python entry points name an argument of the wrong type instead of letting pybind print it."""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.overrides import TorchFunctionMode

from hwnas.ops import channel_mask, weighted_sum

F32, F64, BF16, I64 = torch.float32, torch.float64, torch.bfloat16, torch.int64
ws_backward = torch.ops.hwnas.weighted_sum_backward.default
cm_backward = torch.ops.hwnas.channel_mask_backward.default

# Each case builds its inputs with t(*shape, dtype=...) on the device under test.
BAD_CALLS = {
    # weighted_sum
    "ws float64 weights, float32 branches": lambda t: weighted_sum([t(2, 3)] * 2, t(2, dtype=F64)),
    "ws float64 weights, bfloat16 branches": lambda t: weighted_sum([t(2, 3, dtype=BF16)] * 2, t(2, dtype=F64)),
    "ws per-sample batch 5 vs 2": lambda t: weighted_sum([t(2, 3)] * 2, t(5, 2)),
    "ws integer branches": lambda t: weighted_sum([t(2, 3, dtype=I64)] * 2, t(2, dtype=I64)),
    "ws no branches": lambda t: weighted_sum([], t(0)),
    "ws shape mismatch": lambda t: weighted_sum([t(2, 3), t(2, 4)], t(2)),
    "ws dtype mismatch": lambda t: weighted_sum([t(2, 3), t(2, 3, dtype=F64)], t(2)),
    "ws weights rank 3": lambda t: weighted_sum([t(2, 3)], t(2, 1, 1)),
    "ws N mismatch": lambda t: weighted_sum([t(2, 3)] * 3, t(2)),
    "ws per-sample weights, 0-d branches": lambda t: weighted_sum([t(), t()], t(1, 2)),
    "ws backward without the branches": lambda t: ws_backward(t(2), [t(2)], t(3), True, True),
    "ws backward grad shape": lambda t: ws_backward(t(2, 4), [t(2, 3)] * 2, t(2), True, True),
    "ws backward weights dtype": lambda t: ws_backward(t(2, 3), [], t(2, dtype=F64), True, False),
    "ws backward per-sample batch": lambda t: ws_backward(t(2, 3), [], t(4, 2), True, False),
    # channel_mask
    "cm per-sample batch 7 vs 2": lambda t: channel_mask(t(2, 5, 3, 3), t(7, 3), [1, 3, 4]),
    "cm float64 gates, float32 x": lambda t: channel_mask(t(2, 5, 3, 3), t(3, dtype=F64), [1, 3, 4]),
    "cm float64 gates, bfloat16 x": lambda t: channel_mask(t(2, 5, dtype=BF16), t(1, dtype=F64), [3]),
    "cm integer x": lambda t: channel_mask(t(2, 6, dtype=torch.int32), t(1), [3]),
    "cm x rank 1": lambda t: channel_mask(t(6), t(1), [3]),
    "cm gates rank 3": lambda t: channel_mask(t(2, 6), t(2, 1, 1), [3]),
    "cm widths disagree with K": lambda t: channel_mask(t(2, 6), t(3), [2, 4]),
    "cm no widths": lambda t: channel_mask(t(2, 6), t(0), []),
    "cm width zero": lambda t: channel_mask(t(2, 6), t(2), [0, 3]),
    "cm widths decreasing": lambda t: channel_mask(t(2, 6), t(3), [2, 4, 3]),
    "cm width exceeds C": lambda t: channel_mask(t(2, 6), t(2), [3, 7]),
    "cm backward x unlike grad": lambda t: cm_backward(t(2, 4), t(2, 3), t(1), [2], True, True),
    "cm backward integer grad": lambda t: cm_backward(t(2, 4, dtype=I64), t(2, 4), t(1), [2], True, True),
    "cm backward per-sample batch": lambda t: cm_backward(t(2, 4), t(2, 4), t(3, 1), [2], True, True),
    "cm backward gates dtype": lambda t: cm_backward(t(2, 4), t(0), t(1, dtype=F64), [2], True, False),
}


def factory(device):
    return lambda *shape, dtype=F32: torch.zeros(shape, dtype=dtype, device=device)


def message_of(call, t):
    with pytest.raises(RuntimeError) as info:
        call(t)
    return str(info.value)


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_meta_tensors_are_refused_with_the_cpu_message(name):
    call = BAD_CALLS[name]
    on_cpu = message_of(call, factory("cpu"))
    assert on_cpu.startswith("hwnas::")
    # Some messages name the device the tensors are on.
    assert message_of(call, factory("meta")).replace("meta", "cpu") == on_cpu


@pytest.mark.parametrize("name", ["ws float64 weights, float32 branches", "cm per-sample batch 7 vs 2"])
def test_tracing_with_fake_tensors_is_refused_with_the_cpu_message(name):
    call = BAD_CALLS[name]
    on_cpu = message_of(call, factory("cpu"))
    with FakeTensorMode():
        assert on_cpu in message_of(call, factory("cpu"))


# --- arguments of the wrong type ----------------------------------------------------

x, g = torch.randn(2, 6, 3), torch.tensor([0.5, 0.5])
big = torch.randn(64, 64)

WRONG_TYPES = {
    "ws None branch": (lambda: weighted_sum([big, None], torch.ones(2)), r"branches\[1\] is NoneType None"),
    "ws nested list branch": (lambda: weighted_sum([big, [big]], torch.ones(2)), r"branches\[1\] is list"),
    "ws weights list": (lambda: weighted_sum([big, big], [0.5, 0.5]), r"weights must be a tensor of shape \[N\]"),
    "ws branches None": (lambda: weighted_sum(None, torch.ones(2)), "branches must be a sequence of tensors"),
    "cm gates list": (lambda: channel_mask(x, [0.5, 0.5], [2, 6]), r"gates must be a tensor of shape \[K\]"),
    "cm x list": (lambda: channel_mask([[1.0]], g, [2, 6]), r"x must be a tensor of shape \[B, C, ...\]"),
    "cm widths int": (lambda: channel_mask(x, torch.ones(1), 3), "widths must be a sequence of integers.*got int 3"),
}


class PassThrough(TorchFunctionMode):
    # Sends the entry points the torch.ops way (as under torch.compile).
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("path", ["native", "torch_ops"])
@pytest.mark.parametrize("name", list(WRONG_TYPES))
def test_arguments_of_the_wrong_type_are_named(name, path):
    call, message = WRONG_TYPES[name]
    with pytest.raises(TypeError, match=message) as info:
        if path == "torch_ops":
            with PassThrough():
                call()
        else:
            call()
    text = str(info.value)
    assert text.startswith(("weighted_sum: ", "channel_mask: "))
    assert "incompatible function arguments" not in text and len(text) < 200  # no tensor printed whole


def test_tensor_values_in_messages_are_summarised():
    with pytest.raises(TypeError) as info:
        weighted_sum([big, (big, big)], torch.ones(2))
    assert "tensor(shape=[64, 64], dtype=torch.float32)" in str(info.value)
