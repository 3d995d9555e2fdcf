// CUDA kernels of hwnas::weighted_sum and its backward.
//
// Same contract and the same per-element math (weighted_sum_math.h) as the CPU
// kernels; tensors are walked as flat memory after the same layout normalisation
// (common/dense_layout.h). Branch pointers travel by value in a fixed-size struct,
// so more than kMaxBranches branches are mixed in several launches.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "../common/dense_layout.h"
#include "../weighted_sum_checks.h"
#include "../weighted_sum_math.h"

namespace hwnas {
namespace ops {
namespace {

constexpr int kMaxBranches = 16;
constexpr int kThreads = 256;

template <typename scalar_t>
struct BranchPointers {
  const scalar_t* data[kMaxBranches];
};

template <typename scalar_t>
struct GradPointers {
  scalar_t* data[kMaxBranches];
};

int blocks_for(int64_t numel) {
  int device = 0;
  int sms = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((numel + kThreads - 1) / kThreads, int64_t(sms) * 32)));
}

// One launch mixes branches [first, first + count):
//   acc = (partial_in ? partial_in[k] : 0) + sum_{i < count} w[sample, first + i] * x_i[k]
// and writes acc to out (the last launch, rounded once to scalar_t) or to partial_out.
// With more than kMaxBranches branches the running sum stays in acc_t between launches,
// so 16-bit outputs are rounded once, as on the CPU (which keeps its tile in float).
// partial_in, partial_out and out may alias (float32/float64 accumulate in out).
template <typename scalar_t, typename acc_t>
__global__ void weighted_sum_forward_kernel(
    BranchPointers<scalar_t> x, const acc_t* __restrict__ w, int64_t w_row_stride, int first,
    int count, int64_t numel, int64_t per_sample, const acc_t* partial_in, acc_t* partial_out,
    scalar_t* out) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < numel;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const acc_t* wrow = w + (k / per_sample) * w_row_stride + first;
    acc_t acc = partial_in != nullptr ? partial_in[k] : acc_t(0);
    for (int i = 0; i < count; ++i) {
      const acc_t wi = wrow[i];
      // A zero weight skips the load: its branch is never read.
      if (wi != acc_t(0)) acc = mix_accumulate(acc, wi, x.data[i][k]);
    }
    if (out != nullptr) {
      out[k] = static_cast<scalar_t>(acc);
    } else {
      partial_out[k] = acc;
    }
  }
}

