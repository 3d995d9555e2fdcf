// Inner loops of the float32 CPU channel_mask kernels (see channel_mask_rows.h).
//
// Each loop is written twice: a portable version the compiler vectorises for the
// build's baseline, and an AVX2 + FMA version with explicit intrinsics, which is the
// only way to get streaming stores (compilers never emit them on their own). The AVX2
// version is picked once, at first use, when the CPU supports it and the environment
// variable HWNAS_CPU_PORTABLE is unset or 0 (tests use it to cover the portable path).
#include "channel_mask_rows.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HWNAS_HAVE_AVX2_PATH 1
#include <immintrin.h>
#else
#define HWNAS_HAVE_AVX2_PATH 0
#endif

namespace hwnas {
namespace ops {
namespace cpu {
namespace {

// ------------------------------------------------------------------ portable loops

void scale_run_portable(const float* x, float* o, float s, int64_t n) {
  if (s == 0.f) {
    std::fill(o, o + n, 0.f);
    return;
  }
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) o[j] = s * x[j];
}

double scale_dot_run_portable(const float* g, const float* x, float* gx, float s, int64_t n) {
  double total = 0.0;
  for (int64_t j0 = 0; j0 < n; j0 += kDotChunk) {
    const int64_t j1 = std::min(n, j0 + kDotChunk);
    if (gx != nullptr) {
#pragma omp simd
      for (int64_t j = j0; j < j1; ++j) gx[j] = s * g[j];
    }
    if (x != nullptr) {
      float dot = 0.f;
#pragma omp simd reduction(+ : dot)
      for (int64_t j = j0; j < j1; ++j) dot += g[j] * x[j];
      total += static_cast<double>(dot);
    }
  }
  return total;
}

void scale_rows_portable(const float* x, const float* es, float* o, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* orow = o + r * n;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) orow[j] = es[j] == 0.f ? 0.f : es[j] * xr[j];
  }
}

void scale_dot_rows_portable(const float* g, const float* x, const float* es, float* gx, float* acc, int64_t rows,
                             int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* gr = g + r * n;
    if (gx != nullptr) {
      float* d = gx + r * n;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) d[j] = es[j] * gr[j];
    }
    if (x != nullptr) {
      const float* xr = x + r * n;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) acc[j] += gr[j] * xr[j];
    }
  }
}

#if HWNAS_HAVE_AVX2_PATH
// ------------------------------------------------------------------ AVX2 + FMA loops
#define HWNAS_AVX2 __attribute__((target("avx2,fma")))

// Elements to handle one by one before p + j is 32-byte aligned (streaming stores
// need it), capped at n.
inline int64_t head_until_aligned(const float* p, int64_t n) {
  const auto misalign = reinterpret_cast<uintptr_t>(p) & 31u;
  if (misalign == 0) return 0;
  if ((misalign & 3u) != 0) return n;  // not even float-aligned: never streams
  return std::min<int64_t>(n, static_cast<int64_t>((32u - misalign) / 4u));
}

template <bool kStream>
HWNAS_AVX2 inline void store8(float* p, __m256 v) {
  if (kStream) {
    _mm256_stream_ps(p, v);
  } else {
    _mm256_storeu_ps(p, v);
  }
}

HWNAS_AVX2 inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_hadd_ps(s, s);
  s = _mm_hadd_ps(s, s);
  return _mm_cvtss_f32(s);
}

template <bool kStream>
HWNAS_AVX2 void scale_run_avx2(const float* x, float* o, float s, int64_t n) {
  int64_t j = 0;
  if (kStream) {
    const int64_t head = head_until_aligned(o, n);
    for (; j < head; ++j) o[j] = s == 0.f ? 0.f : s * x[j];
  }
  if (s == 0.f) {
    const __m256 z = _mm256_setzero_ps();
    for (; j + 8 <= n; j += 8) store8<kStream>(o + j, z);
    for (; j < n; ++j) o[j] = 0.f;
    return;
  }
  const __m256 vs = _mm256_set1_ps(s);
  for (; j + 16 <= n; j += 16) {
    store8<kStream>(o + j, _mm256_mul_ps(vs, _mm256_loadu_ps(x + j)));
    store8<kStream>(o + j + 8, _mm256_mul_ps(vs, _mm256_loadu_ps(x + j + 8)));
  }
  for (; j + 8 <= n; j += 8) store8<kStream>(o + j, _mm256_mul_ps(vs, _mm256_loadu_ps(x + j)));
  for (; j < n; ++j) o[j] = s * x[j];
}

