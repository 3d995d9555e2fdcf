// CPU kernels of hwnas::weighted_sum and its backward.
//
// Both walk the output in tiles of kTile elements. A tile's accumulator stays in L1
// while every active branch streams through it, so the output is written once and
// each branch is read once: the forward moves (N_active + 1) tensors of memory, which
// is the least any implementation can, where an eager `sum(w[i] * x[i])` moves about
// 4N. The backward reads the output gradient once per tile for all branches.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../common/dense_layout.h"
#include "../weighted_sum_checks.h"
#include "buffer_pool.h"
#include "host_values.h"
#include "weighted_sum_tiles.h"

namespace hwnas {
namespace ops {
namespace {

using cpu::kTile;
// Below this many element-reads per task, threading costs more than it saves.
constexpr int64_t kMinReadsPerTask = 1 << 16;

template <typename acc_t>
std::vector<acc_t> read_weights(const at::Tensor& weights) {
  const at::Tensor w = weights.contiguous();
  std::vector<acc_t> out(static_cast<size_t>(w.numel()));
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kBFloat16, at::kHalf, w.scalar_type(), "hwnas_read_weights", [&] {
        const scalar_t* p = w.const_data_ptr<scalar_t>();
        for (size_t k = 0; k < out.size(); ++k) out[k] = static_cast<acc_t>(p[k]);
      });
  return out;
}

// Tiles of the flat range [0, numel) split per sample: sample s owns
// [s * per_sample, (s + 1) * per_sample). With one mixture for the batch the whole
// tensor is one "sample".
struct TileGrid {
  int64_t per_sample;       // elements per sample
  int64_t tiles_per_sample;
  int64_t num_tiles;

  TileGrid(int64_t numel, int64_t samples) {
    per_sample = samples > 0 ? numel / samples : 0;
    tiles_per_sample = (per_sample + kTile - 1) / kTile;
    num_tiles = samples * tiles_per_sample;
  }
  int64_t sample(int64_t tile) const { return tile / tiles_per_sample; }
  int64_t begin(int64_t tile) const {
    return sample(tile) * per_sample + (tile % tiles_per_sample) * kTile;
  }
  int64_t length(int64_t tile) const {
    return std::min(kTile, per_sample - (tile % tiles_per_sample) * kTile);
  }
};

int64_t grain_for(int64_t reads_per_tile) {
  return std::max<int64_t>(1, kMinReadsPerTask / std::max<int64_t>(1, reads_per_tile));
}

template <typename scalar_t>
void weighted_sum_forward_impl(
    const std::vector<at::Tensor>& branches, const at::Tensor& weights, at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t n = static_cast<int64_t>(branches.size());
  const int64_t samples = weights.dim() == 2 ? weights.size(0) : 1;
  const std::vector<acc_t> w = read_weights<acc_t>(weights);
  // Per sample, the branches with a nonzero weight: a zero weight contributes
  // nothing, so its branch is not read at all (hard Gumbel samples leave most
  // weights at exactly zero).
  std::vector<const scalar_t*> active_src(samples * n);
  std::vector<acc_t> active_w(samples * n);
  std::vector<int64_t> active_count(samples, 0);
  for (int64_t s = 0; s < samples; ++s) {
    for (int64_t i = 0; i < n; ++i) {
      const acc_t wi = w[s * n + i];
      if (wi == acc_t(0)) continue;
      const int64_t k = s * n + active_count[s]++;
      active_src[k] = branches[i].const_data_ptr<scalar_t>();
      active_w[k] = wi;
    }
  }
  scalar_t* dst = out.mutable_data_ptr<scalar_t>();

  const TileGrid grid(out.numel(), samples);
  at::parallel_for(0, grid.num_tiles, grain_for(kTile * n), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t s = grid.sample(t);
      const int64_t start = grid.begin(t);
      const int64_t len = grid.length(t);
      if (active_count[s] == 0) {
        std::fill(dst + start, dst + start + len, scalar_t(0));
      } else {
        cpu::mix_tile(active_src.data() + s * n, active_w.data() + s * n, active_count[s], start, len,
                      dst + start);
      }
    }
  });
}

at::Tensor weighted_sum_cpu(at::TensorList branches_in, const at::Tensor& weights) {
  check_weighted_sum_inputs(branches_in, weights);
  TORCH_CHECK(
      branches_in[0].device().is_cpu(),
      "hwnas::weighted_sum: the CPU kernel got tensors on ", branches_in[0].device());
  const std::vector<at::Tensor> branches =
      with_shared_dense_layout(branches_in, /*need_batch_outermost=*/weights.dim() == 2);
  at::Tensor out = cpu::pooled_empty_like(branches[0]);
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kBFloat16, at::kHalf, out.scalar_type(), "hwnas_weighted_sum_cpu",
      [&] { weighted_sum_forward_impl<scalar_t>(branches, weights, out); });
  return out;
}

