// CUDA kernels of hwnas::channel_mask and its backward.
//
// Same contract and math (channel_mask_math.h) as the CPU kernels. The per-channel
// scales are computed on the device by channel_scales, one thread per gate row. The
// forward is elementwise; the backward gives each (sample, channel) row to one block
// (a block takes several rows when there are more than kMaxBlocks): it writes grad_x
// for that channel and reduces <grad, x> over it in the same pass,
// without atomics, so the gate gradient is deterministic. The dot products are
// summed in double from the threads' partials on, as the CPU sums its chunks'.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../channel_mask_backward_plan.h"
#include "../channel_mask_checks.h"
#include "../channel_mask_math.h"
#include "../common/channel_layout.h"
#include "../common/dense_layout.h"

namespace hwnas {
namespace ops {
namespace {

constexpr int kThreads = 256;
// Grids are capped here (kernels loop over the rest), far under CUDA's limits.
constexpr int64_t kMaxBlocks = 65535;

// The widths as the kernels read them. Up to kInlineWidths travel by value in the launch
// arguments: copying a host vector to the device (Tensor::to from pageable memory)
// synchronises the stream, so every call would wait for all queued GPU work, and it
// cannot be captured in a CUDA graph. More widths (rare) go through a pinned buffer
// copied without blocking, which a graph cannot hold (a replay would read the buffer
// after it was reused), so that path is refused during capture.
constexpr int kInlineWidths = 64;
struct KernelWidths {
  int64_t inline_values[kInlineWidths];
  const int64_t* device_values;  // set when there are more than kInlineWidths widths
  __device__ __forceinline__ const int64_t* data() const {
    return device_values != nullptr ? device_values : inline_values;
  }
};

struct WidthsForKernels {
  KernelWidths arg{};
  at::Tensor on_device;  // holds device_values while the kernels are queued
};

WidthsForKernels widths_for_kernels(at::IntArrayRef widths, c10::Device device) {
  WidthsForKernels w;
  if (widths.size() <= static_cast<size_t>(kInlineWidths)) {
    std::copy(widths.begin(), widths.end(), w.arg.inline_values);
    w.arg.device_values = nullptr;
  } else {
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    C10_CUDA_CHECK(cudaStreamIsCapturing(c10::cuda::getCurrentCUDAStream(device.index()), &capture));
    TORCH_CHECK(capture == cudaStreamCaptureStatusNone, "hwnas::channel_mask: ", widths.size(),
                " widths cannot be captured in a CUDA graph (at most ", kInlineWidths, " can)");
    at::Tensor host = at::empty({static_cast<int64_t>(widths.size())},
                                at::TensorOptions().dtype(at::kLong).pinned_memory(true));
    std::copy(widths.begin(), widths.end(), host.mutable_data_ptr<int64_t>());
    w.on_device = host.to(at::TensorOptions().device(device).dtype(at::kLong), /*non_blocking=*/true);
    w.arg.device_values = w.on_device.const_data_ptr<int64_t>();
  }
  return w;
}

template <typename acc_t, typename gate_t>
__global__ void channel_scales_kernel(const gate_t* gates, KernelWidths widths, int64_t k, int64_t rows,
                                      int64_t channels, acc_t* scales) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r < rows) channel_scales<acc_t>(gates + r * k, widths.data(), k, channels, scales + r * channels);
}

// Device tensor [rows, C] of per-channel scales, rows = 1 for [K] gates, B for [B, K].
template <typename acc_t>
at::Tensor device_scales(const at::Tensor& gates, const KernelWidths& widths, int64_t channels) {
  const at::Tensor g = gates.contiguous();
  const int64_t k = g.size(-1);
  const int64_t rows = g.dim() == 2 ? g.size(0) : 1;
  at::Tensor scales = at::empty({rows, channels}, g.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, g.scalar_type(), "hwnas_channel_scales_cuda", [&] {
    const int blocks = static_cast<int>((rows + kThreads - 1) / kThreads);
    channel_scales_kernel<acc_t, scalar_t><<<blocks, kThreads, 0, stream>>>(
        g.const_data_ptr<scalar_t>(), widths, k, rows, channels,
        scales.mutable_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return scales;
}

// Flat offset of element j of channel c of sample b in a walkable layout.
__device__ __forceinline__ int64_t element_offset(bool channels_inner, int64_t b, int64_t c, int64_t j,
                                                  int64_t C, int64_t S) {
  return b * C * S + (channels_inner ? j * C + c : c * S + j);
}

template <typename scalar_t, typename acc_t>
__global__ void channel_mask_forward_kernel(const scalar_t* __restrict__ x, const acc_t* __restrict__ scales,
                                            bool per_sample, bool channels_inner, int64_t numel, int64_t C,
                                            int64_t S, scalar_t* __restrict__ out) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < numel;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = k / (C * S);
    const int64_t c = channels_inner ? k % C : (k / S) % C;
    const acc_t s = scales[(per_sample ? b * C : 0) + c];
    // A zero scale writes zero without reading x, as on the CPU.
    out[k] = s == acc_t(0) ? scalar_t(0) : static_cast<scalar_t>(masked_value(s, x[k]));
  }
}

// One block per (sample b, channel c) row (blocks loop when there are more rows than
// kMaxBlocks): grad_x and the dot product <grad, x> over the row. Each thread sums its
// elements in acc_t and the block adds the threads' sums in double, as the CPU adds its
// chunks' dots; the channel dots, their batch sums and prefix sums stay in double.
template <typename scalar_t, typename acc_t>
__global__ void channel_mask_backward_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ x,
                                             scalar_t* __restrict__ grad_x, const acc_t* __restrict__ scales,
                                             bool per_sample, bool channels_inner, int64_t B, int64_t C,
                                             int64_t S, double* __restrict__ channel_dots) {
  __shared__ double partial[kThreads];
  for (int64_t row = blockIdx.x; row < B * C; row += gridDim.x) {  // row = b * C + c
    const int64_t b = row / C, c = row % C;
    const acc_t s = scales[(per_sample ? b * C : 0) + c];
    acc_t dot = acc_t(0);
    for (int64_t j = threadIdx.x; j < S; j += blockDim.x) {
      const int64_t k = element_offset(channels_inner, b, c, j, C, S);
      const acc_t g = static_cast<acc_t>(grad[k]);
      if (grad_x != nullptr) grad_x[k] = static_cast<scalar_t>(masked_value(s, g));
      if (x != nullptr) dot += g * static_cast<acc_t>(x[k]);
    }
    if (channel_dots == nullptr) continue;
    partial[threadIdx.x] = static_cast<double>(dot);
    __syncthreads();
    for (int stride = kThreads / 2; stride > 0; stride /= 2) {
      if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
      __syncthreads();
    }
    if (threadIdx.x == 0) channel_dots[row] = partial[0];
    __syncthreads();  // partial[0] is read before the next row overwrites it
  }
}

__global__ void gate_grads_kernel(const double* row_dots, KernelWidths widths, int64_t k, int64_t rows,
                                  int64_t channels, double* gate_grads) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r < rows) gate_grads_from_channel_dots(row_dots + r * channels, widths.data(), k, gate_grads + r * k);
}

