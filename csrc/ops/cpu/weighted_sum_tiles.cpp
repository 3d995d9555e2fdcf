// Tile loops of the CPU weighted_sum kernels (see weighted_sum_tiles.h).
//
// The loops are written once as always-inline templates and instantiated inside
// multiversioned functions (multiversion.h).
#include "weighted_sum_tiles.h"

#include <algorithm>
#include <type_traits>

#include "../weighted_sum_math.h"
#include "multiversion.h"

namespace hwnas {
namespace ops {
namespace cpu {
namespace {

// acc[j] (= 0 when init) + sum_{g < G} w[g] * x[g][offset + j] for j < len: G branches
// in one pass, so the accumulator is loaded and stored once per G branches.
template <int G, typename scalar_t, typename acc_t>
HWNAS_ALWAYS_INLINE void accumulate_group(acc_t* acc, const scalar_t* const* x, const acc_t* w, int64_t offset,
                                          int64_t len, bool init) {
  const scalar_t* xs[G];
  acc_t ws[G];
  for (int g = 0; g < G; ++g) {
    xs[g] = x[g] + offset;
    ws[g] = w[g];
  }
#pragma omp simd
  for (int64_t j = 0; j < len; ++j) {
    acc_t a = init ? acc_t(0) : acc[j];
    for (int g = 0; g < G; ++g) a = mix_accumulate(a, ws[g], xs[g][j]);
    acc[j] = a;
  }
}

// Most branches read in one pass over the accumulator. Ten input streams plus the
// output still fit the hardware prefetchers, and a supernet layer rarely has more
// candidates (FBNet: 9), so the usual case writes each output element exactly once.
constexpr int kMaxGroup = 10;

template <typename scalar_t, typename acc_t>
HWNAS_ALWAYS_INLINE void accumulate_some(acc_t* acc, const scalar_t* const* x, const acc_t* w, int64_t count,
                                         int64_t offset, int64_t len, bool init) {
  switch (count) {
    case 1: accumulate_group<1>(acc, x, w, offset, len, init); break;
    case 2: accumulate_group<2>(acc, x, w, offset, len, init); break;
    case 3: accumulate_group<3>(acc, x, w, offset, len, init); break;
    case 4: accumulate_group<4>(acc, x, w, offset, len, init); break;
    case 5: accumulate_group<5>(acc, x, w, offset, len, init); break;
    case 6: accumulate_group<6>(acc, x, w, offset, len, init); break;
    case 7: accumulate_group<7>(acc, x, w, offset, len, init); break;
    case 8: accumulate_group<8>(acc, x, w, offset, len, init); break;
    case 9: accumulate_group<9>(acc, x, w, offset, len, init); break;
    default: accumulate_group<kMaxGroup>(acc, x, w, offset, len, init); break;
  }
}

// For float32 and float64 the output itself is the accumulator; 16-bit
// types accumulate in a float32 tile on the stack and are rounded once at the end.
template <typename scalar_t, typename acc_t>
HWNAS_ALWAYS_INLINE void mix_tile_impl(const scalar_t* const* x, const acc_t* w, int64_t count, int64_t offset,
                                       int64_t len, scalar_t* out) {
  constexpr bool kAccumulateInOutput = std::is_same_v<scalar_t, acc_t>;
  acc_t local[kAccumulateInOutput ? 1 : kTile];
  acc_t* acc = nullptr;
  if constexpr (kAccumulateInOutput) {
    acc = out;
  } else {
    acc = local;
  }
  // Split the branches into the fewest passes of at most kMaxGroup, evenly sized.
  const int64_t passes = (count + kMaxGroup - 1) / kMaxGroup;
  const int64_t group = (count + passes - 1) / passes;
  for (int64_t k = 0; k < count; k += group) {
    accumulate_some(acc, x + k, w + k, std::min<int64_t>(group, count - k), offset, len, /*init=*/k == 0);
  }
  if constexpr (!kAccumulateInOutput) {
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) out[j] = static_cast<scalar_t>(acc[j]);
  }
}

// The output gradient of the tile is read once into acc_t (float32 and float64 use it
// in place); each branch then gets its gradient and its dot product in one loop.
template <typename scalar_t, typename acc_t>
HWNAS_ALWAYS_INLINE void mix_backward_tile_impl(const scalar_t* g, const scalar_t* const* x, scalar_t* const* gx,
                                                const acc_t* w, int64_t n, int64_t offset, int64_t len, acc_t* dots) {
  constexpr bool kReadInPlace = std::is_same_v<scalar_t, acc_t>;
  acc_t local[kReadInPlace ? 1 : kTile];
  const acc_t* gacc = nullptr;
  if constexpr (kReadInPlace) {
    gacc = g + offset;
  } else {
    const scalar_t* gt = g + offset;
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) local[j] = static_cast<acc_t>(gt[j]);
    gacc = local;
  }
  for (int64_t i = 0; i < n; ++i) {
    const acc_t wi = w[i];
    if (gx != nullptr && x != nullptr) {
      scalar_t* d = gx[i] + offset;
      const scalar_t* xi = x[i] + offset;
      acc_t dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int64_t j = 0; j < len; ++j) {
        const acc_t gj = gacc[j];
        d[j] = static_cast<scalar_t>(branch_grad(wi, gj));
        dot = weight_grad_accumulate(dot, gj, xi[j]);
      }
      dots[i] = dot;
    } else if (gx != nullptr) {
      scalar_t* d = gx[i] + offset;
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) d[j] = static_cast<scalar_t>(branch_grad(wi, gacc[j]));
    } else if (x != nullptr) {
      const scalar_t* xi = x[i] + offset;
      acc_t dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int64_t j = 0; j < len; ++j) dot = weight_grad_accumulate(dot, gacc[j], xi[j]);
      dots[i] = dot;
    }
  }
}

}  // namespace

