// Per-element math of hwnas::weighted_sum, shared by the CPU and CUDA kernels.
// acc_t is the accumulation type (float for float32/bfloat16/float16, double for float64).
#pragma once

#include "common/host_device.h"

namespace hwnas {
namespace ops {

// out += w * x, accumulated in acc_t.
template <typename acc_t, typename scalar_t>
HWNAS_HOST_DEVICE acc_t mix_accumulate(acc_t acc, acc_t w, scalar_t x) {
  return acc + w * static_cast<acc_t>(x);
}

// d out / d branch_i = w_i * grad.
template <typename acc_t>
HWNAS_HOST_DEVICE acc_t branch_grad(acc_t w, acc_t grad) {
  return w * grad;
}

// d out / d w_i accumulates grad * branch_i.
template <typename acc_t, typename scalar_t>
HWNAS_HOST_DEVICE acc_t weight_grad_accumulate(acc_t dot, acc_t grad, scalar_t x) {
  return dot + grad * static_cast<acc_t>(x);
}

}  // namespace ops
}  // namespace hwnas
