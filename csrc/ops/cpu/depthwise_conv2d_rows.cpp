// Row loops of the CPU depthwise_conv2d kernels (see depthwise_conv2d_rows.h).
//
// Written once as always-inline templates and instantiated inside multiversioned
// functions, as weighted_sum_tiles.cpp does, so each instruction-set clone gets its
// own vectorised copy of the channel loops.
#include "depthwise_conv2d_rows.h"

#include "../depthwise_conv2d_math.h"

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

// acc[c] += a[c] * b[c] for c < n: one tap over all channels of a position.
template <typename acc_t, typename a_t, typename b_t>
HWNAS_ALWAYS_INLINE void multiply_add(acc_t* __restrict acc, const a_t* __restrict a, const b_t* __restrict b,
                                      int64_t n) {
#pragma omp simd
  for (int64_t c = 0; c < n; ++c) acc[c] += static_cast<acc_t>(a[c]) * static_cast<acc_t>(b[c]);
}

template <typename acc_t>
HWNAS_ALWAYS_INLINE void zero(acc_t* __restrict acc, int64_t n) {
#pragma omp simd
  for (int64_t c = 0; c < n; ++c) acc[c] = acc_t(0);
}

template <typename acc_t, typename scalar_t>
HWNAS_ALWAYS_INLINE void store(scalar_t* __restrict out, const acc_t* __restrict acc, int64_t n) {
#pragma omp simd
  for (int64_t c = 0; c < n; ++c) out[c] = static_cast<scalar_t>(acc[c]);
}

template <typename scalar_t, typename acc_t>
HWNAS_ALWAYS_INLINE void forward_row(const scalar_t* x, const acc_t* w, const DepthwiseGeometry& g, int64_t oh,
                                     acc_t* acc, scalar_t* out) {
  const int64_t C = g.channels, W = g.w.in, KW = g.w.kernel;
  for (int64_t ow = 0; ow < g.w.out; ++ow) {
    zero(acc, C);
    for (int64_t kh = 0; kh < g.h.kernel; ++kh) {
      const int64_t ih = tap_input(oh, kh, g.h);
      if (ih < 0) continue;
      for (int64_t kw = 0; kw < KW; ++kw) {
        const int64_t iw = tap_input(ow, kw, g.w);
        if (iw >= 0) multiply_add(acc, x + (ih * W + iw) * C, w + (kh * KW + kw) * C, C);
      }
    }
    store(out + ow * C, acc, C);
  }
}

template <typename scalar_t, typename acc_t>
HWNAS_ALWAYS_INLINE void grad_input_row(const scalar_t* grad, const acc_t* w, const DepthwiseGeometry& g, int64_t ih,
                                        acc_t* acc, scalar_t* grad_x) {
  const int64_t C = g.channels, OW = g.w.out, KW = g.w.kernel;
  for (int64_t iw = 0; iw < g.w.in; ++iw) {
    zero(acc, C);
    for (int64_t kh = 0; kh < g.h.kernel; ++kh) {
      const int64_t oh = tap_output(ih, kh, g.h);
      if (oh < 0) continue;
      for (int64_t kw = 0; kw < KW; ++kw) {
        const int64_t ow = tap_output(iw, kw, g.w);
        if (ow >= 0) multiply_add(acc, grad + (oh * OW + ow) * C, w + (kh * KW + kw) * C, C);
      }
    }
    store(grad_x + iw * C, acc, C);
  }
}

template <typename scalar_t, typename acc_t>
HWNAS_ALWAYS_INLINE void grad_weight_row(const scalar_t* grad, const scalar_t* x, const DepthwiseGeometry& g,
                                         int64_t oh, acc_t* grad_w) {
  const int64_t C = g.channels, W = g.w.in, OW = g.w.out, KW = g.w.kernel;
  for (int64_t ow = 0; ow < OW; ++ow) {
    const scalar_t* gr = grad + (oh * OW + ow) * C;
    for (int64_t kh = 0; kh < g.h.kernel; ++kh) {
      const int64_t ih = tap_input(oh, kh, g.h);
      if (ih < 0) continue;
      for (int64_t kw = 0; kw < KW; ++kw) {
        const int64_t iw = tap_input(ow, kw, g.w);
        if (iw >= 0) multiply_add(grad_w + (kh * KW + kw) * C, gr, x + (ih * W + iw) * C, C);
      }
    }
  }
}

}  // namespace

#define HWNAS_DEPTHWISE_ROWS(scalar_t, acc_t)                                                                    \
  HWNAS_MULTIVERSION void depthwise_forward_row(const scalar_t* x, const acc_t* w, const DepthwiseGeometry& g,    \
                                                int64_t oh, acc_t* acc, scalar_t* out) {                          \
    forward_row(x, w, g, oh, acc, out);                                                                          \
  }                                                                                                              \
  HWNAS_MULTIVERSION void depthwise_grad_input_row(const scalar_t* grad, const acc_t* w,                         \
                                                   const DepthwiseGeometry& g, int64_t ih, acc_t* acc,           \
                                                   scalar_t* grad_x) {                                           \
    grad_input_row(grad, w, g, ih, acc, grad_x);                                                                 \
  }                                                                                                              \
  HWNAS_MULTIVERSION void depthwise_grad_weight_row(const scalar_t* grad, const scalar_t* x,                     \
                                                    const DepthwiseGeometry& g, int64_t oh, acc_t* grad_w) {     \
    grad_weight_row(grad, x, g, oh, grad_w);                                                                     \
  }

HWNAS_DEPTHWISE_ROWS(float, float)
HWNAS_DEPTHWISE_ROWS(double, double)
HWNAS_DEPTHWISE_ROWS(c10::BFloat16, float)
HWNAS_DEPTHWISE_ROWS(c10::Half, float)

#undef HWNAS_DEPTHWISE_ROWS

}  // namespace cpu
}  // namespace ops
}  // namespace hwnas
