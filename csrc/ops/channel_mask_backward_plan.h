// Host-side preparation of hwnas::channel_mask_backward, shared by every backend:
// input checks, the returned tensors, and the one memory layout the kernel walks.
#pragma once

#include <ATen/ATen.h>

#include "channel_mask_checks.h"
#include "common/channel_layout.h"
#include "common/dense_layout.h"
#include "cpu/buffer_pool.h"

namespace hwnas {
namespace ops {

struct ChannelMaskBackwardPlan {
  at::Tensor grad_x;       // returned: the gradient of x, or an empty [0] tensor
  at::Tensor grad_gates;   // returned: zeros shaped like gates, or an empty [0] tensor
  bool nothing_to_do = false;  // empty input or no gradient wanted
  // The kernel's view of the work, all in one walkable layout:
  at::Tensor grad;         // grad
  at::Tensor x;            // x (undefined unless the gates need a gradient)
  at::Tensor work_grad_x;  // where grad_x is computed: grad_x itself, or a buffer copied into it
  ChannelLayout layout = ChannelLayout::kChannelsOuter;
};

inline ChannelMaskBackwardPlan plan_channel_mask_backward(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                          const at::Tensor& gates, at::IntArrayRef widths,
                                                          bool x_needs_grad, bool gates_needs_grad) {
  constexpr const char* where = "hwnas::channel_mask_backward";
  TORCH_CHECK(is_supported_float(grad_in.scalar_type()), where,
              ": grad must be float32, float64, bfloat16 or float16, got ", grad_in.scalar_type());
  check_channel_gates(where, gates, widths, grad_in.sizes(), grad_in.scalar_type(), grad_in.device());
  if (gates_needs_grad) {
    TORCH_CHECK(x_in.sizes() == grad_in.sizes() && x_in.scalar_type() == grad_in.scalar_type() &&
                    x_in.device() == grad_in.device(),
                where, ": the gate gradient needs x shaped like grad (", grad_in.sizes(), ", ",
                grad_in.scalar_type(), ", ", grad_in.device(), "), got x of shape ", x_in.sizes(), ", ",
                x_in.scalar_type(), ", ", x_in.device());
  }
  ChannelMaskBackwardPlan plan;
  plan.grad_x = x_needs_grad ? cpu::empty_like_output(grad_in) : at::empty({0}, grad_in.options());
  plan.grad_gates =
      gates_needs_grad ? at::zeros_like(gates, at::MemoryFormat::Contiguous) : at::empty({0}, gates.options());
  if (grad_in.numel() == 0 || (!x_needs_grad && !gates_needs_grad)) {
    plan.nothing_to_do = true;
    return plan;
  }
  // Everything is walked in one layout: grad_x's when it is walkable, else contiguous.
  at::Tensor reference = x_needs_grad ? plan.grad_x : grad_in;
  plan.layout = classify_channel_layout(reference);
  if (plan.layout == ChannelLayout::kOther) {
    reference = at::empty_like(grad_in, at::MemoryFormat::Contiguous);
    plan.layout = ChannelLayout::kChannelsOuter;
  }
  plan.grad = like_layout(grad_in, reference);
  if (gates_needs_grad) plan.x = like_layout(x_in, reference);
  if (x_needs_grad) plan.work_grad_x = reference.is_same(plan.grad_x) ? plan.grad_x : cpu::empty_like_output(reference);
  return plan;
}

// Copies the computed gradient of x into the returned tensor when they differ.
inline void finish_channel_mask_backward(ChannelMaskBackwardPlan& plan) {
  if (plan.work_grad_x.defined() && !plan.work_grad_x.is_same(plan.grad_x)) plan.grad_x.copy_(plan.work_grad_x);
}

}  // namespace ops
}  // namespace hwnas
