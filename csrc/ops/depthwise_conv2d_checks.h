// Input validation for hwnas::depthwise_conv2d, shared by every backend so that a
// user sees the same message on the CPU and on a GPU.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "depthwise_conv2d_math.h"
#include "weighted_sum_checks.h"  // is_supported_float

namespace hwnas {
namespace ops {

inline void check_conv_pair(const char* where, const char* name, at::IntArrayRef v, int64_t least) {
  TORCH_CHECK(v.size() == 2, where, ": ", name, " must have 2 entries (height, width), got ", v);
  TORCH_CHECK(v[0] >= least && v[1] >= least, where, ": ", name, " must be >= ", least, ", got ", v);
}

// Checks x [B, C, H, W] and weight [C, 1, KH, KW] (dtype, device, geometry) and
// returns the geometry. `where` names the op in messages.
inline DepthwiseGeometry check_depthwise_conv2d_inputs(const char* where, at::IntArrayRef x_sizes,
                                                       c10::ScalarType x_dtype, c10::Device x_device,
                                                       const at::Tensor& weight, at::IntArrayRef stride,
                                                       at::IntArrayRef padding, at::IntArrayRef dilation) {
  TORCH_CHECK(x_sizes.size() == 4, where, ": x must have shape [B, C, H, W], got shape ", x_sizes);
  TORCH_CHECK(is_supported_float(x_dtype), where, ": x must be float32, float64, bfloat16 or float16, got ",
              x_dtype);
  const int64_t channels = x_sizes[1];
  TORCH_CHECK(weight.dim() == 4 && weight.size(0) == channels && weight.size(1) == 1, where,
              ": weight must have shape [C, 1, KH, KW] with C = ", channels,
              " (the channels of x, one filter each), got shape ", weight.sizes(),
              "; a convolution with more than one filter per channel is not depthwise "
              "(use torch.nn.functional.conv2d with groups)");
  TORCH_CHECK(weight.size(2) >= 1 && weight.size(3) >= 1, where, ": weight must have at least one tap, got shape ",
              weight.sizes());
  TORCH_CHECK(weight.scalar_type() == x_dtype, where, ": weight must have x's dtype (", x_dtype, "), got ",
              weight.scalar_type());
  TORCH_CHECK(weight.device() == x_device, where, ": weight is on ", weight.device(), " but x is on ", x_device,
              "; move them to the same device");
  check_conv_pair(where, "stride", stride, 1);
  check_conv_pair(where, "padding", padding, 0);
  check_conv_pair(where, "dilation", dilation, 1);
  DepthwiseGeometry g;
  g.batch = x_sizes[0];
  g.channels = channels;
  const int64_t kh = weight.size(2), kw = weight.size(3);
  g.h = ConvAxis{x_sizes[2], conv_output_size(x_sizes[2], kh, stride[0], padding[0], dilation[0]), kh, stride[0],
                 padding[0], dilation[0]};
  g.w = ConvAxis{x_sizes[3], conv_output_size(x_sizes[3], kw, stride[1], padding[1], dilation[1]), kw, stride[1],
                 padding[1], dilation[1]};
  TORCH_CHECK(g.h.out >= 1 && g.w.out >= 1, where, ": the output would be empty: input ", x_sizes[2], "x",
              x_sizes[3], " with kernel ", kh, "x", kw, ", padding ", padding, " and dilation ", dilation,
              " (the padded input must be at least as large as the dilated kernel)");
  return g;
}

// Checks the backward's grad against the forward's geometry.
inline void check_depthwise_conv2d_grad(const char* where, const at::Tensor& grad, const DepthwiseGeometry& g,
                                        c10::ScalarType dtype, c10::Device device) {
  const std::vector<int64_t> expected{g.batch, g.channels, g.h.out, g.w.out};
  TORCH_CHECK(grad.sizes() == at::IntArrayRef(expected), where, ": grad must have the output's shape ",
              at::IntArrayRef(expected), ", got ", grad.sizes());
  TORCH_CHECK(grad.scalar_type() == dtype, where, ": grad must have dtype ", dtype, ", got ", grad.scalar_type());
  TORCH_CHECK(grad.device() == device, where, ": grad is on ", grad.device(), " but the inputs are on ", device);
}

}  // namespace ops
}  // namespace hwnas
