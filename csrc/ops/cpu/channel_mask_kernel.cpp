// CPU kernels of hwnas::channel_mask and its backward.
//
// The weighted sum of K prefix masks collapses to one scale per channel (and per
// sample with [B, K] gates), computed up front in O(K + C). The forward is then one
// read of x and one write of out; the backward is one read of grad and x and one
// write of grad_x, with the per-channel dot products <grad[:, c], x[:, c]> that give
// every gate gradient accumulated in the same pass. An eager `x * (gates @ M)`
// instead needs a full-size temporary `grad * x` and a strided reduction over it.
//
// Two layouts are walked directly: "channels outer" (contiguous NCHW and any layout
// where each channel of a sample is one contiguous run) and "channels inner"
// (channels_last and any layout where the channels of a position are adjacent).
// Anything else is computed in a contiguous copy.
//
// float32, the type supernets train in, has its own loops (channel_mask_rows.h):
// AVX2 where the CPU has it, streaming stores for outputs larger than the caches, and
// for the small feature maps of a search on small images (a few to a few dozen
// positions per channel, too short a run to vectorise) a walk that treats a whole
// sample as one C x S vector against a per-element copy of the channel scales.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "../channel_mask_backward_plan.h"
#include "../channel_mask_checks.h"
#include "../channel_mask_math.h"
#include "../common/channel_layout.h"
#include "../common/dense_layout.h"
#include "buffer_pool.h"
#include "channel_mask_rows.h"
#include "host_values.h"

