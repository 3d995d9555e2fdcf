"""Helpers of the search tests: a 2-layer space, a synthetic latency table, tiny data."""

import torch

from hwnas.data import ImageDataset
from hwnas.latency.table import LatencyTable, TableEntry
from hwnas.spaces import SearchSpace

TINY_CHOICES = ["k3_e1", "k3_e3", "skip"]
#: Synthetic per-block costs (us): larger blocks cost more, skip almost nothing.
TINY_COSTS = {"k3_e1": 10.0, "k3_e3": 30.0, "skip": 1.0, "stem": 5.0, "head": 5.0}


def tiny_space(resolution: int = 8) -> SearchSpace:
    """Two searchable layers (one stage, stride 2 then 1), 1 input channel, 3 classes."""
    return SearchSpace(
        "test_tiny2",
        [{"out_channels": 8, "layers": 2, "first_stride": 2, "choices": TINY_CHOICES}],
        resolution=resolution, in_channels=1, num_classes=3,
        stem={"out_channels": 8, "kernel": 3, "stride": 1, "activation": "relu"},
        head={"out_channels": 16, "activation": "relu"},
    )


def synthetic_table(space: SearchSpace) -> LatencyTable:
    """A complete table with :data:`TINY_COSTS` (no timing: fast and exact)."""
    table = LatencyTable.for_space(space, {"target": "synthetic"})
    for key in table.required_keys():
        block = key.split("|")[0]
        table.entries[key] = TableEntry(TINY_COSTS[block], block, 1, 1, 1, (1, 1))
    return table


def tiny_dataset(n: int = 90, seed: int = 0) -> ImageDataset:
    """Three learnable classes: a bright square in one of three places, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = 0.1 * torch.rand(n, 1, 8, 8, generator=g)
    for i, label in enumerate(labels.tolist()):
        images[i, 0, 1 + 2 * label: 3 + 2 * label, 2:6] += 0.9
    return ImageDataset(images, labels, 3, "tiny")
