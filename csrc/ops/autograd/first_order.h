// What the C++ autograd kernels of hwnas' ops share: they are differentiable once, in
// reverse mode. The fused backward ops (hwnas::*_backward) have no derivative of their
// own, and forward-mode AD has no rule for the ops.
//
// Why the guards: with create_graph=True the backward runs in grad mode, and a call of a
// backward op through the dispatcher would reach PyTorch's autograd fallback, which only
// warns; a second derivative taken through it would then miss terms without an error.
// The gradients are computed below autograd and, when a graph was asked for, handed back
// through a node that raises if anything is differentiated through them, so first
// derivatives under create_graph=True still work.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <c10/util/Exception.h>
#include <c10/util/intrusive_ptr.h>
#include <torch/csrc/autograd/edge.h>
#include <torch/csrc/autograd/function.h>
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

// The node a gradient taken under create_graph=True hangs from: it leads to every tensor
// the backward read (so any derivative of the gradient, whichever inputs it asks for, has
// to pass through it), and raises when autograd runs it. A node whose edges ended at fresh
// leaves (as with DelayedError) raised on .backward() but let torch.autograd.grad(g, w)
// find no path to w and report a zero or unused gradient.
class SecondDerivativeError final : public torch::autograd::Node {
 public:
  explicit SecondDerivativeError(std::string message) : message_(std::move(message)) {}
  torch::autograd::variable_list apply(torch::autograd::variable_list&& /*grads*/) override {
    TORCH_CHECK(false, message_);
  }
  std::string name() const override { return "hwnas::SecondDerivativeError"; }

 private:
  std::string message_;
};

// The gradients of a backward, made safe to return when the backward ran with
// create_graph=True: if grad mode is on and a tensor the backward read requires grad, each
// defined gradient comes back with a SecondDerivativeError node as its grad_fn.
inline torch::autograd::variable_list first_order_only(const char* op, torch::autograd::variable_list grads,
                                                        at::TensorList read) {
  if (!at::GradMode::is_enabled()) return grads;
  bool differentiable = false;
  for (const at::Tensor& t : read) differentiable = differentiable || (t.defined() && t.requires_grad());
  if (!differentiable) return grads;
  const auto error = c10::make_intrusive<SecondDerivativeError>(
      std::string(op) + ": a second derivative (differentiating a gradient taken with create_graph=True) is "
                        "not supported; hwnas' ops are differentiable once");
  torch::autograd::edge_list edges;
  edges.reserve(read.size());
  for (const at::Tensor& t : read) {
    edges.push_back(t.defined() && t.requires_grad() ? torch::autograd::impl::gradient_edge(t)
                                                     : torch::autograd::Edge());
  }
  error->set_next_edges(std::move(edges));
  for (at::Tensor& g : grads) {
    if (!g.defined()) continue;
    g = g.detach();
    torch::autograd::create_gradient_edge(g, error);
  }
  return grads;
}

}  // namespace ops
}  // namespace hwnas