HWNAS_MULTIVERSION void mix_tile(const float* const* x, const float* w, int64_t count, int64_t offset, int64_t len,
                                 float* out) {
  mix_tile_impl(x, w, count, offset, len, out);
}
HWNAS_MULTIVERSION void mix_tile(const double* const* x, const double* w, int64_t count, int64_t offset, int64_t len,
                                 double* out) {
  mix_tile_impl(x, w, count, offset, len, out);
}
HWNAS_MULTIVERSION void mix_tile(const c10::BFloat16* const* x, const float* w, int64_t count, int64_t offset,
                                 int64_t len, c10::BFloat16* out) {
  mix_tile_impl(x, w, count, offset, len, out);
}
HWNAS_MULTIVERSION void mix_tile(const c10::Half* const* x, const float* w, int64_t count, int64_t offset, int64_t len,
                                 c10::Half* out) {
  mix_tile_impl(x, w, count, offset, len, out);
}

HWNAS_MULTIVERSION void mix_backward_tile(const float* g, const float* const* x, float* const* gx, const float* w,
                                          int64_t n, int64_t offset, int64_t len, float* dots) {
  mix_backward_tile_impl(g, x, gx, w, n, offset, len, dots);
}
HWNAS_MULTIVERSION void mix_backward_tile(const double* g, const double* const* x, double* const* gx, const double* w,
                                          int64_t n, int64_t offset, int64_t len, double* dots) {
  mix_backward_tile_impl(g, x, gx, w, n, offset, len, dots);
}
HWNAS_MULTIVERSION void mix_backward_tile(const c10::BFloat16* g, const c10::BFloat16* const* x,
                                          c10::BFloat16* const* gx, const float* w, int64_t n, int64_t offset,
                                          int64_t len, float* dots) {
  mix_backward_tile_impl(g, x, gx, w, n, offset, len, dots);
}
HWNAS_MULTIVERSION void mix_backward_tile(const c10::Half* g, const c10::Half* const* x, c10::Half* const* gx,
                                          const float* w, int64_t n, int64_t offset, int64_t len, float* dots) {
  mix_backward_tile_impl(g, x, gx, w, n, offset, len, dots);
}

}  // namespace cpu
}  // namespace ops
}  // namespace hwnas
