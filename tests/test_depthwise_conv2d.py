"""hwnas.ops.depthwise_conv2d against torch.nn.functional.conv2d(..., groups=C) in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnas.ops import depthwise_conv2d

TOL = {
    torch.float64: dict(atol=1e-12, rtol=1e-12),
    torch.float32: dict(atol=1e-5, rtol=1e-5),
    torch.bfloat16: dict(atol=5e-2, rtol=5e-2),
    torch.float16: dict(atol=5e-3, rtol=5e-3),
}
# Weight gradients sum over every output position: a looser bound in low precision.
WEIGHT_GRAD_TOL = {
    torch.float64: dict(atol=1e-11, rtol=1e-11),
    torch.float32: dict(atol=1e-4, rtol=1e-4),
    torch.bfloat16: dict(atol=0.5, rtol=5e-2),
    torch.float16: dict(atol=5e-2, rtol=1e-2),
}

LAYOUTS = {
    "contiguous": lambda t: t,
    "channels_last": lambda t: t.to(memory_format=torch.channels_last),
    "strided_slice": lambda t: t[:, :, :, ::2],  # neither layout: computed in a copy
}

# (batch, channels, height, width, kernel, stride, padding, dilation)
CASES = [
    (2, 5, 7, 6, (3, 3), (1, 1), (1, 1), (1, 1)),
    (3, 13, 8, 8, (5, 5), (2, 2), (2, 2), (1, 1)),
    (2, 37, 9, 5, (3, 5), (2, 1), (1, 2), (1, 1)),  # non-square kernel and stride
    (2, 4, 7, 7, (3, 3), (2, 2), (0, 0), (2, 2)),  # dilation, no padding
    (1, 3, 2, 2, (5, 5), (1, 1), (2, 2), (1, 1)),  # most taps read padding
    (4, 1, 5, 4, (1, 1), (1, 1), (0, 0), (1, 1)),
]


def conv2d_float64(x, w, stride, padding, dilation):
    """The eager reference: PyTorch's grouped convolution, in float64."""
    return F.conv2d(x.double(), w.double(), None, stride, padding, dilation, groups=x.shape[1])


def check_against_reference(x, w, stride, padding, dilation):
    """Output, input gradient and weight gradient against the reference; returns (out, grad_x)."""
    dtype = x.dtype
    xd = x.detach().double().requires_grad_()
    wd = w.detach().double().requires_grad_()
    want = conv2d_float64(xd, wd, stride, padding, dilation)
    grad = torch.randn(want.shape).to(dtype)
    want_gx, want_gw = torch.autograd.grad(want, (xd, wd), grad.double())

    xn = x.detach().clone().requires_grad_()
    wn = w.detach().clone().requires_grad_()
    out = depthwise_conv2d(xn, wn, stride, padding, dilation)
    gx, gw = torch.autograd.grad(out, (xn, wn), grad)
    assert out.dtype == gx.dtype == gw.dtype == dtype
    torch.testing.assert_close(out.double(), want.detach(), **TOL[dtype])
    torch.testing.assert_close(gx.double(), want_gx, **TOL[dtype])
    torch.testing.assert_close(gw.double(), want_gw, **WEIGHT_GRAD_TOL[dtype])
    return out, gx


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_matches_conv2d(case, dtype, layout):
    b, c, h, width, kernel, stride, padding, dilation = case
    wide = 2 * width if layout == "strided_slice" else width
    x = LAYOUTS[layout](torch.randn(b, c, h, wide, dtype=dtype))
    w = torch.randn(c, 1, *kernel, dtype=dtype)
    out, gx = check_against_reference(x, w, stride, padding, dilation)
    if layout == "channels_last":
        assert out.is_contiguous(memory_format=torch.channels_last)
        assert gx.is_contiguous(memory_format=torch.channels_last)
    else:
        assert out.is_contiguous() and gx.is_contiguous()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision(dtype):
    x = torch.randn(3, 24, 6, 6).to(dtype).to(memory_format=torch.channels_last)
    w = (0.3 * torch.randn(24, 1, 3, 3)).to(dtype)
    check_against_reference(x, w, (1, 1), (1, 1), (1, 1))


def test_gradcheck_float64():
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 1, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: depthwise_conv2d(x, w, (2, 1), (1, 1), (1, 2)), (x, w))
    xl = x.detach().to(memory_format=torch.channels_last).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w: depthwise_conv2d(x, w, 1, 1, 1), (xl, w))


def test_int_arguments_mean_both_axes():
    x, w = torch.randn(2, 4, 9, 9), torch.randn(4, 1, 3, 3)
    torch.testing.assert_close(depthwise_conv2d(x, w, 2, 1, 1), depthwise_conv2d(x, w, (2, 2), (1, 1), (1, 1)),
                               rtol=0, atol=0)


