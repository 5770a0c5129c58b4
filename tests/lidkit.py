"""Shared pieces of the NAS-LID tests: a small feature map and seeded random batches of it."""

from __future__ import annotations

import torch

from recnas.data.feature_map import DenseFeature, FeatureMap, SparseFeature
from recnas.data.batch import random_batch


def small_fm() -> FeatureMap:
    return FeatureMap("t", dense=tuple(DenseFeature(f"I{i}") for i in range(3)),
                      sparse=tuple(SparseFeature(f"C{i}", 40 + 5 * i) for i in range(4)))


def batches(fm: FeatureMap, n: int, size: int = 64, seed: int = 0) -> list:
    return [random_batch(fm, size, torch.Generator().manual_seed(seed + i)) for i in range(n)]
