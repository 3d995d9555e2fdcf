"""Drop-in supernet layers built on the fused operators of :mod:`hwnas.ops`.

- :class:`MixedLayer`: a mixture of candidate blocks (DARTS / FBNet / SPOS modes),
  mixed with :func:`hwnas.ops.weighted_sum`.
- :class:`ChannelSearchConv2d`: FBNetV2's DMasking, one wide convolution whose output
  width is searched with :func:`hwnas.ops.channel_mask`.
- :class:`DepthwiseConv2d` and :func:`native_depthwise`: depthwise convolutions on
  :func:`hwnas.ops.depthwise_conv2d`, swapped into a model for training.

Each layer takes ``fused=False`` to run the eager reference of the same mathematics,
and exposes a differentiable ``expected_latency`` after each forward.
"""

from .channel_search import ChannelSearchConv2d
from .depthwise import DepthwiseConv2d, native_depthwise
from .mixed import MixedLayer
from .reference import channel_mask_reference, prefix_mask_matrix, weighted_sum_reference
from .sampling import SEARCH_MODES, sample_mixture

__all__ = [
    "MixedLayer",
    "ChannelSearchConv2d",
    "DepthwiseConv2d",
    "native_depthwise",
    "SEARCH_MODES",
    "sample_mixture",
    "weighted_sum_reference",
    "channel_mask_reference",
    "prefix_mask_matrix",
]
