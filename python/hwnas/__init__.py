"""hwnas: hardware-aware neural architecture search for PyTorch.

Fused supernet operators (``hwnas.ops``), drop-in supernet layers, search spaces and
a model zoo (``hwnas.spaces``, ``hwnas.models``), latency tables built by a native
timing harness, and the FBNet family of searches.
"""

from hwnas import _extension  # noqa: F401  (loads and checks the native extension first)
from hwnas import layers, models, ops, spaces
from hwnas.layers import ChannelSearchConv2d, MixedLayer
from hwnas.spaces.profile import profile

__version__ = "0.1.0"

__all__ = [
    "ChannelSearchConv2d",
    "MixedLayer",
    "layers",
    "models",
    "ops",
    "profile",
    "spaces",
    "__version__",
]
