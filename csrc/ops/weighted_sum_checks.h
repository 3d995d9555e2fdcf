// Input validation for hwnas::weighted_sum, shared by every backend so that a user
// sees the same message on the CPU and on a GPU.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <sstream>

namespace hwnas {
namespace ops {

inline bool is_supported_float(c10::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kBFloat16 || t == at::kHalf;
}

inline bool is_reduced_float(c10::ScalarType t) {
  return t == at::kBFloat16 || t == at::kHalf;
}

// Checks weights against N branches of the given shape, dtype and device.
// `where` names the op in messages.
inline void check_mixture_weights(
    const char* where,
    const at::Tensor& weights,
    int64_t num_branches,
    at::IntArrayRef branch_sizes,
    c10::ScalarType branch_dtype,
    c10::Device branch_device) {
  TORCH_CHECK(
      weights.dim() == 1 || weights.dim() == 2,
      where, ": weights must have shape [N] (one mixture for the batch) or [B, N] ",
      "(one mixture per sample), got shape ", weights.sizes());
  TORCH_CHECK(
      weights.size(-1) == num_branches,
      where, ": weights has N=", weights.size(-1), " entries along its last dimension but ",
      num_branches, " branches were given");
  TORCH_CHECK(
      weights.scalar_type() == branch_dtype ||
          (weights.scalar_type() == at::kFloat && is_reduced_float(branch_dtype)),
      where, ": weights must have the branches' dtype (", branch_dtype, ")",
      is_reduced_float(branch_dtype) ? " or float32" : "", ", got ", weights.scalar_type());
  TORCH_CHECK(
      weights.device() == branch_device,
      where, ": weights are on ", weights.device(), " but the branches are on ", branch_device,
      "; move them to the same device");
  if (weights.dim() == 2) {
    TORCH_CHECK(
        !branch_sizes.empty() && branch_sizes[0] == weights.size(0),
        where, ": per-sample weights of shape ", weights.sizes(),
        " need branches whose first (batch) dimension is B=", weights.size(0),
        ", got branches of shape ", branch_sizes);
  }
}

inline void check_weighted_sum_inputs(at::TensorList branches, const at::Tensor& weights) {
  constexpr const char* where = "hwnas::weighted_sum";
  TORCH_CHECK(!branches.empty(), where, ": expected at least one branch, got an empty list");
  const at::Tensor& first = branches[0];
  TORCH_CHECK(
      is_supported_float(first.scalar_type()),
      where, ": branches must be float32, float64, bfloat16 or float16, got ",
      first.scalar_type());
  for (size_t i = 1; i < branches.size(); ++i) {
    const at::Tensor& b = branches[i];
    TORCH_CHECK(
        b.sizes() == first.sizes(),
        where, ": all branches must have the same shape; branch 0 has shape ", first.sizes(),
        " but branch ", i, " has shape ", b.sizes());
    TORCH_CHECK(
        b.scalar_type() == first.scalar_type(),
        where, ": all branches must have the same dtype; branch 0 is ", first.scalar_type(),
        " but branch ", i, " is ", b.scalar_type());
    TORCH_CHECK(
        b.device() == first.device(),
        where, ": all branches must be on the same device; branch 0 is on ", first.device(),
        " but branch ", i, " is on ", b.device());
  }
  check_mixture_weights(
      where, weights, static_cast<int64_t>(branches.size()), first.sizes(),
      first.scalar_type(), first.device());
}

}  // namespace ops
}  // namespace hwnas