namespace hwnas {
namespace ops {
namespace {

// Below this many elements per task, threading costs more than it saves.
constexpr int64_t kMinElementsPerTask = 1 << 15;
// Dot products are accumulated in acc_t over runs of at most kDotChunk elements and
// then in double (channel_mask_rows.h; the float32 loops do the same).
using cpu::kDotChunk;
// float32 samples of at most this many elements (C x S) with gates shared by the
// batch are walked whole, against the expanded scales (64 KiB of floats: L2-resident).
constexpr int64_t kExpandedMaxElements = 16384;
// Rows summed in float per partial of the whole-sample walk's gate dot products.
constexpr int64_t kMaxRowsPerPartial = 256;

ChannelLayout classify(const at::Tensor& t) { return classify_channel_layout(t); }

int64_t grain_for(int64_t elements_per_item) {
  return std::max<int64_t>(1, kMinElementsPerTask / std::max<int64_t>(1, elements_per_item));
}

// Scales of every gate row: [rows, C] with rows = 1 for [K] gates, B for [B, K].
template <typename acc_t>
std::vector<acc_t> scales_for(const at::Tensor& gates, at::IntArrayRef widths, int64_t channels) {
  const at::Tensor g = gates.contiguous();
  const int64_t k = g.size(-1);
  const int64_t rows = g.dim() == 2 ? g.size(0) : 1;
  std::vector<acc_t> scales(static_cast<size_t>(rows * channels));
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kBFloat16, at::kHalf, g.scalar_type(), "hwnas_channel_scales", [&] {
        const scalar_t* p = g.const_data_ptr<scalar_t>();
        for (int64_t r = 0; r < rows; ++r) {
          channel_scales<acc_t>(p + r * k, widths.data(), k, channels, scales.data() + r * channels);
        }
      });
  return scales;
}

// Shape of a [B, C, S] walk.
struct Extent {
  int64_t batch, channels, per_channel;
  explicit Extent(const at::Tensor& t)
      : batch(t.size(0)),
        channels(t.size(1)),
        per_channel(t.numel() == 0 ? 0 : t.numel() / (t.size(0) * t.size(1))) {}
};

// The channels-inner backward cuts the positions of each sample into fixed tiles
// (from the shape alone), each keeping C partial dots that are summed afterwards in
// tile order: the result does not depend on the thread count.
struct PositionTiles {
  int64_t per_sample, tile, tiles_per_sample, count;
  explicit PositionTiles(const Extent& e)
      : per_sample(e.per_channel),
        tile(std::max<int64_t>(16, kDotChunk / std::max<int64_t>(1, e.channels))),
        tiles_per_sample((e.per_channel + tile - 1) / tile),
        count(e.batch * tiles_per_sample) {}
  int64_t sample(int64_t t) const { return t / tiles_per_sample; }
  // Positions [first(t), end(t)) of tile t, counted over the whole batch.
  int64_t first(int64_t t) const { return sample(t) * per_sample + (t % tiles_per_sample) * tile; }
  int64_t end(int64_t t) const { return std::min((sample(t) + 1) * per_sample, first(t) + tile); }
};

// dots[row * C + c] += the tiles' partial dots, in tile order; row is the tile's sample
// when per_sample_rows, else 0.
template <typename acc_t>
void add_tile_dots(const PositionTiles& tiles, const std::vector<acc_t>& partial, int64_t C, bool per_sample_rows,
                   std::vector<double>& dots) {
  for (int64_t t = 0; t < tiles.count; ++t) {
    double* row = dots.data() + (per_sample_rows ? tiles.sample(t) * C : 0);
    const acc_t* acc = partial.data() + t * C;
    for (int64_t c = 0; c < C; ++c) row[c] += static_cast<double>(acc[c]);
  }
}

// dst = src * scale[channel], with src and dst in the same walkable layout.
template <typename scalar_t>
void scale_channels(
    const scalar_t* src,
    scalar_t* dst,
    const std::vector<at::opmath_type<scalar_t>>& scales,
    bool per_sample_scales,
    const Extent& e,
    ChannelLayout layout) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t C = e.channels, S = e.per_channel;
  if (layout == ChannelLayout::kChannelsOuter) {
    at::parallel_for(0, e.batch * C, grain_for(S), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / C, c = r % C;
        const acc_t s = scales[(per_sample_scales ? b * C : 0) + c];
        scalar_t* o = dst + r * S;
        // A channel no width keeps (or whose gates are all zero, as after a hard
        // sample) is written as zero without reading x.
        if (s == acc_t(0)) {
          std::fill(o, o + S, scalar_t(0));
          continue;
        }
        const scalar_t* x = src + r * S;
#pragma omp simd
        for (int64_t j = 0; j < S; ++j) o[j] = static_cast<scalar_t>(masked_value(s, x[j]));
      }
    });
  } else {
    at::parallel_for(0, e.batch * S, grain_for(C), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const acc_t* srow = scales.data() + (per_sample_scales ? (p / S) * C : 0);
        const scalar_t* x = src + p * C;
        scalar_t* o = dst + p * C;
        // The same zero rule as above, per element: a zeroed channel is written as
        // zero, so inf or NaN in x there does not become 0 * inf = NaN.
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
          o[c] = srow[c] == acc_t(0) ? scalar_t(0) : static_cast<scalar_t>(masked_value(srow[c], x[c]));
        }
      }
    });
  }
}

// scales[c] repeated over the S positions of channel c: one sample's worth.
std::vector<float> expand_scales(const std::vector<float>& scales, int64_t C, int64_t S) {
  std::vector<float> es(static_cast<size_t>(C * S));
  for (int64_t c = 0; c < C; ++c) std::fill(es.begin() + c * S, es.begin() + (c + 1) * S, scales[c]);
  return es;
}

bool streams(const Extent& e) {
  return e.batch * e.channels * e.per_channel * static_cast<int64_t>(sizeof(float)) >= cpu::stream_min_bytes();
}

bool walks_whole_samples(const Extent& e, ChannelLayout layout, bool per_sample_scales) {
  return layout == ChannelLayout::kChannelsOuter && !per_sample_scales &&
         e.channels * e.per_channel <= kExpandedMaxElements;
}

