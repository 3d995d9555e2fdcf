// Tile loops of the CPU weighted_sum kernels, compiled for several instruction sets.
//
// Each function handles one tile of at most kTile elements. They are plain
// (non-template) overloads so that GCC/clang can clone them per instruction set
// (target_clones) and pick the best clone at load time: a wheel built for generic
// x86-64 still runs AVX2/AVX-512 code on machines that have it.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>

namespace hwnas {
namespace ops {
namespace cpu {

// Elements per tile: 2048 float accumulators = 8 KiB stay in L1 while branches stream.
constexpr int64_t kTile = 2048;

// out[0:len] = sum_{k < count} w[k] * x[k][offset : offset + len], count >= 1.
void mix_tile(const float* const* x, const float* w, int64_t count, int64_t offset, int64_t len, float* out);
void mix_tile(const double* const* x, const double* w, int64_t count, int64_t offset, int64_t len, double* out);
void mix_tile(const c10::BFloat16* const* x, const float* w, int64_t count, int64_t offset, int64_t len,
              c10::BFloat16* out);
void mix_tile(const c10::Half* const* x, const float* w, int64_t count, int64_t offset, int64_t len, c10::Half* out);

// One backward tile over grad g[offset : offset + len]:
//   gx[k][offset + j] = w[k] * g[offset + j]          for every k < n, when gx != nullptr
//   dots[k] = sum_j g[offset + j] * x[k][offset + j]  for every k < n, when x != nullptr
void mix_backward_tile(const float* g, const float* const* x, float* const* gx, const float* w, int64_t n,
                       int64_t offset, int64_t len, float* dots);
void mix_backward_tile(const double* g, const double* const* x, double* const* gx, const double* w, int64_t n,
                       int64_t offset, int64_t len, double* dots);
void mix_backward_tile(const c10::BFloat16* g, const c10::BFloat16* const* x, c10::BFloat16* const* gx,
                       const float* w, int64_t n, int64_t offset, int64_t len, float* dots);
void mix_backward_tile(const c10::Half* g, const c10::Half* const* x, c10::Half* const* gx, const float* w,
                       int64_t n, int64_t offset, int64_t len, float* dots);

}  // namespace cpu
}  // namespace ops
}  // namespace hwnas
