// HWNAS_HOST_DEVICE marks per-element math that both the C++ CPU kernels and the
// CUDA kernels compile, so the two backends share one formula.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define HWNAS_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define HWNAS_HOST_DEVICE inline
#endif
