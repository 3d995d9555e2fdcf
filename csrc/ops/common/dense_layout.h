// Host-side layout helpers shared by the kernels of every backend.
//
// The fused kernels walk their tensors as flat memory. That is valid when all of
// them are non-overlapping and dense with the same strides (contiguous, channels_last
// and any other permutation alike): element k of one tensor then sits at offset k of
// every other. Inputs that do not share such a layout are copied to contiguous once.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>

#include <vector>

namespace hwnas {
namespace ops {

// True when a and b have the same memory layout; strides of size-1 dimensions do
// not matter because those dimensions are never stepped over.
inline bool same_layout(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes()) return false;
  for (int64_t d = 0; d < a.dim(); ++d) {
    if (a.size(d) > 1 && a.stride(d) != b.stride(d)) return false;
  }
  return true;
}

// True when dimension 0 is outermost in memory, so that each index of dimension 0
// (each sample) owns one contiguous run of numel / size(0) elements.
inline bool batch_is_outermost(const at::Tensor& t) {
  if (t.dim() == 0 || t.size(0) <= 1 || t.numel() == 0) return true;
  return t.stride(0) == t.numel() / t.size(0);
}

// Returns tensors that share one dense layout: the inputs themselves when they
// already do, otherwise contiguous copies. With need_batch_outermost the layout
// must also keep each sample in one contiguous run (needed by per-sample weights).
inline std::vector<at::Tensor> with_shared_dense_layout(
    at::TensorList tensors, bool need_batch_outermost) {
  bool shared = !tensors.empty() && tensors[0].is_non_overlapping_and_dense();
  if (shared && need_batch_outermost) shared = batch_is_outermost(tensors[0]);
  for (size_t i = 1; shared && i < tensors.size(); ++i) {
    shared = same_layout(tensors[i], tensors[0]);
  }
  std::vector<at::Tensor> out;
  out.reserve(tensors.size());
  for (const auto& t : tensors) out.push_back(shared ? t : t.contiguous());
  return out;
}

// Returns t laid out exactly like reference (a dense tensor of the same shape),
// copying only when its layout differs.
inline at::Tensor like_layout(const at::Tensor& t, const at::Tensor& reference) {
  if (same_layout(t, reference) && t.is_non_overlapping_and_dense()) return t;
  at::Tensor out = at::empty_like(reference, t.options());
  out.copy_(t);
  return out;
}

// t as a channels_last-contiguous tensor (t itself when it already is one).
inline at::Tensor channels_last(const at::Tensor& t) { return t.contiguous(at::MemoryFormat::ChannelsLast); }

// result_cl (computed channels_last) in the layout results are handed back in for an
// input x: channels_last when that is x's suggested layout, contiguous otherwise.
inline at::Tensor in_suggested_layout_of(const at::Tensor& result_cl, const at::Tensor& x) {
  return x.suggest_memory_format() == at::MemoryFormat::ChannelsLast ? result_cl : result_cl.contiguous();
}

}  // namespace ops
}  // namespace hwnas
