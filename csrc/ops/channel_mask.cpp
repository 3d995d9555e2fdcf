// Schema of hwnas::channel_mask: FBNetV2's channel search (DMasking) in one pass.
//
//   out[:, c] = x[:, c] * sum_{i : c < widths[i]} gates[..., i]
//
// x is [B, C, ...]; gates is [K] (one choice for the whole batch) or [B, K] (one per
// sample); widths are K strictly increasing channel counts, the last at most C. The
// K prefix masks are never materialised: their weighted sum is a per-channel scale,
// computed once, and x is read once. Kernels live in cpu/ and cuda/; autograd and the
// fake kernel are registered from Python (hwnas/ops.py).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(hwnas, m) {
  m.def("channel_mask(Tensor x, Tensor gates, int[] widths) -> Tensor");
  // One fused pass over grad computes the gradient of x and the per-channel dot
  // products <grad[:, c], x[:, c]> that give every gate gradient by prefix sums.
  // x may be an empty [0] tensor when gates_need_grad is false (it is not read then).
  // Returns (grad_x or an empty [0] tensor, grad_gates or an empty [0] tensor).
  m.def(
      "channel_mask_backward(Tensor grad, Tensor x, Tensor gates, int[] widths, "
      "bool x_needs_grad, bool gates_needs_grad) -> (Tensor, Tensor)");
}
