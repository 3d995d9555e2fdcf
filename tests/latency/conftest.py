"""Shared fixtures: a tiny search space and fast timing settings."""

import pytest

from hwnas.latency.harness import TimingConfig


@pytest.fixture
def tiny_space():
    from hwnas.spaces import SearchSpace

    return SearchSpace(
        "latency_test_tiny",
        stages=[
            {"out_channels": 8, "layers": 2, "first_stride": 1, "choices": ["k3_e1", "k3_e3", "skip"]},
            {"out_channels": 16, "layers": 2, "first_stride": 2, "choices": ["k3_e1", "k5_e3", "skip"]},
        ],
        resolution=8,
        in_channels=3,
        num_classes=4,
        stem={"out_channels": 8, "kernel": 3, "stride": 1, "activation": "relu"},
        head={"out_channels": 16},
    )


@pytest.fixture
def fast_timing():
    return TimingConfig(warmup_iters=2, min_samples=5, max_samples=200, target_rel_ci=0.5, budget_s=0.03)
