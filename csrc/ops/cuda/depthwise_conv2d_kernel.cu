// CUDA kernels of hwnas::depthwise_conv2d and its backward.
//
// Same contract, layout handling and index math (depthwise_conv2d_math.h) as the CPU
// kernels: tensors are walked channels-last, so consecutive threads handle consecutive
// channels of one position and their loads coalesce. The forward and the input
// gradient are one gather kernel (one thread per output or input element, no atomics),
// and the weight gradient runs one block per (tap, channel), reduced in shared memory
// in a fixed order, so every result is deterministic.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "../common/dense_layout.h"
#include "../depthwise_conv2d_checks.h"
#include "../depthwise_conv2d_math.h"

namespace hwnas {
namespace ops {
namespace {

constexpr int kThreads = 256;
constexpr const char* kForward = "hwnas::depthwise_conv2d";
constexpr const char* kBackward = "hwnas::depthwise_conv2d_backward";

int grid_for(int64_t numel) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((numel + kThreads - 1) / kThreads, 65535)));
}

// Element k of a channels-last [B, C, H, W] walk: channel, column, row, sample.
struct NhwcIndex {
  int64_t b, y, x, c;
};

__device__ __forceinline__ NhwcIndex nhwc_index(int64_t k, int64_t C, int64_t H, int64_t W) {
  NhwcIndex i;
  i.c = k % C;
  k /= C;
  i.x = k % W;
  k /= W;
  i.y = k % H;
  i.b = k / H;
  return i;
}

// One thread per element of dst, the sum over taps of a source element times the
// tap's filter: the forward reads x at the input each output reads (tap_input), the
// input gradient reads grad at the outputs that read each input (tap_output), as the
// CPU's gather_row. weight [C, 1, KH, KW] (contiguous) is read as weight[c * taps + tap].
template <bool kForward, typename scalar_t, typename acc_t>
__global__ void depthwise_gather_kernel(const scalar_t* __restrict__ src, const scalar_t* __restrict__ weight,
                                        DepthwiseGeometry g, int64_t numel, scalar_t* __restrict__ dst) {
  const int64_t C = g.channels, taps = g.taps();
  const int64_t rows = kForward ? g.h.out : g.h.in, cols = kForward ? g.w.out : g.w.in;
  const int64_t src_rows = kForward ? g.h.in : g.h.out, src_cols = kForward ? g.w.in : g.w.out;
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < numel;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const NhwcIndex d = nhwc_index(k, C, rows, cols);
    acc_t acc = acc_t(0);
    for (int64_t kh = 0; kh < g.h.kernel; ++kh) {
      const int64_t sr = kForward ? tap_input(d.y, kh, g.h) : tap_output(d.y, kh, g.h);
      if (sr < 0) continue;
      for (int64_t kw = 0; kw < g.w.kernel; ++kw) {
        const int64_t sc = kForward ? tap_input(d.x, kw, g.w) : tap_output(d.x, kw, g.w);
        if (sc < 0) continue;
        acc += static_cast<acc_t>(src[((d.b * src_rows + sr) * src_cols + sc) * C + d.c]) *
               static_cast<acc_t>(weight[d.c * taps + kh * g.w.kernel + kw]);
      }
    }
    dst[k] = static_cast<scalar_t>(acc);
  }
}

// One block per (channel c, tap t): sum over every output position of grad * x.
template <typename scalar_t, typename acc_t>
__global__ void depthwise_grad_weight_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ x,
                                             DepthwiseGeometry g, scalar_t* __restrict__ grad_weight) {
  __shared__ acc_t partial[kThreads];
  const int64_t taps = g.taps(), C = g.channels;
  const int64_t c = blockIdx.x / taps, t = blockIdx.x % taps;
  const int64_t kh = t / g.w.kernel, kw = t % g.w.kernel;
  const int64_t positions = g.batch * g.h.out * g.w.out;
  acc_t acc = acc_t(0);
  for (int64_t p = threadIdx.x; p < positions; p += blockDim.x) {
    const int64_t ow = p % g.w.out, oh = (p / g.w.out) % g.h.out, b = p / (g.w.out * g.h.out);
    const int64_t ih = tap_input(oh, kh, g.h), iw = tap_input(ow, kw, g.w);
    if (ih < 0 || iw < 0) continue;
    acc += static_cast<acc_t>(grad[p * C + c]) * static_cast<acc_t>(x[((b * g.h.in + ih) * g.w.in + iw) * C + c]);
  }
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) grad_weight[c * taps + t] = static_cast<scalar_t>(partial[0]);
}