def test_only_one_gradient_asked():
    x = torch.randn(2, 6, 5, 5, requires_grad=True)
    w = torch.randn(6, 1, 3, 3)
    depthwise_conv2d(x, w, 1, 1, 1).sum().backward()
    xd = x.detach().double().requires_grad_()
    conv2d_float64(xd, w, 1, 1, 1).sum().backward()
    torch.testing.assert_close(x.grad.double(), xd.grad, atol=1e-5, rtol=1e-5)
    w.requires_grad_()
    out = depthwise_conv2d(x.detach(), w, 1, 1, 1)
    (gw,) = torch.autograd.grad(out.sum(), (w,))
    wd = w.detach().double().requires_grad_()
    (want,) = torch.autograd.grad(conv2d_float64(x.detach(), wd, 1, 1, 1).sum(), (wd,))
    torch.testing.assert_close(gw.double(), want, atol=1e-4, rtol=1e-4)


def test_no_graph_without_gradients():
    x, w = torch.randn(2, 3, 4, 4), torch.randn(3, 1, 3, 3, requires_grad=True)
    with torch.no_grad():
        assert depthwise_conv2d(x, w, 1, 1, 1).grad_fn is None
    assert depthwise_conv2d(x, w, 1, 1, 1).grad_fn is not None


def test_empty_batch():
    x = torch.randn(0, 4, 5, 5, requires_grad=True)
    w = torch.randn(4, 1, 3, 3, requires_grad=True)
    out = depthwise_conv2d(x, w, 1, 1, 1)
    assert out.shape == (0, 4, 5, 5)
    out.sum().backward()
    assert x.grad.shape == x.shape and torch.equal(w.grad, torch.zeros_like(w))


def test_weight_gradient_does_not_depend_on_thread_count():
    x = torch.randn(64, 48, 8, 8).to(memory_format=torch.channels_last)
    w = torch.randn(48, 1, 5, 5)
    grad = torch.randn(64, 48, 8, 8).to(memory_format=torch.channels_last)
    op = torch.ops.hwnas.depthwise_conv2d_backward.default
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = op(grad, x, w, [1, 1], [2, 2], [1, 1], True, True)
        torch.set_num_threads(2)
        two = op(grad, x, w, [1, 1], [2, 2], [1, 1], True, True)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


def test_opcheck():
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(2, 6, 5, 5).to(memory_format=fmt).requires_grad_()
        w = torch.randn(6, 1, 3, 3, requires_grad=True)
        torch.library.opcheck(torch.ops.hwnas.depthwise_conv2d.default, (x, w, [2, 1], [1, 1], [1, 1]))
    op = torch.ops.hwnas.depthwise_conv2d_backward.default
    x, w, grad = torch.randn(2, 6, 5, 5), torch.randn(6, 1, 3, 3), torch.randn(2, 6, 5, 5)
    for needs in ((True, True), (True, False), (False, True)):
        torch.library.opcheck(op, (grad, x, w, [1, 1], [1, 1], [1, 1], *needs))


def test_torch_compile_fullgraph():
    def block(x, w):
        return torch.relu(depthwise_conv2d(x, w, 1, 1, 1)) * 2.0

    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    w = torch.randn(8, 1, 3, 3, requires_grad=True)
    out = compiled(x, w)
    torch.testing.assert_close(out, block(x, w))
    out.sum().backward()
    grads = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    block(x, w).sum().backward()
    torch.testing.assert_close(grads[0], x.grad)
    torch.testing.assert_close(grads[1], w.grad)


@st.composite
def depthwise_cases(draw):
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    # Inputs at least as large as the dilated kernel minus the padding.
    h = draw(st.integers(max(1, dilation[0] * (kernel[0] - 1) + 1 - 2 * padding[0]), 9))
    w = draw(st.integers(max(1, dilation[1] * (kernel[1] - 1) + 1 - 2 * padding[1]), 9))
    batch, channels = draw(st.integers(1, 3)), draw(st.integers(1, 20))
    channels_last = draw(st.booleans())
    return batch, channels, h, w, kernel, stride, padding, dilation, channels_last


