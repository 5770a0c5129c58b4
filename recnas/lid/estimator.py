"""The local intrinsic dimension (LID) of a batch of representations: the maximum-likelihood estimate.

For a point ``x`` of a batch ``X`` ``(B, D)`` with distances ``r_1(x) <= ... <= r_k(x)`` to its ``k``
nearest other points of the batch (NAS-LID, after Amsaleg et al. 2015)::

    LID(x) = -[ (1/k) sum_{i=1..k} log(r_i(x) / r_k(x)) ]^-1

and the LID of the batch is the mean over its points (NAS-LID: ``k = 20``, ``B = 128``).

Duplicate rows: CTR batches repeat rows (the same ids and dense values), and a block maps equal
inputs to equal outputs, so ``r_1`` can be 0 and ``log(0)`` makes the estimate 0 or undefined. Here
exact duplicates are removed before the neighbour search (``torch.unique`` over rows): the estimate
is that of the *distinct* points of the batch, and ``k`` is cut to ``distinct - 1`` when fewer
points remain. A batch with at most two distinct points has no measurable dimension and gets 0.
Points that differ only by rounding are not duplicates and are kept.

Example::

    >>> g = torch.Generator().manual_seed(0)
    >>> z = torch.randn(128, 3, generator=g) @ torch.randn(3, 64, generator=g)  # a 3-dim subspace of R^64
    >>> 2.0 < lid_mle(z, k=20) < 4.5
    True
"""

from __future__ import annotations

import torch

__all__ = ["lid_mle", "lid_per_point", "distinct_rows"]


def distinct_rows(x: torch.Tensor) -> torch.Tensor:
    """The distinct rows of ``x`` ``(B, D)`` (exact equality), ``(B', D)`` with ``B' <= B``."""
    return torch.unique(x, dim=0)


def lid_per_point(x: torch.Tensor, k: int = 20) -> torch.Tensor:
    """The MLE LID of every distinct row of ``x`` ``(B, ...)`` (flattened to ``(B, D)``) within the batch.

    Returns ``(B',)`` float64 over the ``B'`` distinct rows, with ``k' = min(k, B' - 1)``
    neighbours; empty when ``B' <= 2`` (too few points for a ratio of distances).
    """
    if k < 2:
        raise ValueError(f"k must be >= 2 (the estimate divides by the k-th distance), got {k}")
    pts = distinct_rows(x.detach().reshape(x.shape[0], -1).to(torch.float64))
    n = pts.shape[0]
    if n <= 2:
        return torch.empty(0, dtype=torch.float64)
    kk = min(k, n - 1)
    # exact differences, not the matrix-product form, whose cancellation blurs close points
    d = torch.cdist(pts, pts, compute_mode="donot_use_mm_for_euclid_dist")
    d.fill_diagonal_(float("inf"))  # a point is not its own neighbour
    r = torch.topk(d, kk, dim=1, largest=False).values  # (n, kk), ascending; all > 0 (rows distinct)
    s = torch.log(r / r[:, -1:]).mean(dim=1)  # <= 0; == 0 only if all k distances are equal
    return -1.0 / s.clamp(max=-torch.finfo(torch.float64).tiny)


def lid_mle(x: torch.Tensor, k: int = 20) -> float:
    """The batch's LID: :func:`lid_per_point` averaged over its distinct rows (0 with <= 2 of them)."""
    per = lid_per_point(x, k)
    return float(per.mean()) if per.numel() else 0.0
