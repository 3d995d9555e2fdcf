// Schema of hwnas::depthwise_conv2d: a depthwise 2-D convolution (one KH x KW filter
// per channel, groups == channels, no bias) with its own backward.
//
//   out[b, c, oh, ow] = sum_{kh, kw} weight[c, 0, kh, kw] * x[b, c, ih, iw],
//   ih = oh * stride[0] - padding[0] + kh * dilation[0] (zero outside the input; same for w)
//
// Why hwnas has its own: every FBNet / MobileNetV2 block has a depthwise convolution,
// and on an AVX2 CPU without AVX-512 (AMD EPYC, family 25) oneDNN ran its weight
// gradient with the GEMM-based implementation ("x64:gemm:jit" in ONEDNN_VERBOSE). At
// the small feature maps of a search on small images the depthwise convolutions took
// 1.0 s of a 1.4 s supernet step (batch 64, 8x8 digits, 1 thread).
// Kernels live in cpu/ and cuda/; autograd is in autograd/, the fake kernel in
// hwnas/ops.py.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(hwnas, m) {
  m.def("depthwise_conv2d(Tensor x, Tensor weight, int[2] stride, int[2] padding, int[2] dilation) -> Tensor");
  // The gradients of x and of weight in one call. Both inputs are always passed: x's
  // spatial size cannot be recovered from grad's when the stride is above 1.
  // Returns (grad_x or an empty [0] tensor, grad_weight or an empty [0] tensor).
  m.def(
      "depthwise_conv2d_backward(Tensor grad, Tensor x, Tensor weight, int[2] stride, int[2] padding, "
      "int[2] dilation, bool x_needs_grad, bool weight_needs_grad) -> (Tensor, Tensor)");
}
