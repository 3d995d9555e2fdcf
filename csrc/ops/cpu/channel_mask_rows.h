// Inner loops of the float32 CPU channel_mask kernels, vectorised for the machine
// they run on (AVX2 + FMA when the CPU has it, chosen once at load time; portable
// loops otherwise), with optional non-temporal ("streaming") stores.
//
// Streaming stores write whole cache lines straight to memory instead of first
// reading each line into the cache (write-allocate). For outputs far larger than the
// caches that saves a third of the memory traffic of a scale pass (1 read + 1 write
// instead of 2 reads + 1 write), which is most of what channel_mask costs; for outputs
// that would stay in cache it only pushes them out, hence the size threshold.
#pragma once

#include <cstdint>

namespace hwnas {
namespace ops {
namespace cpu {

// Outputs of at least this many bytes are written with streaming stores. Default
// kStreamMinBytes, measured on a 2-core AMD EPYC VM with forward and backward buffers
// alternating as in a training step: a 3 MiB output was 1.5x slower streamed (it
// would have stayed in cache), a 6 MiB output 1.8x faster. The environment variable
// HWNAS_CPU_STREAM_MIN_BYTES, read once, overrides it for other cache sizes.
int64_t stream_min_bytes();
constexpr int64_t kStreamMinBytes = int64_t(4) << 20;

// Dot products are accumulated in float over runs of at most this many products and
// then in double, so that float32 gate gradients stay accurate for large tensors (the
// error of a float sum grows with its length).
constexpr int64_t kDotChunk = 2048;

// o[j] = s * x[j] for j < n; a zero scale writes zeros without reading x.
void scale_run(const float* x, float* o, float s, int64_t n, bool stream);

// Returns sum_j g[j] * x[j] (accumulated in float over chunks of 2048, then in
// double), or 0 when x is null; writes gx[j] = s * g[j] when gx is not null.
double scale_dot_run(const float* g, const float* x, float* gx, float s, int64_t n, bool stream);

// For r < rows, j < n, with i = r * n + j:
//   o[i] = es[j] * x[i], or exactly 0 where es[j] == 0 (x not used there).
void scale_rows(const float* x, const float* es, float* o, int64_t rows, int64_t n, bool stream);

// For r < rows, j < n, with i = r * n + j:
//   gx[i] = es[j] * g[i]   when gx is not null;
//   acc[j] += g[i] * x[i]  when x is not null (acc holds n floats).
void scale_dot_rows(const float* g, const float* x, const float* es, float* gx, float* acc, int64_t rows,
                    int64_t n, bool stream);

// For r < rows, c < C and runs of S elements, i = (r * C + c) * S + j, j < S:
//   o[i] = scales[c] * x[i], or exactly 0 where scales[c] == 0 (x not read there).
// The forward counterpart of scale_dot_channel_runs (the loop alone 10% faster than
// scale_rows at [64, 48, 8, 8]); same precondition, has_channel_runs(S), else it
// returns false.
bool scale_channel_runs(const float* x, const float* scales, float* o, int64_t rows, int64_t C, int64_t S,
                        bool stream);

// For r < rows, c < C and runs of S elements, i = (r * C + c) * S + j, j < S:
//   gx[i] = scales[c] * g[i]                        when gx is not null;
//   lanes[c * 8 + l] += partial sums of g[i] * x[i] when x is not null, 8 per channel,
//                       whose total over l is the channel's dot product over r and j.
// The scale is broadcast per run and each run's products are summed in registers, so
// the loop touches memory only for g, x and gx. scale_dot_rows reads an expanded
// scale row and updates a partial per element: at [64, 48, 8, 8] the loop alone is
// 20% faster this way, and the whole backward op fell from 43 to 29 us.
// Only where has_channel_runs(S) (AVX2, S a multiple of 8); elsewhere it returns false
// and does nothing, and the caller uses scale_dot_rows.
bool has_channel_runs(int64_t S);
bool scale_dot_channel_runs(const float* g, const float* x, const float* scales, float* gx, float* lanes,
                            int64_t rows, int64_t C, int64_t S, bool stream);

// Orders this thread's streaming stores before anything that follows; call once at
// the end of each parallel chunk that streamed.
void stream_fence();

}  // namespace cpu
}  // namespace ops
}  // namespace hwnas