template <bool kStream, bool kGx, bool kDot>
HWNAS_AVX2 double scale_dot_run_avx2(const float* g, const float* x, float* gx, float s, int64_t n) {
  double total = 0.0;
  int64_t j = 0;
  if (kStream && kGx) {
    const int64_t head = head_until_aligned(gx, n);
    for (; j < head; ++j) {
      gx[j] = s * g[j];
      if (kDot) total += static_cast<double>(g[j] * x[j]);
    }
  }
  const __m256 vs = _mm256_set1_ps(s);
  while (j < n) {
    const int64_t end = std::min(n, j + kDotChunk);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    float tail = 0.f;
    for (; j + 16 <= end; j += 16) {
      const __m256 g0 = _mm256_loadu_ps(g + j), g1 = _mm256_loadu_ps(g + j + 8);
      if (kGx) {
        store8<kStream>(gx + j, _mm256_mul_ps(vs, g0));
        store8<kStream>(gx + j + 8, _mm256_mul_ps(vs, g1));
      }
      if (kDot) {
        a0 = _mm256_fmadd_ps(g0, _mm256_loadu_ps(x + j), a0);
        a1 = _mm256_fmadd_ps(g1, _mm256_loadu_ps(x + j + 8), a1);
      }
    }
    for (; j + 8 <= end; j += 8) {
      const __m256 g0 = _mm256_loadu_ps(g + j);
      if (kGx) store8<kStream>(gx + j, _mm256_mul_ps(vs, g0));
      if (kDot) a0 = _mm256_fmadd_ps(g0, _mm256_loadu_ps(x + j), a0);
    }
    for (; j < end; ++j) {
      if (kGx) gx[j] = s * g[j];
      if (kDot) tail += g[j] * x[j];
    }
    if (kDot) total += static_cast<double>(hsum8(_mm256_add_ps(a0, a1))) + static_cast<double>(tail);
  }
  return total;
}

template <bool kStream>
HWNAS_AVX2 void scale_rows_avx2(const float* x, const float* es, float* o, int64_t rows, int64_t n) {
  const __m256 z = _mm256_setzero_ps();
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* orow = o + r * n;
    int64_t j = 0;
    if (kStream) {
      const int64_t head = head_until_aligned(orow, n);
      for (; j < head; ++j) orow[j] = es[j] == 0.f ? 0.f : es[j] * xr[j];
    }
    for (; j + 8 <= n; j += 8) {
      const __m256 e = _mm256_loadu_ps(es + j);
      // es * x, with lanes whose scale is zero forced to +0 (x may be inf or NaN there).
      const __m256 keep = _mm256_cmp_ps(e, z, _CMP_NEQ_UQ);
      store8<kStream>(orow + j, _mm256_and_ps(_mm256_mul_ps(e, _mm256_loadu_ps(xr + j)), keep));
    }
    for (; j < n; ++j) orow[j] = es[j] == 0.f ? 0.f : es[j] * xr[j];
  }
}

template <bool kStream, bool kGx, bool kDot>
HWNAS_AVX2 void scale_dot_rows_avx2(const float* g, const float* x, const float* es, float* gx, float* acc,
                                    int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* gr = g + r * n;
    const float* xr = kDot ? x + r * n : nullptr;
    float* d = kGx ? gx + r * n : nullptr;
    int64_t j = 0;
    if (kStream && kGx) {
      const int64_t head = head_until_aligned(d, n);
      for (; j < head; ++j) {
        d[j] = es[j] * gr[j];
        if (kDot) acc[j] += gr[j] * xr[j];
      }
    }
    for (; j + 8 <= n; j += 8) {
      const __m256 g0 = _mm256_loadu_ps(gr + j);
      if (kGx) store8<kStream>(d + j, _mm256_mul_ps(_mm256_loadu_ps(es + j), g0));
      if (kDot) _mm256_storeu_ps(acc + j, _mm256_fmadd_ps(g0, _mm256_loadu_ps(xr + j), _mm256_loadu_ps(acc + j)));
    }
    for (; j < n; ++j) {
      if (kGx) d[j] = es[j] * gr[j];
      if (kDot) acc[j] += gr[j] * xr[j];
    }
  }
}

