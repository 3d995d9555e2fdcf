// CPU kernels of hwnas::depthwise_conv2d and its backward.
//
// Everything is computed channels-last (depthwise_conv2d_rows.h): a channels_last
// input, the layout hwnas trains in, is read in place; any other input is copied to
// channels_last once, and its results are handed back in its own layout. Each output
// row, each input-gradient row and each batch chunk of the weight gradient is an
// independent task; the input gradient is a gather (every element written once) and
// the weight gradient sums a fixed number of per-chunk partials in a fixed order, so
// results do not depend on the thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../common/dense_layout.h"
#include "../depthwise_conv2d_checks.h"
#include "depthwise_conv2d_rows.h"

namespace hwnas {
namespace ops {
namespace {

constexpr const char* kForward = "hwnas::depthwise_conv2d";
constexpr const char* kBackward = "hwnas::depthwise_conv2d_backward";
// Below this many multiply-adds per task, threading costs more than it saves.
constexpr int64_t kMinWorkPerTask = 1 << 15;
// The weight gradient sums at most this many per-chunk partials (a fixed number, so
// the summation order does not depend on the thread count).
constexpr int64_t kWeightGradChunks = 8;

// weight [C, 1, KH, KW] -> [KH * KW, C] in acc_t, the layout the row loops read.
template <typename scalar_t, typename acc_t>
std::vector<acc_t> transposed_filters(const at::Tensor& weight, const DepthwiseGeometry& g) {
  const at::Tensor w = weight.contiguous();
  const scalar_t* p = w.const_data_ptr<scalar_t>();
  const int64_t C = g.channels, taps = g.taps();
  std::vector<acc_t> out(static_cast<size_t>(taps * C));
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t t = 0; t < taps; ++t) out[t * C + c] = static_cast<acc_t>(p[c * taps + t]);
  }
  return out;
}

int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, kMinWorkPerTask / std::max<int64_t>(1, work_per_item));
}

at::Tensor depthwise_conv2d_cpu(const at::Tensor& x_in, const at::Tensor& weight, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation) {
  const DepthwiseGeometry g =
      check_depthwise_conv2d_inputs(kForward, x_in.sizes(), x_in.scalar_type(), x_in.device(), weight, stride,
                                    padding, dilation);
  at::Tensor out = at::empty({g.batch, g.channels, g.h.out, g.w.out},
                             x_in.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (out.numel() == 0) return in_suggested_layout_of(out, x_in);
  const at::Tensor x = channels_last(x_in);
  const int64_t in_sample = g.h.in * g.w.in * g.channels, out_sample = g.h.out * g.w.out * g.channels;
  const int64_t rows = g.batch * g.h.out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "hwnas_depthwise_conv2d_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const std::vector<acc_t> w = transposed_filters<scalar_t, acc_t>(weight, g);
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, rows, grain_for(g.w.out * g.taps() * g.channels), [&](int64_t begin, int64_t end) {
      std::vector<acc_t> acc(static_cast<size_t>(g.channels));
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / g.h.out, oh = r % g.h.out;
        cpu::depthwise_forward_row(xp + b * in_sample, w.data(), g, oh, acc.data(),
                                   op + b * out_sample + oh * g.w.out * g.channels);
      }
    });
  });
  return in_suggested_layout_of(out, x_in);
}

std::tuple<at::Tensor, at::Tensor> depthwise_conv2d_backward_cpu(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                                 const at::Tensor& weight, at::IntArrayRef stride,
                                                                 at::IntArrayRef padding, at::IntArrayRef dilation,
                                                                 bool x_needs_grad, bool weight_needs_grad) {
  const DepthwiseGeometry g =
      check_depthwise_conv2d_inputs(kBackward, x_in.sizes(), x_in.scalar_type(), x_in.device(), weight, stride,
                                    padding, dilation);
  check_depthwise_conv2d_grad(kBackward, grad_in, g, x_in.scalar_type(), x_in.device());
  at::Tensor grad_x = x_in.new_empty({0});
  at::Tensor grad_weight = weight.new_empty({0});
  if (!x_needs_grad && !weight_needs_grad) return {grad_x, grad_weight};
  const at::Tensor grad = channels_last(grad_in);
  const int64_t in_sample = g.h.in * g.w.in * g.channels, out_sample = g.h.out * g.w.out * g.channels;
  const int64_t C = g.channels, taps = g.taps();
  at::Tensor grad_x_cl;
  if (x_needs_grad) {
    grad_x_cl = at::empty(x_in.sizes(), x_in.options().memory_format(at::MemoryFormat::ChannelsLast));
  }
  if (weight_needs_grad) grad_weight = at::empty(weight.sizes(), weight.options());
  const at::Tensor x = weight_needs_grad ? channels_last(x_in) : x_in;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, grad.scalar_type(), "hwnas_depthwise_conv2d_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* gp = grad.const_data_ptr<scalar_t>();
    if (x_needs_grad && grad_x_cl.numel() > 0) {
      const std::vector<acc_t> w = transposed_filters<scalar_t, acc_t>(weight, g);
      scalar_t* gxp = grad_x_cl.mutable_data_ptr<scalar_t>();
      at::parallel_for(0, g.batch * g.h.in, grain_for(g.w.in * taps * C), [&](int64_t begin, int64_t end) {
        std::vector<acc_t> acc(static_cast<size_t>(C));
        for (int64_t r = begin; r < end; ++r) {
          const int64_t b = r / g.h.in, ih = r % g.h.in;
          cpu::depthwise_grad_input_row(gp + b * out_sample, w.data(), g, ih, acc.data(),
                                        gxp + b * in_sample + ih * g.w.in * C);
        }
      });
    }
    if (weight_needs_grad) {
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      const int64_t chunks = std::max<int64_t>(1, std::min(g.batch, kWeightGradChunks));
      std::vector<acc_t> partials(static_cast<size_t>(chunks * taps * C), acc_t(0));
      at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k) {
          acc_t* partial = partials.data() + k * taps * C;
          for (int64_t b = k * g.batch / chunks; b < (k + 1) * g.batch / chunks; ++b) {
            for (int64_t oh = 0; oh < g.h.out; ++oh) {
              cpu::depthwise_grad_weight_row(gp + b * out_sample, xp + b * in_sample, g, oh, partial);
            }
          }
        }
      });
      // [KH * KW, C] partials -> weight's [C, 1, KH, KW], chunks summed in order.
      scalar_t* gwp = grad_weight.mutable_data_ptr<scalar_t>();
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t t = 0; t < taps; ++t) {
          acc_t sum = acc_t(0);
          for (int64_t k = 0; k < chunks; ++k) sum += partials[(k * taps + t) * C + c];
          gwp[c * taps + t] = static_cast<scalar_t>(sum);
        }
      }
    }
  });
  if (x_needs_grad) grad_x = in_suggested_layout_of(grad_x_cl, x_in);
  return {grad_x, grad_weight};
}

}  // namespace

TORCH_LIBRARY_IMPL(hwnas, CPU, m) {
  m.impl("depthwise_conv2d", &depthwise_conv2d_cpu);
  m.impl("depthwise_conv2d_backward", &depthwise_conv2d_backward_cpu);
}

}  // namespace ops
}  // namespace hwnas
