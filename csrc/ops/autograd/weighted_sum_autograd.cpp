// Autograd of hwnas::weighted_sum, registered for every backend at the Autograd key.
//
// In C++ rather than with torch.library.register_autograd from Python: a supernet
// calls this op once per searchable layer per step, and a Python autograd kernel
// adds about 8 microseconds to every call, which is more than the whole fused kernel
// at batch-1 shapes. The backward is the fused hwnas::weighted_sum_backward op, so
// torch.compile and opcheck see ordinary dispatcher calls with fake kernels.
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

at::Tensor call_weighted_sum(at::TensorList branches, const at::Tensor& weights) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("hwnas::weighted_sum", "")
                             .typed<at::Tensor(at::TensorList, const at::Tensor&)>();
  return op.call(branches, weights);
}

std::tuple<std::vector<at::Tensor>, at::Tensor> call_weighted_sum_backward(
    const at::Tensor& grad, at::TensorList branches, const at::Tensor& weights, bool branches_need_grad,
    bool weights_need_grad) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("hwnas::weighted_sum_backward", "")
          .typed<std::tuple<std::vector<at::Tensor>, at::Tensor>(const at::Tensor&, at::TensorList,
                                                                  const at::Tensor&, bool, bool)>();
  return op.call(grad, branches, weights, branches_need_grad, weights_need_grad);
}

class WeightedSumFunction : public torch::autograd::Function<WeightedSumFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, at::TensorList branches, const at::Tensor& weights) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor out = call_weighted_sum(branches, weights);
    // The branches are needed only for the weight gradient; not keeping them
    // otherwise lets autograd free them as soon as the forward is done with them.
    std::vector<at::Tensor> saved{weights};
    if (weights.requires_grad()) saved.insert(saved.end(), branches.begin(), branches.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["num_branches"] = static_cast<int64_t>(branches.size());
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const int64_t n = ctx->saved_data["num_branches"].toInt();
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& weights = saved[0];
    bool branches_need_grad = false;
    for (int64_t i = 0; i < n; ++i) branches_need_grad = branches_need_grad || ctx->needs_input_grad(i);
    const bool weights_need_grad = ctx->needs_input_grad(n);
    variable_list grads(n + 1);
    if (!branches_need_grad && !weights_need_grad) return grads;
    const std::vector<at::Tensor> branches =
        weights_need_grad ? std::vector<at::Tensor>(saved.begin() + 1, saved.end()) : std::vector<at::Tensor>{};
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      auto [grad_branches, grad_weights] =
          call_weighted_sum_backward(grad_outputs[0], branches, weights, branches_need_grad, weights_need_grad);
      if (branches_need_grad) {
        for (int64_t i = 0; i < n; ++i) grads[i] = grad_branches[i];
      }
      if (weights_need_grad) grads[n] = grad_weights;
    }
    if (!at::GradMode::is_enabled()) return grads;  // the usual backward: no graph asked for
    variable_list read(saved);
    read.push_back(grad_outputs[0]);
    return first_order_only("hwnas::weighted_sum", std::move(grads), read);
  }
};

at::Tensor weighted_sum_autograd(at::TensorList branches, const at::Tensor& weights) {
  // Inference and frozen supernets: no graph node, and none of the bookkeeping of
  // Function::apply (a few microseconds, a tenth of a batch-1 call).
  check_no_forward_ad("hwnas::weighted_sum", branches);
  check_no_forward_ad("hwnas::weighted_sum", {weights});
  bool any_requires_grad = weights.requires_grad();
  for (const auto& b : branches) any_requires_grad = any_requires_grad || b.requires_grad();
  if (!any_requires_grad || !at::GradMode::is_enabled()) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return call_weighted_sum(branches, weights);
  }
  return WeightedSumFunction::apply(branches, weights);
}

}  // namespace

TORCH_LIBRARY_IMPL(hwnas, Autograd, m) {
  m.impl("weighted_sum", &weighted_sum_autograd);
}

}  // namespace ops
}  // namespace hwnas
