// Math of hwnas::channel_mask shared by the CPU and CUDA kernels.
// acc_t is the accumulation type (float for float32/bfloat16/float16, double for float64).
#pragma once

#include <cstdint>

#include "common/host_device.h"

namespace hwnas {
namespace ops {

// Per-channel scale of one gate row: scale[c] = sum of gates[i] over i with
// widths[i] > c. Walking the width segments from the widest down makes it a suffix
// sum, O(K + C) instead of the O(K * C) of summing K masks. Channels at or beyond
// the largest width get 0 (no candidate keeps them).
template <typename acc_t, typename gate_t>
HWNAS_HOST_DEVICE void channel_scales(
    const gate_t* gates, const int64_t* widths, int64_t num_widths, int64_t channels,
    acc_t* scale) {
  for (int64_t c = widths[num_widths - 1]; c < channels; ++c) scale[c] = acc_t(0);
  acc_t running = acc_t(0);
  for (int64_t i = num_widths - 1; i >= 0; --i) {
    running += static_cast<acc_t>(gates[i]);
    const int64_t lo = i > 0 ? widths[i - 1] : 0;
    for (int64_t c = lo; c < widths[i]; ++c) scale[c] = running;
  }
}

// out = x * scale, in acc_t.
template <typename acc_t, typename scalar_t>
HWNAS_HOST_DEVICE acc_t masked_value(acc_t scale, scalar_t x) {
  return scale * static_cast<acc_t>(x);
}

// d out / d gates[i] = sum over channels c < widths[i] of <grad[:, c], x[:, c]>: a
// prefix sum of the per-channel dot products, read off at each width.
template <typename dot_t>
HWNAS_HOST_DEVICE void gate_grads_from_channel_dots(
    const dot_t* channel_dots, const int64_t* widths, int64_t num_widths, dot_t* gate_grads) {
  dot_t prefix = dot_t(0);
  int64_t c = 0;
  for (int64_t i = 0; i < num_widths; ++i) {
    for (; c < widths[i]; ++c) prefix += channel_dots[c];
    gate_grads[i] = prefix;
  }
}

}  // namespace ops
}  // namespace hwnas
