// HWNAS_HOST_DEVICE marks per-element math that both the C++ CPU kernels and the
// CUDA kernels compile, so the two backends share one formula.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define HWNAS_HOST_DEVICE __host__ __device__ __forceinline__
#elif defined(__GNUC__) || defined(__clang__)
// always_inline: the CPU loops are cloned per instruction set (target_clones), and
// GCC inlines a plain inline function into a clone only when forced to; a call per
// element would defeat vectorisation.
#define HWNAS_HOST_DEVICE inline __attribute__((always_inline))
#else
#define HWNAS_HOST_DEVICE inline
#endif