// scale_channels for float32.
void scale_channels_f32(const float* src, float* dst, const std::vector<float>& scales, bool per_sample_scales,
                        const Extent& e, ChannelLayout layout) {
  const int64_t B = e.batch, C = e.channels, S = e.per_channel;
  const bool stream = streams(e);
  if (walks_whole_samples(e, layout, per_sample_scales)) {
    // One broadcast scale per (sample, channel) run where runs of S allow it, else an
    // expanded scale row.
    const bool runs = cpu::has_channel_runs(S);
    const std::vector<float> es = runs ? std::vector<float>() : expand_scales(scales, C, S);
    at::parallel_for(0, B, grain_for(C * S), [&](int64_t b0, int64_t b1) {
      if (runs) {
        cpu::scale_channel_runs(src + b0 * C * S, scales.data(), dst + b0 * C * S, b1 - b0, C, S, stream);
      } else {
        cpu::scale_rows(src + b0 * C * S, es.data(), dst + b0 * C * S, b1 - b0, C * S, stream);
      }
      if (stream) cpu::stream_fence();
    });
  } else if (layout == ChannelLayout::kChannelsOuter) {
    at::parallel_for(0, B * C, grain_for(S), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float s = scales[(per_sample_scales ? (r / C) * C : 0) + r % C];
        cpu::scale_run(src + r * S, dst + r * S, s, S, stream);
      }
      if (stream) cpu::stream_fence();
    });
  } else {
    // Channels inner: every position is one row of C channels; consecutive positions
    // of one sample share a scale row.
    at::parallel_for(0, B * S, grain_for(C), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1;) {
        const int64_t b = p / S;
        const int64_t end = per_sample_scales ? std::min(p1, (b + 1) * S) : p1;
        const float* srow = scales.data() + (per_sample_scales ? b * C : 0);
        cpu::scale_rows(src + p * C, srow, dst + p * C, end - p, C, stream);
        p = end;
      }
      if (stream) cpu::stream_fence();
    });
  }
}

// The forward of any supported type: float32's own loops, or the generic ones.
template <typename scalar_t>
void channel_mask_forward_any(const scalar_t* src, scalar_t* dst,
                              const std::vector<at::opmath_type<scalar_t>>& scales, bool per_sample_scales,
                              const Extent& e, ChannelLayout layout) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    scale_channels_f32(src, dst, scales, per_sample_scales, e, layout);
  } else {
    scale_channels<scalar_t>(src, dst, scales, per_sample_scales, e, layout);
  }
}

at::Tensor channel_mask_cpu(const at::Tensor& x_in, const at::Tensor& gates, at::IntArrayRef widths) {
  check_channel_mask_inputs(x_in, gates, widths);
  TORCH_CHECK(
      x_in.device().is_cpu(), "hwnas::channel_mask: the CPU kernel got x on ", x_in.device());
  at::Tensor out = cpu::empty_like_output(x_in);
  if (out.numel() == 0) return out;
  ChannelLayout layout = classify(out);
  at::Tensor work = out;
  if (layout == ChannelLayout::kOther) {
    work = at::empty_like(x_in, at::MemoryFormat::Contiguous);
    layout = ChannelLayout::kChannelsOuter;
  }
  const at::Tensor x = like_layout(x_in, work);
  const Extent extent(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kBFloat16, at::kHalf, x.scalar_type(), "hwnas_channel_mask_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const std::vector<acc_t> scales = scales_for<acc_t>(gates, widths, extent.channels);
        channel_mask_forward_any<scalar_t>(x.const_data_ptr<scalar_t>(), work.mutable_data_ptr<scalar_t>(), scales,
                                           gates.dim() == 2, extent, layout);
      });
  if (!work.is_same(out)) out.copy_(work);
  return out;
}