at::Tensor depthwise_conv2d_cuda(const at::Tensor& x_in, const at::Tensor& weight_in, at::IntArrayRef stride,
                                 at::IntArrayRef padding, at::IntArrayRef dilation) {
  const DepthwiseGeometry g = check_depthwise_conv2d_inputs(kForward, x_in.sizes(), x_in.scalar_type(),
                                                            x_in.device(), weight_in, stride, padding, dilation);
  const c10::cuda::CUDAGuard guard(x_in.device());
  at::Tensor out = at::empty({g.batch, g.channels, g.h.out, g.w.out},
                             x_in.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (out.numel() == 0) return in_suggested_layout_of(out, x_in);
  const at::Tensor x = channels_last(x_in);
  const at::Tensor weight = weight_in.contiguous();
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "hwnas_depthwise_conv2d_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    depthwise_gather_kernel<true, scalar_t, acc_t><<<grid_for(out.numel()), kThreads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(), g, out.numel(),
        out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return in_suggested_layout_of(out, x_in);
}

std::tuple<at::Tensor, at::Tensor> depthwise_conv2d_backward_cuda(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                                  const at::Tensor& weight_in, at::IntArrayRef stride,
                                                                  at::IntArrayRef padding, at::IntArrayRef dilation,
                                                                  bool x_needs_grad, bool weight_needs_grad) {
  const DepthwiseGeometry g = check_depthwise_conv2d_inputs(kBackward, x_in.sizes(), x_in.scalar_type(),
                                                            x_in.device(), weight_in, stride, padding, dilation);
  check_depthwise_conv2d_grad(kBackward, grad_in, g, x_in.scalar_type(), x_in.device());
  const c10::cuda::CUDAGuard guard(x_in.device());
  at::Tensor grad_x = x_in.new_empty({0});
  at::Tensor grad_weight = weight_in.new_empty({0});
  if (!x_needs_grad && !weight_needs_grad) return {grad_x, grad_weight};
  const at::Tensor grad = channels_last(grad_in);
  const at::Tensor weight = weight_in.contiguous();
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, grad.scalar_type(), "hwnas_depthwise_conv2d_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    if (x_needs_grad) {
      at::Tensor grad_x_cl = at::empty(x_in.sizes(), x_in.options().memory_format(at::MemoryFormat::ChannelsLast));
      if (grad_x_cl.numel() > 0) {
        depthwise_gather_kernel<false, scalar_t, acc_t><<<grid_for(grad_x_cl.numel()), kThreads, 0, stream>>>(
            grad.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(), g, grad_x_cl.numel(),
            grad_x_cl.mutable_data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      grad_x = in_suggested_layout_of(grad_x_cl, x_in);
    }
    if (weight_needs_grad) {
      const at::Tensor x = channels_last(x_in);
      grad_weight = at::empty(weight_in.sizes(), weight_in.options());
      // One block per (channel, tap): none to launch for zero channels (a grid of 0 is an error).
      if (grad_weight.numel() > 0) {
        depthwise_grad_weight_kernel<scalar_t, acc_t><<<static_cast<unsigned>(g.channels * g.taps()), kThreads, 0,
                                                        stream>>>(grad.const_data_ptr<scalar_t>(),
                                                                  x.const_data_ptr<scalar_t>(), g,
                                                                  grad_weight.mutable_data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    }
  });
  return {grad_x, grad_weight};
}

}  // namespace

TORCH_LIBRARY_IMPL(hwnas, CUDA, m) {
  m.impl("depthwise_conv2d", &depthwise_conv2d_cuda);
  m.impl("depthwise_conv2d_backward", &depthwise_conv2d_backward_cuda);
}

}  // namespace ops
}  // namespace hwnas