template <bool kStream>
HWNAS_AVX2 void scale_channel_runs_avx2(const float* x, const float* scales, float* o, int64_t rows, int64_t C,
                                       int64_t S) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < C; ++c) {
      const int64_t off = (r * C + c) * S;
      const float s = scales[c];
      if (s == 0.f) {
        for (int64_t j = 0; j < S; j += 8) store8<kStream>(o + off + j, _mm256_setzero_ps());
        continue;
      }
      const __m256 vs = _mm256_set1_ps(s);
      int64_t j = 0;
      for (; j + 16 <= S; j += 16) {
        store8<kStream>(o + off + j, _mm256_mul_ps(vs, _mm256_loadu_ps(x + off + j)));
        store8<kStream>(o + off + j + 8, _mm256_mul_ps(vs, _mm256_loadu_ps(x + off + j + 8)));
      }
      if (j < S) store8<kStream>(o + off + j, _mm256_mul_ps(vs, _mm256_loadu_ps(x + off + j)));
    }
  }
}

template <bool kStream, bool kGx, bool kDot>
HWNAS_AVX2 void scale_dot_channel_runs_avx2(const float* g, const float* x, const float* scales, float* gx,
                                           float* lanes, int64_t rows, int64_t C, int64_t S) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < C; ++c) {
      const int64_t o = (r * C + c) * S;
      const __m256 vs = _mm256_set1_ps(scales[c]);
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      int64_t j = 0;
      for (; j + 16 <= S; j += 16) {
        const __m256 g0 = _mm256_loadu_ps(g + o + j), g1 = _mm256_loadu_ps(g + o + j + 8);
        if (kGx) {
          store8<kStream>(gx + o + j, _mm256_mul_ps(vs, g0));
          store8<kStream>(gx + o + j + 8, _mm256_mul_ps(vs, g1));
        }
        if (kDot) {
          a0 = _mm256_fmadd_ps(g0, _mm256_loadu_ps(x + o + j), a0);
          a1 = _mm256_fmadd_ps(g1, _mm256_loadu_ps(x + o + j + 8), a1);
        }
      }
      if (j < S) {  // S % 16 == 8
        const __m256 g0 = _mm256_loadu_ps(g + o + j);
        if (kGx) store8<kStream>(gx + o + j, _mm256_mul_ps(vs, g0));
        if (kDot) a0 = _mm256_fmadd_ps(g0, _mm256_loadu_ps(x + o + j), a0);
      }
      if (kDot) {
        float* lane = lanes + c * 8;
        _mm256_storeu_ps(lane, _mm256_add_ps(_mm256_loadu_ps(lane), _mm256_add_ps(a0, a1)));
      }
    }
  }
}

bool detect_avx2() {
  const char* env = std::getenv("HWNAS_CPU_PORTABLE");
  if (env != nullptr && env[0] != '\0' && std::strcmp(env, "0") != 0) return false;
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
bool detect_avx2() { return false; }
#endif

bool use_avx2() {
  static const bool value = detect_avx2();
  return value;
}

}  // namespace

int64_t stream_min_bytes() {
  static const int64_t value = [] {
    const char* env = std::getenv("HWNAS_CPU_STREAM_MIN_BYTES");
    if (env == nullptr || env[0] == '\0') return kStreamMinBytes;
    char* end = nullptr;
    const long long parsed = std::strtoll(env, &end, 10);
    return (end != nullptr && *end == '\0' && parsed >= 0) ? static_cast<int64_t>(parsed) : kStreamMinBytes;
  }();
  return value;
}

void scale_run(const float* x, float* o, float s, int64_t n, bool stream) {
#if HWNAS_HAVE_AVX2_PATH
  if (use_avx2()) {
    stream ? scale_run_avx2<true>(x, o, s, n) : scale_run_avx2<false>(x, o, s, n);
    return;
  }
#endif
  (void)stream;
  scale_run_portable(x, o, s, n);
}

double scale_dot_run(const float* g, const float* x, float* gx, float s, int64_t n, bool stream) {
#if HWNAS_HAVE_AVX2_PATH
  if (use_avx2()) {
    const bool want_gx = gx != nullptr, want_dot = x != nullptr;
    if (want_gx && want_dot) {
      return stream ? scale_dot_run_avx2<true, true, true>(g, x, gx, s, n)
                    : scale_dot_run_avx2<false, true, true>(g, x, gx, s, n);
    }
    if (want_gx) {
      return stream ? scale_dot_run_avx2<true, true, false>(g, x, gx, s, n)
                    : scale_dot_run_avx2<false, true, false>(g, x, gx, s, n);
    }
    if (want_dot) return scale_dot_run_avx2<false, false, true>(g, x, gx, s, n);
    return 0.0;
  }
#endif
  (void)stream;
  return scale_dot_run_portable(g, x, gx, s, n);
}