at::Tensor weighted_sum_cuda(at::TensorList branches_in, const at::Tensor& weights) {
  check_weighted_sum_inputs(branches_in, weights);
  const c10::cuda::CUDAGuard guard(branches_in[0].device());
  const std::vector<at::Tensor> branches =
      with_shared_dense_layout(branches_in, /*need_batch_outermost=*/weights.dim() == 2);
  at::Tensor out = at::empty_like(branches[0]);
  const int64_t numel = out.numel();
  if (numel == 0) return out;
  const int64_t n = static_cast<int64_t>(branches.size());
  const int64_t samples = weights.dim() == 2 ? weights.size(0) : 1;
  const int64_t per_sample = numel / samples;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, out.scalar_type(), "hwnas_weighted_sum_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto acc_dtype = c10::CppTypeToScalarType<acc_t>::value;
    const at::Tensor w = weights.to(acc_dtype).contiguous();
    // Where the running sum lives between launches (only needed above kMaxBranches).
    at::Tensor partial_buffer;
    acc_t* partial = nullptr;
    if (n > kMaxBranches) {
      if constexpr (std::is_same_v<scalar_t, acc_t>) {
        partial = out.mutable_data_ptr<acc_t>();
      } else {
        partial_buffer = at::empty({numel}, out.options().dtype(acc_dtype));
        partial = partial_buffer.mutable_data_ptr<acc_t>();
      }
    }
    for (int64_t first = 0; first < n; first += kMaxBranches) {
      const int count = static_cast<int>(std::min<int64_t>(kMaxBranches, n - first));
      const bool last = first + count == n;
      BranchPointers<scalar_t> ptrs{};
      for (int i = 0; i < count; ++i) ptrs.data[i] = branches[first + i].const_data_ptr<scalar_t>();
      weighted_sum_forward_kernel<scalar_t, acc_t><<<blocks_for(numel), kThreads, 0, stream>>>(
          ptrs, w.const_data_ptr<acc_t>(), n, static_cast<int>(first), count, numel, per_sample,
          first > 0 ? partial : nullptr, partial, last ? out.mutable_data_ptr<scalar_t>() : nullptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return out;
}

// One pass over grad: grad_x_i = w_i * grad for every branch, and the block's partial
// dot products <grad, x_i> reduced in shared memory into block_dots[block, i]. A block
// never straddles two samples: the grid is laid out per sample. The partials are summed
// afterwards in a fixed order (no atomics), so the weight gradient is deterministic, as
// on the CPU.
template <typename scalar_t, typename acc_t>
__global__ void weighted_sum_backward_kernel(
    const scalar_t* __restrict__ grad, BranchPointers<scalar_t> x, GradPointers<scalar_t> gx,
    const acc_t* __restrict__ w, int64_t n, int first, int count, int64_t per_sample,
    int blocks_per_sample, bool want_branches, bool want_weights, acc_t* __restrict__ block_dots) {
  __shared__ acc_t partial[kMaxBranches][kThreads];
  const int64_t sample = blockIdx.x / blocks_per_sample;
  const int64_t block_in_sample = blockIdx.x % blocks_per_sample;
  const acc_t* wrow = w + sample * n + first;
  acc_t local[kMaxBranches];
  for (int i = 0; i < count; ++i) local[i] = acc_t(0);
  for (int64_t j = block_in_sample * kThreads + threadIdx.x; j < per_sample;
       j += static_cast<int64_t>(blocks_per_sample) * kThreads) {
    const int64_t k = sample * per_sample + j;
    const acc_t g = static_cast<acc_t>(grad[k]);
    for (int i = 0; i < count; ++i) {
      if (want_branches) gx.data[i][k] = static_cast<scalar_t>(branch_grad(wrow[i], g));
      if (want_weights) local[i] = weight_grad_accumulate(local[i], g, x.data[i][k]);
    }
  }
  if (!want_weights) return;
  for (int i = 0; i < count; ++i) partial[i][threadIdx.x] = local[i];
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      for (int i = 0; i < count; ++i) partial[i][threadIdx.x] += partial[i][threadIdx.x + stride];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    for (int i = 0; i < count; ++i) block_dots[blockIdx.x * n + first + i] = partial[i][0];
  }
}

std::tuple<std::vector<at::Tensor>, at::Tensor> weighted_sum_backward_cuda(
    const at::Tensor& grad_in, at::TensorList branches_in, const at::Tensor& weights,
    bool branches_need_grad, bool weights_need_grad) {
  constexpr const char* where = "hwnas::weighted_sum_backward";
  const int64_t n = weights.size(-1);
  if (weights_need_grad) {
    TORCH_CHECK(static_cast<int64_t>(branches_in.size()) == n, where, ": the weight gradient needs the ", n,
                " branches, got ", branches_in.size());
    check_weighted_sum_inputs(branches_in, weights);
    TORCH_CHECK(branches_in[0].sizes() == grad_in.sizes(), where, ": grad has shape ", grad_in.sizes(),
                " but the branches have shape ", branches_in[0].sizes());
    // The CPU kernel gets only CPU tensors; here grad could sit on another device than
    // the branches (the kernel would read a foreign pointer).
    TORCH_CHECK(grad_in.device() == branches_in[0].device(), where, ": grad is on ", grad_in.device(),
                " but the branches are on ", branches_in[0].device(), "; move them to the same device");
  } else {
    check_mixture_weights(where, weights, n, grad_in.sizes(), grad_in.scalar_type(), grad_in.device());
    // The dispatcher routes the call here when any argument is on a GPU: a branch may be
    // while grad and the weights are not.
    TORCH_CHECK(grad_in.is_cuda(), where, ": grad and the weights are on ", grad_in.device(),
                " but a branch is on a GPU; move them to the same device");
  }
  const c10::cuda::CUDAGuard guard(grad_in.device());
  const bool per_sample_weights = weights.dim() == 2;
  std::vector<at::Tensor> branches;
  at::Tensor grad;
  if (weights_need_grad) {
    branches = with_shared_dense_layout(branches_in, per_sample_weights);
    grad = like_layout(grad_in, branches[0]);
  } else {
    grad = with_shared_dense_layout({grad_in}, per_sample_weights)[0];
  }
  std::vector<at::Tensor> grad_branches;
  if (branches_need_grad) {
    for (int64_t i = 0; i < n; ++i) grad_branches.push_back(at::empty_like(grad));
  }
  at::Tensor grad_weights = weights_need_grad ? at::zeros_like(weights, at::MemoryFormat::Contiguous)
                                              : at::empty({0}, weights.options());
  const int64_t numel = grad.numel();
  if (numel == 0 || (!branches_need_grad && !weights_need_grad)) return {grad_branches, grad_weights};

  const int64_t samples = per_sample_weights ? weights.size(0) : 1;
  const int64_t per_sample = numel / samples;
  const int blocks_per_sample = static_cast<int>(std::max<int64_t>(
      1, std::min<int64_t>((per_sample + kThreads - 1) / kThreads, blocks_for(numel) / samples + 1)));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, grad.scalar_type(), "hwnas_weighted_sum_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const at::Tensor w = weights.to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
    // Every block writes its partial dots of every branch: no zeroing needed.
    at::Tensor block_dots = weights_need_grad
                                ? at::empty({samples * blocks_per_sample, n},
                                            grad.options().dtype(c10::CppTypeToScalarType<acc_t>::value))
                                : at::Tensor();
    for (int64_t first = 0; first < n; first += kMaxBranches) {
      const int count = static_cast<int>(std::min<int64_t>(kMaxBranches, n - first));
      BranchPointers<scalar_t> xs{};
      GradPointers<scalar_t> gxs{};
      for (int i = 0; i < count; ++i) {
        if (weights_need_grad) xs.data[i] = branches[first + i].const_data_ptr<scalar_t>();
        if (branches_need_grad) gxs.data[i] = grad_branches[first + i].mutable_data_ptr<scalar_t>();
      }
      weighted_sum_backward_kernel<scalar_t, acc_t>
          <<<static_cast<unsigned>(samples * blocks_per_sample), kThreads, 0, stream>>>(
              grad.const_data_ptr<scalar_t>(), xs, gxs, w.const_data_ptr<acc_t>(), n, static_cast<int>(first),
              count, per_sample, blocks_per_sample, branches_need_grad, weights_need_grad,
              weights_need_grad ? block_dots.mutable_data_ptr<acc_t>() : nullptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (weights_need_grad) {
      // The blocks' partials of each sample summed in double, as the CPU sums its tiles'.
      const at::Tensor dots =
          block_dots.view({samples, blocks_per_sample, n}).sum({1}, /*keepdim=*/false, at::kDouble);
      grad_weights.copy_(dots.reshape(grad_weights.sizes()));
    }
  });
  return {grad_branches, grad_weights};
}

}  // namespace

TORCH_LIBRARY_IMPL(hwnas, CUDA, m) {
  m.impl("weighted_sum", &weighted_sum_cuda);
  m.impl("weighted_sum_backward", &weighted_sum_backward_cuda);
}

}  // namespace ops
}  // namespace hwnas
