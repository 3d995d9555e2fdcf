"""hwnas.ops calls typed native entry points; they must behave exactly like torch.ops."""

import pytest
import torch
from torch.overrides import TorchFunctionMode

from hwnas.ops import channel_mask, depthwise_conv2d, weighted_sum


class RecordingMode(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


def test_same_results_as_torch_ops():
    xs, w = [torch.randn(2, 5, 3) for _ in range(4)], torch.softmax(torch.randn(4), 0)
    torch.testing.assert_close(weighted_sum(xs, w), torch.ops.hwnas.weighted_sum(xs, w), rtol=0, atol=0)
    x, g = torch.randn(2, 6, 3), torch.tensor([0.3, 0.7])
    torch.testing.assert_close(channel_mask(x, g, [2, 6]), torch.ops.hwnas.channel_mask(x, g, [2, 6]), rtol=0, atol=0)


def test_torch_function_modes_still_see_the_ops():
    mode = RecordingMode()
    with mode:
        weighted_sum([torch.randn(3), torch.randn(3)], torch.tensor([0.5, 0.5]))
        channel_mask(torch.randn(1, 4, 2), torch.tensor([1.0]), [4])
    assert "hwnas.weighted_sum.default" in mode.seen
    assert "hwnas.channel_mask.default" in mode.seen


def test_errors_are_clean_runtime_errors():
    with pytest.raises(RuntimeError) as info:
        weighted_sum([torch.randn(3), torch.randn(4)], torch.tensor([0.5, 0.5]))
    message = str(info.value)
    assert message.startswith("hwnas::weighted_sum: all branches must have the same shape")
    assert "Exception raised from" not in message  # no C++ backtrace in what the user sees
    with pytest.raises(RuntimeError, match="hwnas::channel_mask"):
        channel_mask(torch.randn(1, 4, 2), torch.tensor([0.5, 0.5]), [3, 2])


def test_gradients_flow_through_the_fast_path():
    xs = [torch.randn(4, requires_grad=True) for _ in range(2)]
    w = torch.tensor([0.25, 0.75], requires_grad=True)
    out = weighted_sum(xs, w)
    assert out.grad_fn is not None
    out.sum().backward()
    torch.testing.assert_close(xs[1].grad, torch.full((4,), 0.75))
    torch.testing.assert_close(w.grad, torch.stack([x.detach().sum() for x in xs]))
    with torch.no_grad():
        assert weighted_sum(xs, w).grad_fn is None


def test_depthwise_conv2d_entry_point():
    x, w = torch.randn(2, 3, 6, 6), torch.randn(3, 1, 3, 3)
    torch.testing.assert_close(depthwise_conv2d(x, w, 2, 1), torch.ops.hwnas.depthwise_conv2d(x, w, [2, 2], [1, 1], [1, 1]),
                               rtol=0, atol=0)
    mode = RecordingMode()
    with mode:
        depthwise_conv2d(x, w, 1, 1)
    assert "hwnas.depthwise_conv2d.default" in mode.seen
