"""The MLE LID estimator: known dimension recovered, duplicate rows removed before the neighbour search."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recnas.lid import distinct_rows, lid_mle, lid_per_point


def subspace_points(d: int, n: int = 128, big_d: int = 64, seed: int = 0) -> torch.Tensor:
    """``n`` Gaussian points of a random ``d``-dimensional linear subspace of ``R^big_d``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) @ torch.randn(d, big_d, generator=g)


@pytest.mark.parametrize("d", [2, 3, 5])
def test_recovers_the_dimension_of_a_linear_subspace_within_20_percent(d):
    # k = 20, B = 128 (NAS-LID's settings); averaged over 4 batches
    est = np.mean([lid_mle(subspace_points(d, seed=s), k=20) for s in range(4)])
    assert abs(est - d) <= 0.2 * d, est


def test_grows_with_the_dimension_and_ignores_the_ambient_one():
    ests = [lid_mle(subspace_points(d, seed=1)) for d in (1, 2, 4, 8)]
    assert all(a < b for a, b in zip(ests, ests[1:])), ests
    assert abs(lid_mle(subspace_points(3, big_d=8, seed=2)) - lid_mle(subspace_points(3, big_d=256, seed=2))) < 0.05


def test_duplicated_rows_are_removed_before_the_neighbour_search():
    x = subspace_points(3, n=64, seed=3)
    dup = torch.cat([x, x, x[:10]])[torch.randperm(138, generator=torch.Generator().manual_seed(0))]
    # with the zero distances kept, log(r_1 / r_k) = -inf and every duplicated point's estimate is 0
    d = torch.cdist(dup.double(), dup.double(), compute_mode="donot_use_mm_for_euclid_dist")
    d.fill_diagonal_(float("inf"))
    assert (d.min(dim=1).values == 0).all()
    per = lid_per_point(dup, k=20)
    assert per.shape == (64,) and torch.isfinite(per).all()
    assert lid_mle(dup, k=20) == pytest.approx(lid_mle(x, k=20), rel=1e-9)
    assert distinct_rows(dup).shape == (64, 64)


def test_few_distinct_rows_cut_k_and_a_collapsed_batch_has_dimension_zero():
    x = subspace_points(2, n=8, seed=4)
    many = x.repeat(16, 1)  # 128 rows, 8 distinct: k = 20 is cut to 7
    assert np.isfinite(lid_mle(many, k=20)) and lid_mle(many, k=20) == pytest.approx(lid_mle(x, k=7))
    assert lid_mle(torch.ones(128, 5)) == 0.0
    assert lid_mle(torch.cat([torch.zeros(64, 5), torch.ones(64, 5)])) == 0.0
    with pytest.raises(ValueError, match="k must be >= 2"):
        lid_mle(x, k=1)


def test_higher_rank_outputs_are_flattened_per_row():
    t = subspace_points(3, n=128, big_d=24, seed=5)
    assert lid_mle(t.reshape(128, 4, 6)) == pytest.approx(lid_mle(t))