// grad_x = grad * scale[channel] (when grad_x_ptr is not null) and, when x_ptr is not
// null, channel_dots[b * C + c] = <grad[b, c], x[b, c]>, in one pass.
template <typename scalar_t>
void channel_mask_backward_impl(
    const scalar_t* g,
    const scalar_t* x_ptr,
    scalar_t* grad_x_ptr,
    const std::vector<at::opmath_type<scalar_t>>& scales,
    bool per_sample_scales,
    const Extent& e,
    ChannelLayout layout,
    std::vector<double>& channel_dots) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t B = e.batch, C = e.channels, S = e.per_channel;
  const bool want_x = grad_x_ptr != nullptr;
  const bool want_dots = x_ptr != nullptr;
  if (want_dots) channel_dots.assign(static_cast<size_t>(B * C), 0.0);
  const int64_t streams = 1 + (want_x ? 1 : 0) + (want_dots ? 1 : 0);

  if (layout == ChannelLayout::kChannelsOuter) {
    // One (sample, channel) run per item: its dot product is owned by one thread, so
    // the result does not depend on the thread count.
    at::parallel_for(0, B * C, grain_for(S * streams), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / C, c = r % C;
        const acc_t s = scales[(per_sample_scales ? b * C : 0) + c];
        const scalar_t* gr = g + r * S;
        if (!want_dots) {
          scalar_t* d = grad_x_ptr + r * S;
#pragma omp simd
          for (int64_t j = 0; j < S; ++j) d[j] = static_cast<scalar_t>(masked_value(s, gr[j]));
          continue;
        }
        const scalar_t* xr = x_ptr + r * S;
        double total = 0.0;
        for (int64_t j0 = 0; j0 < S; j0 += kDotChunk) {
          const int64_t j1 = std::min(S, j0 + kDotChunk);
          acc_t dot = 0;
          if (want_x) {
            // grad_x and the dot product in one loop: grad is read once.
            scalar_t* d = grad_x_ptr + r * S;
#pragma omp simd reduction(+ : dot)
            for (int64_t j = j0; j < j1; ++j) {
              const acc_t gj = static_cast<acc_t>(gr[j]);
              d[j] = static_cast<scalar_t>(masked_value(s, gj));
              dot += gj * static_cast<acc_t>(xr[j]);
            }
          } else {
#pragma omp simd reduction(+ : dot)
            for (int64_t j = j0; j < j1; ++j) dot += static_cast<acc_t>(gr[j]) * static_cast<acc_t>(xr[j]);
          }
          total += static_cast<double>(dot);
        }
        channel_dots[r] = total;
      }
    });
    return;
  }

  // Channels inner: fixed tiles of positions (PositionTiles).
  const PositionTiles tiles(e);
  std::vector<acc_t> partial(want_dots ? static_cast<size_t>(tiles.count * C) : 0);
  at::parallel_for(0, tiles.count, grain_for(tiles.tile * C * streams), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = tiles.sample(t);
      const int64_t p0 = tiles.first(t), p1 = tiles.end(t);
      const acc_t* srow = scales.data() + (per_sample_scales ? b * C : 0);
      acc_t* acc = want_dots ? partial.data() + t * C : nullptr;
      if (want_dots) std::fill(acc, acc + C, acc_t(0));
      for (int64_t p = p0; p < p1; ++p) {
        const scalar_t* gp = g + p * C;
        if (want_x) {
          scalar_t* d = grad_x_ptr + p * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) d[c] = static_cast<scalar_t>(masked_value(srow[c], gp[c]));
        }
        if (want_dots) {
          const scalar_t* xp = x_ptr + p * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) acc[c] += static_cast<acc_t>(gp[c]) * static_cast<acc_t>(xp[c]);
        }
      }
    }
  });
  if (want_dots) add_tile_dots(tiles, partial, C, /*per_sample_rows=*/true, channel_dots);
}

// [B * C] per-sample channel dots -> [rows * C] dots of each gate row: [K] gates
// (rows = 1) are shared by the batch, so their dots sum over samples.
std::vector<double> dots_per_gate_row(const std::vector<double>& channel_dots, int64_t B, int64_t C,
                                      bool per_sample_scales) {
  if (per_sample_scales) return channel_dots;
  std::vector<double> row(static_cast<size_t>(C), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t c = 0; c < C; ++c) row[c] += channel_dots[b * C + c];
  }
  return row;
}