void scale_rows(const float* x, const float* es, float* o, int64_t rows, int64_t n, bool stream) {
#if HWNAS_HAVE_AVX2_PATH
  if (use_avx2()) {
    stream ? scale_rows_avx2<true>(x, es, o, rows, n) : scale_rows_avx2<false>(x, es, o, rows, n);
    return;
  }
#endif
  (void)stream;
  scale_rows_portable(x, es, o, rows, n);
}

void scale_dot_rows(const float* g, const float* x, const float* es, float* gx, float* acc, int64_t rows,
                    int64_t n, bool stream) {
#if HWNAS_HAVE_AVX2_PATH
  if (use_avx2()) {
    const bool want_gx = gx != nullptr, want_dot = x != nullptr;
    if (want_gx && want_dot) {
      stream ? scale_dot_rows_avx2<true, true, true>(g, x, es, gx, acc, rows, n)
             : scale_dot_rows_avx2<false, true, true>(g, x, es, gx, acc, rows, n);
    } else if (want_gx) {
      stream ? scale_dot_rows_avx2<true, true, false>(g, x, es, gx, acc, rows, n)
             : scale_dot_rows_avx2<false, true, false>(g, x, es, gx, acc, rows, n);
    } else if (want_dot) {
      scale_dot_rows_avx2<false, false, true>(g, x, es, gx, acc, rows, n);
    }
    return;
  }
#endif
  (void)stream;
  scale_dot_rows_portable(g, x, es, gx, acc, rows, n);
}

bool has_channel_runs(int64_t S) {
#if HWNAS_HAVE_AVX2_PATH
  return use_avx2() && S >= 8 && S % 8 == 0;
#else
  (void)S;
  return false;
#endif
}

bool scale_channel_runs(const float* x, const float* scales, float* o, int64_t rows, int64_t C, int64_t S,
                        bool stream) {
#if HWNAS_HAVE_AVX2_PATH
  if (!has_channel_runs(S)) return false;
  // Runs of a multiple of 8 floats keep a 32-byte aligned output aligned at every run.
  if (stream && (reinterpret_cast<uintptr_t>(o) & 31u) == 0) {
    scale_channel_runs_avx2<true>(x, scales, o, rows, C, S);
  } else {
    scale_channel_runs_avx2<false>(x, scales, o, rows, C, S);
  }
  return true;
#else
  (void)x, (void)scales, (void)o, (void)rows, (void)C, (void)S, (void)stream;
  return false;
#endif
}

bool scale_dot_channel_runs(const float* g, const float* x, const float* scales, float* gx, float* lanes,
                            int64_t rows, int64_t C, int64_t S, bool stream) {
#if HWNAS_HAVE_AVX2_PATH
  if (!has_channel_runs(S)) return false;
  const bool want_gx = gx != nullptr, want_dot = x != nullptr;
  // Runs of a multiple of 8 floats keep a 32-byte aligned gx aligned at every run.
  stream = stream && want_gx && (reinterpret_cast<uintptr_t>(gx) & 31u) == 0;
  if (want_gx && want_dot) {
    stream ? scale_dot_channel_runs_avx2<true, true, true>(g, x, scales, gx, lanes, rows, C, S)
           : scale_dot_channel_runs_avx2<false, true, true>(g, x, scales, gx, lanes, rows, C, S);
  } else if (want_gx) {
    stream ? scale_dot_channel_runs_avx2<true, true, false>(g, x, scales, gx, lanes, rows, C, S)
           : scale_dot_channel_runs_avx2<false, true, false>(g, x, scales, gx, lanes, rows, C, S);
  } else if (want_dot) {
    scale_dot_channel_runs_avx2<false, false, true>(g, x, scales, gx, lanes, rows, C, S);
  }
  return true;
#else
  (void)g, (void)x, (void)scales, (void)gx, (void)lanes, (void)rows, (void)C, (void)S, (void)stream;
  return false;
#endif
}

void stream_fence() {
#if HWNAS_HAVE_AVX2_PATH
  if (use_avx2()) _mm_sfence();
#endif
}

}  // namespace cpu
}  // namespace ops
}  // namespace hwnas
