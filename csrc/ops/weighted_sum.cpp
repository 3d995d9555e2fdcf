// Schema of hwnas::weighted_sum: the mixture of candidate-block outputs in a supernet layer.
//
//   out = sum_i weights[..., i] * branches[i]
//
// weights is [N] (one mixture for the whole batch, as FBNet samples it) or [B, N]
// (one mixture per sample). Kernels live in cpu/ and cuda/; autograd and the fake
// kernel are registered from Python (hwnas/ops.py).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(hwnas, m) {
  m.def("weighted_sum(Tensor[] branches, Tensor weights) -> Tensor");
  // One fused pass over grad computes every branch gradient and the weight gradient.
  // branches may be an empty list when weights_need_grad is false (they are not read then).
  // Returns ([] or N tensors shaped like grad, grad_weights or an empty [0] tensor).
  m.def(
      "weighted_sum_backward(Tensor grad, Tensor[] branches, Tensor weights, "
      "bool branches_need_grad, bool weights_need_grad) -> (Tensor[], Tensor)");
}
