// Input validation for hwnas::channel_mask, shared by every backend so that a user
// sees the same message on the CPU and on a GPU.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "weighted_sum_checks.h"  // is_supported_float, is_reduced_float

namespace hwnas {
namespace ops {

// Checks gates [K] or [B, K] and widths against a tensor of the given shape, dtype
// and device whose dimension 1 holds the channels. `where` names the op in messages.
inline void check_channel_gates(
    const char* where,
    const at::Tensor& gates,
    at::IntArrayRef widths,
    at::IntArrayRef x_sizes,
    c10::ScalarType x_dtype,
    c10::Device x_device) {
  TORCH_CHECK(
      x_sizes.size() >= 2,
      where, ": x must have shape [B, C, ...] (at least 2 dimensions), got shape ", x_sizes);
  const int64_t channels = x_sizes[1];
  TORCH_CHECK(
      gates.dim() == 1 || gates.dim() == 2,
      where, ": gates must have shape [K] (one choice for the batch) or [B, K] ",
      "(one choice per sample), got shape ", gates.sizes());
  const int64_t k = gates.size(-1);
  TORCH_CHECK(
      static_cast<int64_t>(widths.size()) == k,
      where, ": widths has ", widths.size(), " entries but gates has K=", k,
      " along its last dimension; give one width per gate");
  TORCH_CHECK(k >= 1, where, ": expected at least one width, got none");
  TORCH_CHECK(
      widths[0] >= 1, where, ": widths must be positive, got widths[0]=", widths[0],
      " in widths=", widths);
  for (int64_t i = 1; i < k; ++i) {
    TORCH_CHECK(
        widths[i] > widths[i - 1],
        where, ": widths must be strictly increasing, but widths[", i, "]=", widths[i],
        " <= widths[", i - 1, "]=", widths[i - 1], " in widths=", widths);
  }
  TORCH_CHECK(
      widths[k - 1] <= channels,
      where, ": the largest width ", widths[k - 1], " exceeds the C=", channels,
      " channels of x (shape ", x_sizes, ")");
  TORCH_CHECK(
      gates.scalar_type() == x_dtype ||
          (gates.scalar_type() == at::kFloat && is_reduced_float(x_dtype)),
      where, ": gates must have x's dtype (", x_dtype, ")",
      is_reduced_float(x_dtype) ? " or float32" : "", ", got ", gates.scalar_type());
  TORCH_CHECK(
      gates.device() == x_device,
      where, ": gates are on ", gates.device(), " but x is on ", x_device,
      "; move them to the same device");
  if (gates.dim() == 2) {
    TORCH_CHECK(
        gates.size(0) == x_sizes[0],
        where, ": per-sample gates of shape ", gates.sizes(),
        " need x whose first (batch) dimension is B=", gates.size(0), ", got x of shape ",
        x_sizes);
  }
}

inline void check_channel_mask_inputs(
    const at::Tensor& x, const at::Tensor& gates, at::IntArrayRef widths) {
  constexpr const char* where = "hwnas::channel_mask";
  TORCH_CHECK(
      is_supported_float(x.scalar_type()),
      where, ": x must be float32, float64, bfloat16 or float16, got ", x.scalar_type());
  check_channel_gates(where, gates, widths, x.sizes(), x.scalar_type(), x.device());
}

}  // namespace ops
}  // namespace hwnas
