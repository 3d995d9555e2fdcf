// Autograd of hwnas::depthwise_conv2d, registered for every backend at the Autograd
// key (in C++ for the same reason as weighted_sum's: a supernet step calls it once per
// candidate block, and a Python autograd kernel would add a Python call to each).
// The backward is hwnas::depthwise_conv2d_backward.
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

at::Tensor call_depthwise_conv2d(const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef stride,
                                 at::IntArrayRef padding, at::IntArrayRef dilation) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("hwnas::depthwise_conv2d", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, at::IntArrayRef, at::IntArrayRef,
                            at::IntArrayRef)>();
  return op.call(x, weight, stride, padding, dilation);
}

std::tuple<at::Tensor, at::Tensor> call_depthwise_conv2d_backward(const at::Tensor& grad, const at::Tensor& x,
                                                                  const at::Tensor& weight, at::IntArrayRef stride,
                                                                  at::IntArrayRef padding, at::IntArrayRef dilation,
                                                                  bool x_needs_grad, bool weight_needs_grad) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("hwnas::depthwise_conv2d_backward", "")
          .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                    at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, bool,
                                                    bool)>();
  return op.call(grad, x, weight, stride, padding, dilation, x_needs_grad, weight_needs_grad);
}

class DepthwiseConv2dFunction : public torch::autograd::Function<DepthwiseConv2dFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor out = call_depthwise_conv2d(x, weight, stride, padding, dilation);
    ctx->save_for_backward({x, weight});
    ctx->saved_data["stride"] = stride.vec();
    ctx->saved_data["padding"] = padding.vec();
    ctx->saved_data["dilation"] = dilation.vec();
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const bool x_needs_grad = ctx->needs_input_grad(0);
    const bool weight_needs_grad = ctx->needs_input_grad(1);
    variable_list grads(5);
    if (!x_needs_grad && !weight_needs_grad) return grads;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      auto [grad_x, grad_weight] = call_depthwise_conv2d_backward(
          grad_outputs[0], saved[0], saved[1], ctx->saved_data["stride"].toIntVector(),
          ctx->saved_data["padding"].toIntVector(), ctx->saved_data["dilation"].toIntVector(), x_needs_grad,
          weight_needs_grad);
      if (x_needs_grad) grads[0] = grad_x;
      if (weight_needs_grad) grads[1] = grad_weight;
    }
    return first_order_only("hwnas::depthwise_conv2d", std::move(grads), {grad_outputs[0], saved[0], saved[1]});
  }
};

at::Tensor depthwise_conv2d_autograd(const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef stride,
                                     at::IntArrayRef padding, at::IntArrayRef dilation) {
  check_no_forward_ad("hwnas::depthwise_conv2d", {x, weight});
  // No graph node (and none of Function::apply's bookkeeping) when nothing needs a gradient.
  if (!at::GradMode::is_enabled() || (!x.requires_grad() && !weight.requires_grad())) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return call_depthwise_conv2d(x, weight, stride, padding, dilation);
  }
  return DepthwiseConv2dFunction::apply(x, weight, stride, padding, dilation);
}

}  // namespace

TORCH_LIBRARY_IMPL(hwnas, Autograd, m) {
  m.impl("depthwise_conv2d", &depthwise_conv2d_autograd);
}

}  // namespace ops
}  // namespace hwnas
