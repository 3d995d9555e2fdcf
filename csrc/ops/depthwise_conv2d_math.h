// Index math of hwnas::depthwise_conv2d, shared by the CPU and CUDA kernels: which
// input element a tap reads (forward, weight gradient) and which output element reads
// a given input element through a tap (input gradient, computed as a gather so that
// every input element is written by one thread, without atomics).
#pragma once

#include <cstdint>

#include "common/host_device.h"

namespace hwnas {
namespace ops {

// One spatial dimension of a convolution.
struct ConvAxis {
  int64_t in;        // input size
  int64_t out;       // output size
  int64_t kernel;    // taps
  int64_t stride;    // >= 1
  int64_t padding;   // zeros on each side, >= 0
  int64_t dilation;  // >= 1
};

// Shape of a depthwise convolution: batch, channels and the two spatial axes.
struct DepthwiseGeometry {
  int64_t batch, channels;
  ConvAxis h, w;
  HWNAS_HOST_DEVICE int64_t taps() const { return h.kernel * w.kernel; }
};

// Output size of a convolution along one axis; < 1 when the input is too small.
HWNAS_HOST_DEVICE int64_t conv_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t padding,
                                           int64_t dilation) {
  const int64_t span = in + 2 * padding - dilation * (kernel - 1) - 1;
  return span < 0 ? 0 : span / stride + 1;
}

// The input index output `o` reads through tap `k`, or -1 where it reads padding.
HWNAS_HOST_DEVICE int64_t tap_input(int64_t o, int64_t k, const ConvAxis& a) {
  const int64_t i = o * a.stride - a.padding + k * a.dilation;
  return (i >= 0 && i < a.in) ? i : -1;
}

// The output index that reads input `i` through tap `k`, or -1 where none does.
HWNAS_HOST_DEVICE int64_t tap_output(int64_t i, int64_t k, const ConvAxis& a) {
  const int64_t s = i + a.padding - k * a.dilation;
  if (s < 0 || s % a.stride != 0) return -1;
  const int64_t o = s / a.stride;
  return o < a.out ? o : -1;
}

}  // namespace ops
}  // namespace hwnas
