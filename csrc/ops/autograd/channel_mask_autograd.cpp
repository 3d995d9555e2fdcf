// Autograd of hwnas::channel_mask, registered for every backend at the Autograd key
// (in C++ for the same reason as weighted_sum's: no Python call per layer per step).
// The backward is the fused hwnas::channel_mask_backward op.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <vector>

#include "first_order.h"

namespace hwnas {
namespace ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor call_channel_mask(const at::Tensor& x, const at::Tensor& gates, at::IntArrayRef widths) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("hwnas::channel_mask", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, at::IntArrayRef)>();
  return op.call(x, gates, widths);
}

std::tuple<at::Tensor, at::Tensor> call_channel_mask_backward(const at::Tensor& grad, const at::Tensor& x,
                                                              const at::Tensor& gates, at::IntArrayRef widths,
                                                              bool x_needs_grad, bool gates_needs_grad) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("hwnas::channel_mask_backward", "")
          .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                    at::IntArrayRef, bool, bool)>();
  return op.call(grad, x, gates, widths, x_needs_grad, gates_needs_grad);
}

class ChannelMaskFunction : public torch::autograd::Function<ChannelMaskFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& gates,
                            at::IntArrayRef widths) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor out = call_channel_mask(x, gates, widths);
    // x is needed only for the gate gradient; the gates (K numbers) always are.
    ctx->save_for_backward(gates.requires_grad() ? variable_list{gates, x} : variable_list{gates});
    ctx->saved_data["widths"] = widths.vec();
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const bool x_needs_grad = ctx->needs_input_grad(0);
    const bool gates_needs_grad = ctx->needs_input_grad(1);
    variable_list grads(3);
    if (!x_needs_grad && !gates_needs_grad) return grads;
    const at::Tensor& grad = grad_outputs[0];
    const at::Tensor x = gates_needs_grad ? saved[1] : grad.new_empty({0});
    const std::vector<int64_t> widths = ctx->saved_data["widths"].toIntVector();
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      auto [grad_x, grad_gates] =
          call_channel_mask_backward(grad, x, saved[0], widths, x_needs_grad, gates_needs_grad);
      if (x_needs_grad) grads[0] = grad_x;
      if (gates_needs_grad) grads[1] = grad_gates;
    }
    return first_order_only("hwnas::channel_mask", std::move(grads), {grad, x, saved[0]});
  }
};

at::Tensor channel_mask_autograd(const at::Tensor& x, const at::Tensor& gates, at::IntArrayRef widths) {
  check_no_forward_ad("hwnas::channel_mask", {x, gates});
  // No graph node (and none of Function::apply's bookkeeping) when nothing needs a gradient.
  if (!at::GradMode::is_enabled() || (!x.requires_grad() && !gates.requires_grad())) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return call_channel_mask(x, gates, widths);
  }
  return ChannelMaskFunction::apply(x, gates, widths);
}

}  // namespace

TORCH_LIBRARY_IMPL(hwnas, Autograd, m) {
  m.impl("channel_mask", &channel_mask_autograd);
}

}  // namespace ops
}  // namespace hwnas
