// Writing small results computed on the host (weight and gate gradients) into tensors.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <vector>

namespace hwnas {
namespace ops {
namespace cpu {

// dst (contiguous, CPU, values.size() elements, any supported float dtype) = values.
// Written element by element: an at::from_blob + copy_ costs several microseconds,
// as much as a whole kernel at batch-1 shapes.
inline void write_host_values(at::Tensor& dst, const std::vector<double>& values) {
  TORCH_INTERNAL_ASSERT(dst.is_contiguous() && dst.device().is_cpu() &&
                        dst.numel() == static_cast<int64_t>(values.size()));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, dst.scalar_type(), "hwnas_write_host_values", [&] {
    scalar_t* out = dst.mutable_data_ptr<scalar_t>();
    for (size_t k = 0; k < values.size(); ++k) out[k] = static_cast<scalar_t>(values[k]);
  });
}

}  // namespace cpu
}  // namespace ops
}  // namespace hwnas