// row_dots[c] += the sum over blocks k and j < S of partial[k * C * S + c * S + j], in
// double (S: the partial sums per channel and block). The blocks are added element by
// element first, then each channel's S values with four accumulators; the order is
// fixed by the shape alone, so results do not depend on the thread count.
void sum_whole_sample_partials(const std::vector<float>& partial, int64_t blocks, int64_t C, int64_t S,
                               std::vector<double>& row_dots) {
  const int64_t CS = C * S;
  std::vector<double> total(static_cast<size_t>(CS), 0.0);
  for (int64_t k = 0; k < blocks; ++k) {
    const float* acc = partial.data() + k * CS;
    double* t = total.data();
#pragma omp simd
    for (int64_t j = 0; j < CS; ++j) t[j] += static_cast<double>(acc[j]);
  }
  for (int64_t c = 0; c < C; ++c) {
    const double* t = total.data() + c * S;
    double lanes[4] = {0.0, 0.0, 0.0, 0.0};
    int64_t j = 0;
    for (; j + 4 <= S; j += 4) {
      for (int l = 0; l < 4; ++l) lanes[l] += t[j + l];
    }
    for (; j < S; ++j) lanes[0] += t[j];
    row_dots[c] += (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  }
}

// The backward for float32: grad_x = grad * scale[channel] (when gx is not null) and,
// when x is not null, row_dots[r * C + c] = the dot products of channel c that gate row
// r's gradient needs (rows = B for [B, K] gates, 1 for [K] gates), in one pass.
void channel_mask_backward_f32(const float* g, const float* x, float* gx, const std::vector<float>& scales,
                               bool per_sample_scales, const Extent& e, ChannelLayout layout,
                               std::vector<double>& row_dots) {
  const int64_t B = e.batch, C = e.channels, S = e.per_channel;
  const bool want_x = gx != nullptr, want_dots = x != nullptr;
  const bool stream = want_x && streams(e);
  const int64_t streams_per_element = 1 + (want_x ? 1 : 0) + (want_dots ? 1 : 0);
  const int64_t rows = per_sample_scales ? B : 1;
  row_dots.assign(static_cast<size_t>(rows * C), 0.0);

  if (walks_whole_samples(e, layout, per_sample_scales)) {
    // Samples in fixed blocks (from the shape alone, so the sums do not depend on the
    // thread count), each block summing its products in float: per channel in 8
    // register lanes where runs of S allow it (scale_dot_channel_runs), else per
    // element along an expanded scale row (scale_dot_rows).
    const int64_t CS = C * S;
    const bool runs = cpu::has_channel_runs(S);
    const int64_t per_channel = runs ? 8 : S;  // partial sums per channel and block
    const std::vector<float> es = runs ? std::vector<float>() : expand_scales(scales, C, S);
    const int64_t block = std::clamp<int64_t>(kMinElementsPerTask / CS, 1, kMaxRowsPerPartial);
    const int64_t blocks = (B + block - 1) / block;
    std::vector<float> partial(want_dots ? static_cast<size_t>(blocks * C * per_channel) : 0, 0.f);
    at::parallel_for(0, blocks, 1, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t b0 = k * block, n = std::min(B, b0 + block) - b0;
        const float* gk = g + b0 * CS;
        const float* xk = want_dots ? x + b0 * CS : nullptr;
        float* gxk = want_x ? gx + b0 * CS : nullptr;
        float* pk = want_dots ? partial.data() + k * C * per_channel : nullptr;
        if (runs) {
          cpu::scale_dot_channel_runs(gk, xk, scales.data(), gxk, pk, n, C, S, stream);
        } else {
          cpu::scale_dot_rows(gk, xk, es.data(), gxk, pk, n, CS, stream);
        }
      }
      if (stream) cpu::stream_fence();
    });
    if (want_dots) sum_whole_sample_partials(partial, blocks, C, per_channel, row_dots);
    return;
  }

  if (layout == ChannelLayout::kChannelsOuter) {
    std::vector<double> channel_dots(want_dots ? static_cast<size_t>(B * C) : 0, 0.0);
    at::parallel_for(0, B * C, grain_for(S * streams_per_element), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float s = scales[(per_sample_scales ? (r / C) * C : 0) + r % C];
        const double dot = cpu::scale_dot_run(g + r * S, want_dots ? x + r * S : nullptr,
                                              want_x ? gx + r * S : nullptr, s, S, stream);
        if (want_dots) channel_dots[r] = dot;
      }
      if (stream) cpu::stream_fence();
    });
    if (want_dots) row_dots = dots_per_gate_row(channel_dots, B, C, per_sample_scales);
    return;
  }

  // Channels inner: fixed tiles of positions (PositionTiles), float partial dots.
  const PositionTiles tiles(e);
  std::vector<float> partial(want_dots ? static_cast<size_t>(tiles.count * C) : 0, 0.f);
  at::parallel_for(0, tiles.count, grain_for(tiles.tile * C * streams_per_element), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t p0 = tiles.first(t), p1 = tiles.end(t);
      const float* srow = scales.data() + (per_sample_scales ? tiles.sample(t) * C : 0);
      cpu::scale_dot_rows(g + p0 * C, want_dots ? x + p0 * C : nullptr, srow, want_x ? gx + p0 * C : nullptr,
                          want_dots ? partial.data() + t * C : nullptr, p1 - p0, C, stream);
    }
    if (stream) cpu::stream_fence();
  });
  if (want_dots) add_tile_dots(tiles, partial, C, per_sample_scales, row_dots);
}

