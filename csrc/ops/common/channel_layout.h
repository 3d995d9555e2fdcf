// Where the channel dimension sits in memory: shared by the channel_mask kernels of
// every backend so that they walk the same layouts.
#pragma once

#include <ATen/core/Tensor.h>

#include "dense_layout.h"

namespace hwnas {
namespace ops {

// kChannelsOuter: contiguous NCHW and any layout where each channel of a sample is
// one contiguous run; kChannelsInner: channels_last and any layout where the
// channels of one position are adjacent; kOther: anything else (walked through a
// contiguous copy).
enum class ChannelLayout { kChannelsOuter, kChannelsInner, kOther };

// Both walkable layouts need the tensor dense with each sample one contiguous run of
// C * S elements (S = elements per channel per sample).
inline ChannelLayout classify_channel_layout(const at::Tensor& t) {
  if (t.numel() == 0) return ChannelLayout::kChannelsOuter;
  if (!t.is_non_overlapping_and_dense() || !batch_is_outermost(t)) return ChannelLayout::kOther;
  const int64_t channels = t.size(1);
  const int64_t per_channel = t.numel() / (t.size(0) * channels);
  if (channels == 1 || t.stride(1) == per_channel) return ChannelLayout::kChannelsOuter;
  if (t.stride(1) == 1) return ChannelLayout::kChannelsInner;
  return ChannelLayout::kOther;
}

}  // namespace ops
}  // namespace hwnas
