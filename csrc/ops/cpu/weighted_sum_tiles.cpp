// Tile loops of the CPU weighted_sum kernels (see weighted_sum_tiles.h).
//
// The loops are written once as always-inline templates and instantiated inside
// multiversioned functions, so each instruction-set clone gets its own vectorised
// copy. No -march flag is needed at build time.
#include "weighted_sum_tiles.h"

#include <algorithm>

#include "../weighted_sum_math.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__INTEL_COMPILER)
#define HWNAS_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HWNAS_MULTIVERSION
#endif

#if defined(__GNUC__) || defined(__clang__)
#define HWNAS_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define HWNAS_ALWAYS_INLINE inline
#endif

namespace hwnas {
namespace ops {
namespace cpu {
namespace {

// Branches are added four at a time so that the accumulator is loaded and stored
// once per four branches instead of once per branch.
template <typename scalar_t, typename acc_t>
HWNAS_ALWAYS_INLINE void mix_tile_impl(const scalar_t* const* x, const acc_t* w, int64_t count, int64_t offset,
                                       int64_t len, scalar_t* out) {
  acc_t acc[kTile];
  int64_t k = 0;
  // First group: initialise the accumulator.
  {
    const int64_t group = std::min<int64_t>(count, 4);
    const scalar_t* x0 = x[0] + offset;
    const acc_t w0 = w[0];
    if (group == 4) {
      const scalar_t *x1 = x[1] + offset, *x2 = x[2] + offset, *x3 = x[3] + offset;
      const acc_t w1 = w[1], w2 = w[2], w3 = w[3];
#pragma omp simd
      for (int64_t j = 0; j < len; ++j)
        acc[j] = mix_accumulate(mix_accumulate(mix_accumulate(mix_accumulate(acc_t(0), w0, x0[j]), w1, x1[j]), w2, x2[j]), w3, x3[j]);
    } else {
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) acc[j] = mix_accumulate(acc_t(0), w0, x0[j]);
      for (int64_t i = 1; i < group; ++i) {
        const scalar_t* xi = x[i] + offset;
        const acc_t wi = w[i];
#pragma omp simd
        for (int64_t j = 0; j < len; ++j) acc[j] = mix_accumulate(acc[j], wi, xi[j]);
      }
    }
    k = group;
  }
  for (; k + 4 <= count; k += 4) {
    const scalar_t *x0 = x[k] + offset, *x1 = x[k + 1] + offset, *x2 = x[k + 2] + offset, *x3 = x[k + 3] + offset;
    const acc_t w0 = w[k], w1 = w[k + 1], w2 = w[k + 2], w3 = w[k + 3];
#pragma omp simd
    for (int64_t j = 0; j < len; ++j)
      acc[j] = mix_accumulate(mix_accumulate(mix_accumulate(mix_accumulate(acc[j], w0, x0[j]), w1, x1[j]), w2, x2[j]), w3, x3[j]);
  }
  for (; k < count; ++k) {
    const scalar_t* xk = x[k] + offset;
    const acc_t wk = w[k];
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) acc[j] = mix_accumulate(acc[j], wk, xk[j]);
  }
#pragma omp simd
  for (int64_t j = 0; j < len; ++j) out[j] = static_cast<scalar_t>(acc[j]);
}

template <typename scalar_t, typename acc_t>
HWNAS_ALWAYS_INLINE void mix_backward_tile_impl(const scalar_t* g, const scalar_t* const* x, scalar_t* const* gx,
                                                const acc_t* w, int64_t n, int64_t offset, int64_t len, acc_t* dots) {
  acc_t gacc[kTile];
  const scalar_t* gt = g + offset;
#pragma omp simd
  for (int64_t j = 0; j < len; ++j) gacc[j] = static_cast<acc_t>(gt[j]);
  for (int64_t i = 0; i < n; ++i) {
    if (gx != nullptr) {
      scalar_t* d = gx[i] + offset;
      const acc_t wi = w[i];
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) d[j] = static_cast<scalar_t>(branch_grad(wi, gacc[j]));
    }
    if (x != nullptr) {
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