template <typename scalar_t>
void weighted_sum_backward_impl(
    const at::Tensor& grad,
    const std::vector<at::Tensor>& branches,
    const at::Tensor& weights,
    std::vector<at::Tensor>& grad_branches,
    std::vector<double>& dots) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t n = weights.size(-1);
  const int64_t samples = weights.dim() == 2 ? weights.size(0) : 1;
  const bool want_branches = !grad_branches.empty();
  const bool want_weights = !branches.empty();
  const std::vector<acc_t> w = read_weights<acc_t>(weights);
  const scalar_t* g = grad.const_data_ptr<scalar_t>();
  std::vector<const scalar_t*> src(want_weights ? n : 0);
  for (size_t i = 0; i < src.size(); ++i) src[i] = branches[i].const_data_ptr<scalar_t>();
  std::vector<scalar_t*> gdst(want_branches ? n : 0);
  for (size_t i = 0; i < gdst.size(); ++i) gdst[i] = grad_branches[i].mutable_data_ptr<scalar_t>();

  const TileGrid grid(grad.numel(), samples);
  // Per-tile partial dot products, summed afterwards in a fixed order so that the
  // weight gradient does not depend on the thread count.
  std::vector<acc_t> partial(want_weights ? grid.num_tiles * n : 0);
  const int64_t tensors_per_tile = 1 + (want_branches ? n : 0) + (want_weights ? n : 0);
  at::parallel_for(0, grid.num_tiles, grain_for(kTile * tensors_per_tile), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      cpu::mix_backward_tile(
          g, want_weights ? src.data() : nullptr, want_branches ? gdst.data() : nullptr,
          w.data() + grid.sample(t) * n, n, grid.begin(t), grid.length(t),
          want_weights ? partial.data() + t * n : nullptr);
    }
  });
  if (want_weights) {
    dots.assign(samples * n, 0.0);
    for (int64_t t = 0; t < grid.num_tiles; ++t) {
      double* row = dots.data() + grid.sample(t) * n;
      for (int64_t i = 0; i < n; ++i) row[i] += static_cast<double>(partial[t * n + i]);
    }
  }
}

std::tuple<std::vector<at::Tensor>, at::Tensor> weighted_sum_backward_cpu(
    const at::Tensor& grad_in,
    at::TensorList branches_in,
    const at::Tensor& weights,
    bool branches_need_grad,
    bool weights_need_grad) {
  constexpr const char* where = "hwnas::weighted_sum_backward";
  TORCH_CHECK(grad_in.device().is_cpu(), where, ": the CPU kernel got grad on ", grad_in.device());
  const int64_t n = weights.size(-1);
  if (weights_need_grad) {
    TORCH_CHECK(
        static_cast<int64_t>(branches_in.size()) == n,
        where, ": the weight gradient needs the ", n, " branches, got ", branches_in.size());
    check_weighted_sum_inputs(branches_in, weights);
    TORCH_CHECK(
        branches_in[0].sizes() == grad_in.sizes(),
        where, ": grad has shape ", grad_in.sizes(), " but the branches have shape ",
        branches_in[0].sizes());
  } else {
    check_mixture_weights(where, weights, n, grad_in.sizes(), grad_in.scalar_type(), grad_in.device());
  }
  const bool per_sample = weights.dim() == 2;

  // Bring grad and the branches to one dense layout (the branches' when available).
  std::vector<at::Tensor> branches;
  at::Tensor grad;
  if (weights_need_grad) {
    branches = with_shared_dense_layout(branches_in, per_sample);
    grad = like_layout(grad_in, branches[0]);
  } else {
    grad = with_shared_dense_layout({grad_in}, per_sample)[0];
  }

  std::vector<at::Tensor> grad_branches;
  if (branches_need_grad) {
    for (int64_t i = 0; i < n; ++i) grad_branches.push_back(cpu::pooled_empty_like(grad));
  }
  at::Tensor grad_weights = at::empty(weights_need_grad ? weights.sizes() : at::IntArrayRef{0}, weights.options());
  if (!branches_need_grad && !weights_need_grad) return {grad_branches, grad_weights};
  if (grad.numel() == 0) {
    grad_weights.zero_();
    return {grad_branches, grad_weights};
  }

  std::vector<double> dots;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kBFloat16, at::kHalf, grad.scalar_type(), "hwnas_weighted_sum_backward_cpu", [&] {
        weighted_sum_backward_impl<scalar_t>(grad, branches, weights, grad_branches, dots);
      });
  if (weights_need_grad) cpu::write_host_values(grad_weights, dots);
  return {grad_branches, grad_weights};
}

}  // namespace

TORCH_LIBRARY_IMPL(hwnas, CPU, m) {
  m.impl("weighted_sum", &weighted_sum_cpu);
  m.impl("weighted_sum_backward", &weighted_sum_backward_cpu);
}

}  // namespace ops
}  // namespace hwnas
