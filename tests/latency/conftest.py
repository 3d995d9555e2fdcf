"""Shared fixtures: a tiny search space and fast timing settings."""

import os
import sys

import pytest

from hwnas.latency.harness import TimingConfig

sys.path.insert(0, os.path.dirname(__file__))

from _latency_fixtures import make_tiny_space  # noqa: E402


@pytest.fixture
def tiny_space():
    return make_tiny_space()


@pytest.fixture
def fast_timing():
    return TimingConfig(warmup_iters=2, min_samples=5, max_samples=200, target_rel_ci=0.5, budget_s=0.03)