int grid_for(int64_t numel) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((numel + kThreads - 1) / kThreads, kMaxBlocks)));
}

at::Tensor channel_mask_cuda(const at::Tensor& x_in, const at::Tensor& gates, at::IntArrayRef widths) {
  check_channel_mask_inputs(x_in, gates, widths);
  const c10::cuda::CUDAGuard guard(x_in.device());
  at::Tensor out = at::empty_like(x_in);
  if (out.numel() == 0) return out;
  ChannelLayout layout = classify_channel_layout(out);
  at::Tensor work = layout == ChannelLayout::kOther ? at::empty_like(x_in, at::MemoryFormat::Contiguous) : out;
  if (layout == ChannelLayout::kOther) layout = ChannelLayout::kChannelsOuter;
  const at::Tensor x = like_layout(x_in, work);
  const int64_t C = x.size(1), S = x.numel() / (x.size(0) * C);
  const WidthsForKernels widths_arg = widths_for_kernels(widths, x.device());
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "hwnas_channel_mask_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const at::Tensor scales = device_scales<acc_t>(gates, widths_arg.arg, C);
    channel_mask_forward_kernel<scalar_t, acc_t><<<grid_for(x.numel()), kThreads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), scales.const_data_ptr<acc_t>(), gates.dim() == 2,
        layout == ChannelLayout::kChannelsInner, x.numel(), C, S, work.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  if (!work.is_same(out)) out.copy_(work);
  return out;
}

