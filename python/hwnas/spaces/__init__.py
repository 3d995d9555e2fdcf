"""Search spaces, architecture encoding, model building and profiling.

Importing this package registers the built-in spaces: ``fbnet``,
``fbnet_small``, ``fbnetv2``, ``mobilenet_v2``, ``spos`` and ``hurricane``.
Nothing here imports the compiled extension.
"""

from . import blocks
from .architecture import Architecture
from .base import (
    LayerSpec,
    SearchSpace,
    get_space,
    list_spaces,
    load_space,
    register_space,
    space_for_architecture,
)
from .blocks import BLOCK_REGISTRY, FBNET_BLOCKS, HURRICANE_BLOCKS, BlockSpec, build_block, list_blocks, parse_block_name
from .builder import SpaceNet, build_model
from .fbnet import fbnet_small_space, fbnet_space, fbnetv2_space, mobilenet_v2_space
from .primitives import make_divisible
from .profile import LayerProfile, Profile, profile
from .spos import hardware_aware_layer_choices, hurricane_space, spos_space

__all__ = [
    "Architecture",
    "BLOCK_REGISTRY",
    "BlockSpec",
    "FBNET_BLOCKS",
    "HURRICANE_BLOCKS",
    "LayerProfile",
    "LayerSpec",
    "Profile",
    "SearchSpace",
    "SpaceNet",
    "blocks",
    "build_block",
    "build_model",
    "fbnet_small_space",
    "fbnet_space",
    "fbnetv2_space",
    "get_space",
    "hardware_aware_layer_choices",
    "hurricane_space",
    "list_blocks",
    "list_spaces",
    "load_space",
    "make_divisible",
    "mobilenet_v2_space",
    "parse_block_name",
    "profile",
    "register_space",
    "space_for_architecture",
    "spos_space",
]
