"""Helpers of the latency tests that test modules import (conftest.py's fixtures use them too)."""

from hwnas.spaces import SearchSpace


def make_tiny_space(**changes) -> SearchSpace:
    """A 4-layer space with 3 candidates a layer, 8x8 inputs and 4 classes (``changes``
    replace fields of its definition: another head, in_channels, stages...)."""
    definition = dict(
        stages=[
            {"out_channels": 8, "layers": 2, "first_stride": 1, "choices": ["k3_e1", "k3_e3", "skip"]},
            {"out_channels": 16, "layers": 2, "first_stride": 2, "choices": ["k3_e1", "k5_e3", "skip"]},
        ],
        resolution=8, in_channels=3, num_classes=4,
        stem={"out_channels": 8, "kernel": 3, "stride": 1, "activation": "relu"}, head={"out_channels": 16},
    )
    return SearchSpace("latency_test_tiny", **{**definition, **changes})