std::tuple<at::Tensor, at::Tensor> channel_mask_backward_cuda(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                              const at::Tensor& gates, at::IntArrayRef widths,
                                                              bool x_needs_grad, bool gates_needs_grad) {
  // The plan checks the inputs first: a guard built from a CPU grad (with CUDA gates)
  // would fail with an internal assert instead of the check's message.
  ChannelMaskBackwardPlan plan =
      plan_channel_mask_backward(grad_in, x_in, gates, widths, x_needs_grad, gates_needs_grad);
  if (plan.nothing_to_do) return {plan.grad_x, plan.grad_gates};
  // The dispatcher routes the call here when any argument is on a GPU; without the
  // gate gradient the checks never compare grad's device with x's.
  TORCH_CHECK(grad_in.device() == x_in.device(), "hwnas::channel_mask_backward: grad is on ", grad_in.device(),
              " but x is on ", x_in.device(), "; move them to the same device");
  const c10::cuda::CUDAGuard guard(grad_in.device());
  const at::Tensor& grad = plan.grad;
  const at::Tensor& x = plan.x;
  at::Tensor& work_grad_x = plan.work_grad_x;
  const ChannelLayout layout = plan.layout;
  at::Tensor& grad_gates = plan.grad_gates;
  const int64_t B = grad.size(0), C = grad.size(1), S = grad.numel() / (B * C);
  const int64_t k = gates.size(-1);
  const bool per_sample = gates.dim() == 2;
  const WidthsForKernels widths_arg = widths_for_kernels(widths, grad.device());
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, grad.scalar_type(), "hwnas_channel_mask_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const at::Tensor scales = device_scales<acc_t>(gates, widths_arg.arg, C);
    at::Tensor channel_dots = gates_needs_grad ? at::empty({B, C}, grad.options().dtype(at::kDouble)) : at::Tensor();
    channel_mask_backward_kernel<scalar_t, acc_t><<<static_cast<int>(std::min(B * C, kMaxBlocks)), kThreads, 0,
                                                    stream>>>(
        grad.const_data_ptr<scalar_t>(), gates_needs_grad ? x.const_data_ptr<scalar_t>() : nullptr,
        x_needs_grad ? work_grad_x.mutable_data_ptr<scalar_t>() : nullptr, scales.const_data_ptr<acc_t>(),
        per_sample, layout == ChannelLayout::kChannelsInner, B, C, S,
        gates_needs_grad ? channel_dots.mutable_data_ptr<double>() : nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (gates_needs_grad) {
      // [K] gates are shared by the batch: their channel dots sum over samples.
      const at::Tensor row_dots = per_sample ? channel_dots : channel_dots.sum(0, /*keepdim=*/true);
      const int64_t rows = row_dots.size(0);
      at::Tensor grads = at::empty({rows, k}, row_dots.options());
      gate_grads_kernel<<<static_cast<int>((rows + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
          row_dots.const_data_ptr<double>(), widths_arg.arg, k, rows, C, grads.mutable_data_ptr<double>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      grad_gates.copy_(grads.reshape(grad_gates.sizes()));
    }
  });
  finish_channel_mask_backward(plan);
  return {plan.grad_x, plan.grad_gates};
}

}  // namespace

TORCH_LIBRARY_IMPL(hwnas, CUDA, m) {
  m.impl("channel_mask", &channel_mask_cuda);
  m.impl("channel_mask_backward", &channel_mask_backward_cuda);
}

}  // namespace ops
}  // namespace hwnas
