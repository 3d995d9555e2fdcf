// Stand-in for a header that only CUDA builds of torch generate. Used solely by the
// compile-only check of the CUDA kernels against a CPU build of torch
// (HWNAS_CHECK_CUDA_COMPILE); a real CUDA build uses torch's own header.
#pragma once
#define C10_CUDA_BUILD_SHARED_LIBS