// The backward of any supported type, giving the dots of each gate row.
template <typename scalar_t>
void channel_mask_backward_any(const scalar_t* g, const scalar_t* x, scalar_t* gx,
                               const std::vector<at::opmath_type<scalar_t>>& scales, bool per_sample_scales,
                               const Extent& e, ChannelLayout layout, std::vector<double>& row_dots) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    channel_mask_backward_f32(g, x, gx, scales, per_sample_scales, e, layout, row_dots);
  } else {
    std::vector<double> channel_dots;
    channel_mask_backward_impl<scalar_t>(g, x, gx, scales, per_sample_scales, e, layout, channel_dots);
    if (x != nullptr) row_dots = dots_per_gate_row(channel_dots, e.batch, e.channels, per_sample_scales);
  }
}

std::tuple<at::Tensor, at::Tensor> channel_mask_backward_cpu(
    const at::Tensor& grad_in,
    const at::Tensor& x_in,
    const at::Tensor& gates,
    at::IntArrayRef widths,
    bool x_needs_grad,
    bool gates_needs_grad) {
  TORCH_CHECK(grad_in.device().is_cpu(), "hwnas::channel_mask_backward: the CPU kernel got grad on ",
              grad_in.device());
  ChannelMaskBackwardPlan plan =
      plan_channel_mask_backward(grad_in, x_in, gates, widths, x_needs_grad, gates_needs_grad);
  if (plan.nothing_to_do) return {plan.grad_x, plan.grad_gates};
  const at::Tensor& grad = plan.grad;
  const at::Tensor& x = plan.x;
  at::Tensor& work_grad_x = plan.work_grad_x;
  const ChannelLayout layout = plan.layout;
  at::Tensor& grad_gates = plan.grad_gates;
  const Extent extent(grad);

  const bool per_sample_scales = gates.dim() == 2;
  std::vector<double> per_row_dots;  // [rows * C], rows = B for [B, K] gates, 1 for [K]
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kBFloat16, at::kHalf, grad.scalar_type(), "hwnas_channel_mask_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const std::vector<acc_t> scales = scales_for<acc_t>(gates, widths, extent.channels);
        const scalar_t* x_ptr = gates_needs_grad ? x.const_data_ptr<scalar_t>() : nullptr;
        scalar_t* gx_ptr = x_needs_grad ? work_grad_x.mutable_data_ptr<scalar_t>() : nullptr;
        channel_mask_backward_any<scalar_t>(grad.const_data_ptr<scalar_t>(), x_ptr, gx_ptr, scales,
                                            per_sample_scales, extent, layout, per_row_dots);
      });
  finish_channel_mask_backward(plan);

  if (gates_needs_grad) {
    const int64_t B = extent.batch, C = extent.channels, k = gates.size(-1);
    const int64_t rows = per_sample_scales ? B : 1;
    std::vector<double> grads(static_cast<size_t>(rows * k));
    for (int64_t r = 0; r < rows; ++r) {
      gate_grads_from_channel_dots(per_row_dots.data() + r * C, widths.data(), k, grads.data() + r * k);
    }
    cpu::write_host_values(grad_gates, grads);
  }
  return {plan.grad_x, plan.grad_gates};
}

}  // namespace

TORCH_LIBRARY_IMPL(hwnas, CPU, m) {
  m.impl("channel_mask", &channel_mask_cpu);
  m.impl("channel_mask_backward", &channel_mask_backward_cpu);
}

}  // namespace ops
}  // namespace hwnas
