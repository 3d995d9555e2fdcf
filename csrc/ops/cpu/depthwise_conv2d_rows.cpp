// Row loops of the CPU depthwise_conv2d kernels (see depthwise_conv2d_rows.h).
#include "depthwise_conv2d_rows.h"

#include "../depthwise_conv2d_math.h"
#include "multiversion.h"

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

// Row r of dst, each position the sum over taps of a source position times the tap's
// filters. The forward reads x at the input each output reads (tap_input); the input
// gradient reads grad at the outputs that read each input (tap_output): one loop, two
// index maps.
template <bool kForward, typename scalar_t, typename acc_t>
HWNAS_ALWAYS_INLINE void gather_row(const scalar_t* src, const acc_t* w, const DepthwiseGeometry& g, int64_t r,
                                    acc_t* acc, scalar_t* dst) {
  const int64_t C = g.channels, KW = g.w.kernel;
  const int64_t cols = kForward ? g.w.out : g.w.in;      // positions of the row written
  const int64_t src_cols = kForward ? g.w.in : g.w.out;  // row length of src
  for (int64_t col = 0; col < cols; ++col) {
    zero(acc, C);
    for (int64_t kh = 0; kh < g.h.kernel; ++kh) {
      const int64_t sr = kForward ? tap_input(r, kh, g.h) : tap_output(r, kh, g.h);
      if (sr < 0) continue;
      for (int64_t kw = 0; kw < KW; ++kw) {
        const int64_t sc = kForward ? tap_input(col, kw, g.w) : tap_output(col, kw, g.w);
        if (sc >= 0) multiply_add(acc, src + (sr * src_cols + sc) * C, w + (kh * KW + kw) * C, C);
      }
    }
    store(dst + col * C, acc, C);
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
    gather_row<true>(x, w, g, oh, acc, out);                                                                     \
  }                                                                                                              \
  HWNAS_MULTIVERSION void depthwise_grad_input_row(const scalar_t* grad, const acc_t* w,                         \
                                                   const DepthwiseGeometry& g, int64_t ih, acc_t* acc,           \
                                                   scalar_t* grad_x) {                                           \
    gather_row<false>(grad, w, g, ih, acc, grad_x);                                                              \
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
