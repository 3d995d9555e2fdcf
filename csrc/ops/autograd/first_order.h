// What the C++ autograd kernels of hwnas' ops share: they are differentiable once, in
// reverse mode. The fused backward ops (hwnas::*_backward) have no derivative of their
// own, and forward-mode AD has no rule for the ops.
//
// Why the guards: with create_graph=True the backward runs in grad mode, and a call of a
// backward op through the dispatcher would reach PyTorch's autograd fallback, which only
// warns; a second derivative taken through it would then miss terms without an error.
// As Python's @once_differentiable does, the gradients are computed below autograd and,
// when a graph was asked for, handed back through a node that raises if anything is
// differentiated through them, so first derivatives under create_graph=True still work.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/functions/basic_ops.h>
#include <torch/csrc/autograd/variable.h>

#include <memory>
#include <string>
#include <utility>

namespace hwnas {
namespace ops {

// Refuses tensors carrying a forward-mode tangent (torch.autograd.forward_ad.make_dual,
// level 0), which would otherwise be dropped without an error.
inline void check_no_forward_ad(const char* op, at::TensorList tensors) {
  for (const at::Tensor& t : tensors) {
    TORCH_CHECK(!t.defined() || !t._fw_grad(/*level=*/0).defined(), op,
                ": forward-mode AD (dual tensors, torch.func.jvp) is not supported; hwnas' ops have "
                "reverse-mode gradients only");
  }
}

// The gradients of a backward, made safe to return when the backward ran with
// create_graph=True: if grad mode is on and a tensor the backward read requires grad, each
// defined gradient comes back attached to a node that raises when differentiated again.
inline torch::autograd::variable_list first_order_only(const char* op, torch::autograd::variable_list grads,
                                                        at::TensorList read) {
  if (!at::GradMode::is_enabled()) return grads;
  bool differentiable = false;
  for (const at::Tensor& t : read) differentiable = differentiable || (t.defined() && t.requires_grad());
  if (!differentiable) return grads;
  for (at::Tensor& g : grads) {
    if (!g.defined()) continue;
    g = g.detach();
    g.set_requires_grad(true);
  }
  const auto error = std::make_shared<torch::autograd::DelayedError>(
      std::string(op) + ": a second derivative (differentiating a gradient taken with create_graph=True) is "
                        "not supported; hwnas' ops are differentiable once",
      static_cast<int64_t>(grads.size()));
  return error->apply(std::move(grads));
}

}  // namespace ops
}  // namespace hwnas
