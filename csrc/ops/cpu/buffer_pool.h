// A caching allocator for the large CPU tensors the hwnas kernels return.
//
// Why: glibc serves large blocks with mmap and gives freed ones back to the OS
// (munmap, heap trimming), so every training step that frees and re-allocates a
// supernet's per-branch gradients pays a page fault per 4 KiB page on first touch,
// plus the munmap. On this project's 2-core VM that was most of the time of the
// weighted_sum backward at [32, 184, 7, 7]. Blocks freed by hwnas tensors are kept
// here and handed back for the next request of a similar size, as PyTorch's CUDA
// caching allocator does on the GPU. Requests under kMinPooledBytes go to the
// default CPU allocator, which serves them from its heap without faults.
//
// The cache is bounded: HWNAS_CPU_POOL_MB (default 1024; 0 turns pooling off) caps
// the bytes kept while unused. hwnas.ops.cpu_pool_stats() reports it and
// hwnas.ops.release_cpu_pool() frees what it holds.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace hwnas {
namespace ops {
namespace cpu {

constexpr int64_t kMinPooledBytes = 128 * 1024;

// An uninitialised CPU tensor with the sizes, strides and dtype of `like`, which must
// be dense and non-overlapping (storage offset is not kept).
at::Tensor pooled_empty_like(const at::Tensor& like);

// at::empty_like(like) for any tensor, from the pool when `like` is a dense CPU tensor:
// the one call the kernels use for the tensors they return.
at::Tensor empty_like_output(const at::Tensor& like);

struct PoolStats {
  int64_t cached_bytes;  // held while unused
  int64_t limit_bytes;   // cap on cached_bytes (0: pooling off)
  int64_t hits;          // requests served from the cache
  int64_t misses;        // requests that had to allocate
};

PoolStats pool_stats();
// Frees every cached block; tensors alive keep their memory and return it later.
void pool_release();
// Sets the cap on cached bytes (0 turns pooling off and frees the cache).
void pool_set_limit(int64_t bytes);

}  // namespace cpu
}  // namespace ops
}  // namespace hwnas