@settings(max_examples=60, deadline=None)
@given(case=depthwise_cases())
def test_random_geometry_hypothesis(case):
    batch, channels, h, width, kernel, stride, padding, dilation, channels_last = case
    x = torch.randn(batch, channels, h, width, dtype=torch.float64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    w = torch.randn(channels, 1, *kernel, dtype=torch.float64)
    check_against_reference(x, w, stride, padding, dilation)


# --- bad input -----------------------------------------------------------------

BAD_INPUTS = [
    ("x rank 3", lambda: (torch.ones(2, 3, 4), torch.ones(3, 1, 3, 3), 1, 1), r"shape \[B, C, H, W\]"),
    ("weight channels", lambda: (torch.ones(2, 3, 4, 4), torch.ones(4, 1, 3, 3), 1, 1), "C = 3"),
    ("channel multiplier", lambda: (torch.ones(2, 3, 4, 4), torch.ones(3, 2, 3, 3), 1, 1), "not depthwise"),
    ("dtype mismatch", lambda: (torch.ones(2, 3, 4, 4), torch.ones(3, 1, 3, 3, dtype=torch.float64), 1, 1), "dtype"),
    ("integer x", lambda: (torch.ones(2, 3, 4, 4, dtype=torch.int32), torch.ones(3, 1, 3, 3, dtype=torch.int32), 1, 1),
     "float32, float64"),
    ("zero stride", lambda: (torch.ones(2, 3, 4, 4), torch.ones(3, 1, 3, 3), 0, 1), "stride must be >= 1"),
    ("negative padding", lambda: (torch.ones(2, 3, 4, 4), torch.ones(3, 1, 3, 3), 1, -1), "padding must be >= 0"),
    ("input smaller than kernel", lambda: (torch.ones(2, 3, 2, 2), torch.ones(3, 1, 5, 5), 1, 0), "output would be empty"),
    # A meta weight sends the call to the fake kernel (Meta outranks CPU), so this checks
    # the fake's message; test_ops_cuda.py checks the C++ one with a CUDA x.
    ("device mismatch (fake kernel)", lambda: (torch.ones(2, 3, 4, 4), torch.ones(3, 1, 3, 3, device="meta"), 1, 1),
     "weight is on meta but x is on cpu; move them to the same device"),
]


@pytest.mark.parametrize("name,make,message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_clear_error(name, make, message):
    x, w, stride, padding = make()
    with pytest.raises(RuntimeError, match=message):
        depthwise_conv2d(x, w, stride, padding)


@pytest.mark.parametrize("stride", [(1, 1, 1), (1.5, 2), 2.0, "2", (True, 1)])
def test_bad_argument_type_or_length(stride):
    with pytest.raises(ValueError, match="stride must be an int or 2 ints"):
        depthwise_conv2d(torch.ones(1, 2, 4, 4), torch.ones(2, 1, 3, 3), stride)


def test_zero_channels():
    x = torch.randn(2, 0, 5, 5, requires_grad=True)
    w = torch.randn(0, 1, 3, 3, requires_grad=True)
    out = depthwise_conv2d(x, w, 1, 1)
    assert out.shape == (2, 0, 5, 5)
    out.sum().backward()
    assert x.grad.shape == x.shape and w.grad.shape == w.shape


FAKE_BAD_INPUTS = [
    ("no taps", (2, 3, 5, 5), (3, 1, 0, 3), torch.float32, "at least one tap"),
    ("integer x", (2, 3, 5, 5), (3, 1, 3, 3), torch.int32, "float32, float64"),
]


@pytest.mark.parametrize("name,x_shape,w_shape,dtype,message", FAKE_BAD_INPUTS, ids=[b[0] for b in FAKE_BAD_INPUTS])
def test_fake_kernel_refuses_what_the_native_kernel_refuses(name, x_shape, w_shape, dtype, message):
    from torch._subclasses.fake_tensor import FakeTensorMode

    make = (lambda shape: torch.ones(shape, dtype=dtype))
    with pytest.raises(RuntimeError, match=message):  # the C++ check
        torch.ops.hwnas.depthwise_conv2d(make(x_shape), make(w_shape), [1, 1], [1, 1], [1, 1])
    with FakeTensorMode() as mode:
        x, w = mode.from_tensor(make(x_shape)), mode.from_tensor(make(w_shape))
        with pytest.raises(RuntimeError, match=message):  # the fake kernel's
            torch.ops.hwnas.depthwise_conv2d(x, w, [1, 1], [1, 1], [1, 1])


def test_fake_backward_checks_grad_like_the_native_kernel():
    from torch._subclasses.fake_tensor import FakeTensorMode

    args = [torch.ones(2, 3, 3, 3), torch.ones(2, 3, 4, 4), torch.ones(3, 1, 3, 3)]
    with FakeTensorMode() as mode:
        fakes = [mode.from_tensor(t) for t in args]
        with pytest.raises(RuntimeError, match="grad must have the output's shape"):
            torch.ops.hwnas.depthwise_conv2d_backward(*fakes, [1, 1], [1, 1], [1, 1], True, True)
        good_grad = mode.from_tensor(torch.ones(2, 3, 4, 4, dtype=torch.float64))
        with pytest.raises(RuntimeError, match="grad must have dtype"):
            torch.ops.hwnas.depthwise_conv2d_backward(good_grad, *fakes[1:], [1, 1], [1, 1], [1, 1], True, True)


def test_backward_checks_grad_shape():
    with pytest.raises(RuntimeError, match="grad must have the output's shape"):
        torch.ops.hwnas.depthwise_conv2d_backward(torch.ones(2, 3, 3, 3), torch.ones(2, 3, 4, 4),
                                                   torch.ones(3, 1, 3, 3), [1, 1], [1, 1], [1, 1], True, True)
