"""Ranking statistics that judge an estimator against a ground-truth benchmark.

**Sign convention (the one place it is stated).** Every function here takes ``pred`` and
``truth`` oriented the same way: *higher = better*. Estimator scores already are (higher score =
predicted lower log loss). Ground-truth test log loss is lower-is-better, so pass ``-logloss`` as
``truth``; :func:`compare`, which takes log losses, negates them itself.

Functions:

- :func:`spearman`, :func:`kendall` (tau-b, ties handled), :func:`top_k_precision`;
- :func:`bootstrap_ci`: percentile interval of any of them, resampling *architectures*;
- :func:`noise_ceiling`: the same statistic between two training seeds of the ground truth;
- :func:`compare`: one table of every estimator's statistics with intervals, fraction of the
  ceiling and seconds;
- :func:`train_test_splits`, :func:`ranking_stats`, :func:`summarize_splits`: the pieces of the
  predictors' training-set-size sweep (seeded random splits of the architectures, the three
  statistics on a held-out set, mean / std / percentile interval over the splits).

Example::

    >>> import numpy as np
    >>> truth = -np.array([0.45, 0.44, 0.46, 0.43])      # log losses, negated
    >>> pred = np.array([1.0, 2.0, 0.5, 3.0])
    >>> spearman(pred, truth), kendall(pred, truth)
    (1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "spearman",
    "kendall",
    "top_k_precision",
    "bootstrap_ci",
    "noise_ceiling",
    "compare",
    "train_test_splits",
    "ranking_stats",
    "summarize_splits",
]

Metric = Callable[[np.ndarray, np.ndarray], float]


def _pair(pred: Any, truth: Any, name: str = "pred") -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if p.ndim != 1 or t.ndim != 1:
        raise ValueError(f"{name} and truth must be 1-D arrays, got shapes {p.shape} and {t.shape}")
    if p.shape != t.shape:
        raise ValueError(f"{name} has {p.size} values but truth has {t.size}")
    if p.size < 2:
        raise ValueError(f"need at least 2 architectures to rank, got {p.size}")
    for arr, label in ((p, name), (t, "truth")):
        if np.isnan(arr).any():
            bad = np.flatnonzero(np.isnan(arr))[:10].tolist()
            raise ValueError(f"{label} contains NaN at positions {bad}")
    return p, t


def _rank(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties get the mean of the ranks they span."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # boundaries of runs of equal values
    new = np.r_[True, xs[1:] != xs[:-1]]
    run_id = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], xs.size]  # exclusive
    avg = (starts + ends - 1) / 2.0 + 1.0
    ranks = np.empty_like(x)
    ranks[order] = avg[run_id]
    return ranks


def spearman(pred: Any, truth: Any) -> float:
    """Spearman's rho: the Pearson correlation of the average ranks. NaN if either side is constant.

    Args:
        pred: ``(n,)`` estimator scores, higher = better.
        truth: ``(n,)`` ground truth, higher = better (e.g. ``-logloss``).
    """
    p, t = _pair(pred, truth)
    rp, rt = _rank(p) - (p.size + 1) / 2.0, _rank(t) - (t.size + 1) / 2.0
    den = np.sqrt((rp * rp).sum() * (rt * rt).sum())
    return float((rp * rt).sum() / den) if den > 0 else float("nan")


def kendall(pred: Any, truth: Any) -> float:
    """Kendall's tau-b (ties in either ranking are corrected for, as in ``scipy.stats.kendalltau``).

    tau_b = (C - D) / sqrt((n0 - n1) (n0 - n2)) over all pairs, where n1 / n2 count pairs tied in
    ``pred`` / ``truth``. O(n^2) memory and time, which is fine for benchmark sizes (n <= ~2000).
    NaN if either side is constant.
    """
    p, t = _pair(pred, truth)
    iu = np.triu_indices(p.size, k=1)
    sp = np.sign(p[:, None] - p[None, :])[iu]
    st = np.sign(t[:, None] - t[None, :])[iu]
    n0 = sp.size
    n1 = int((sp == 0).sum())
    n2 = int((st == 0).sum())
    den = np.sqrt(float(n0 - n1) * float(n0 - n2))
    return float((sp * st).sum() / den) if den > 0 else float("nan")


def top_k_precision(pred: Any, truth: Any, frac: float = 0.1) -> float:
    """Fraction of the ``k`` best architectures by ``pred`` that are among the ``k`` best by ``truth``.

    ``k = max(1, round(frac * n))``. Ties at the cut are broken by position (stable sort), so the
    result is deterministic.
    """
    p, t = _pair(pred, truth)
    if not 0.0 < frac <= 1.0:
        raise ValueError(f"frac must be in (0, 1], got {frac}")
    k = max(1, int(round(frac * p.size)))
    top_p = np.argsort(-p, kind="mergesort")[:k]
    top_t = np.argsort(-t, kind="mergesort")[:k]
    return float(np.intersect1d(top_p, top_t).size / k)


def bootstrap_ci(
    metric: Metric,
    pred: Any,
    truth: Any,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric(pred, truth)``, resampling architectures.

    Each replicate draws ``n`` architecture indices with replacement and recomputes the metric on
    those (pred, truth) pairs. Replicates where the metric is undefined (NaN, e.g. a resample with
    one distinct value) are left out of the percentiles.

    Returns:
        ``(low, high)``, the ``alpha/2`` and ``1 - alpha/2`` percentiles.
    """
    p, t = _pair(pred, truth)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    rng = np.random.default_rng(seed)
    vals = np.empty(n_boot)
    for i in range(n_boot):
        idx = rng.integers(0, p.size, p.size)
        vals[i] = metric(p[idx], t[idx])
    vals = vals[~np.isnan(vals)]
    if vals.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def noise_ceiling(truth_seed0: Any, truth_seed1: Any, metric: Metric = kendall) -> float:
    """The rank agreement of the ground truth with itself: ``metric`` between two training seeds.

    No estimator can be expected to agree with one seed's ranking better than another seed does.
    Both arguments are oriented higher = better (or both lower = better: the statistic is the same).
    """
    a, b = _pair(truth_seed0, truth_seed1, name="truth_seed0")
    return float(metric(a, b))


_METRICS: dict[str, Metric] = {"spearman": spearman, "kendall": kendall}


def compare(
    scores: Mapping[str, Any],
    truth_logloss: Any,
    seconds: Mapping[str, float] | None = None,
    frac: float = 0.1,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    ceilings: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """One row per estimator: Spearman, Kendall and top-``frac`` precision with bootstrap intervals.

    Args:
        scores: estimator name -> ``(n,)`` scores, higher = predicted better.
        truth_logloss: ground-truth test log loss (lower = better), ``(n,)`` for one seed or
            ``(n, n_seeds)``. With several seeds the truth is their mean and the noise ceiling is
            the mean of the statistic over all pairs of seeds (with one seed, the ceiling is NaN).
            A mean over seeds is less noisy than one seed, so a fraction of the ceiling can exceed 1.
        seconds: estimator name -> seconds spent scoring (optional; NaN where missing).
        frac, n_boot, alpha, seed: see :func:`top_k_precision` and :func:`bootstrap_ci`.
        ceilings: ``{"spearman": c, "kendall": c}`` to divide by instead of the mean over seed
            pairs -- e.g. the agreement of two truths averaged over disjoint halves of the seeds,
            the ceiling that matches a seed-averaged truth.

    Returns:
        DataFrame indexed by estimator, columns ``spearman``, ``spearman_lo``, ``spearman_hi``,
        ``kendall``, ``kendall_lo``, ``kendall_hi``, ``top``, ``top_lo``, ``top_hi``,
        ``spearman_ceiling``, ``kendall_ceiling``, ``spearman_frac``, ``kendall_frac``, ``seconds``;
        ``df.attrs`` holds ``n``, ``frac``, ``alpha`` and ``n_seeds``.
    """
    ll = np.asarray(truth_logloss, dtype=np.float64)
    if ll.ndim == 1:
        ll = ll[:, None]
    if ll.ndim != 2:
        raise ValueError(f"truth_logloss must be (n,) or (n, n_seeds), got shape {ll.shape}")
    n, n_seeds = ll.shape
    truth = -ll.mean(axis=1)
    seconds = dict(seconds or {})
    unknown = sorted(set(seconds) - set(scores))
    if unknown:
        raise ValueError(f"seconds given for estimators with no scores: {unknown}")

    if ceilings is None:
        ceilings = {
            mname: float(np.mean([noise_ceiling(-ll[:, i], -ll[:, j], metric)
                                  for i in range(n_seeds) for j in range(i + 1, n_seeds)]))
            if n_seeds > 1 else float("nan")
            for mname, metric in _METRICS.items()
        }
    else:
        missing = sorted(set(_METRICS) - set(ceilings))
        if missing:
            raise ValueError(f"ceilings lacks {missing}")
        ceilings = {m: float(ceilings[m]) for m in _METRICS}

    def top(p: np.ndarray, t: np.ndarray) -> float:
        return top_k_precision(p, t, frac)

    rows = []
    for name, s in scores.items():
        p = np.asarray(s, dtype=np.float64)
        if p.shape != (n,):
            raise ValueError(f"estimator {name!r}: expected {n} scores, got shape {p.shape}")
        if np.isnan(p).any():
            raise ValueError(
                f"estimator {name!r}: {int(np.isnan(p).sum())} of {n} scores are NaN"
            )
        row: dict[str, Any] = {"estimator": name}
        for mname, metric in (*_METRICS.items(), ("top", top)):
            row[mname] = metric(p, truth)
            row[f"{mname}_lo"], row[f"{mname}_hi"] = bootstrap_ci(
                metric, p, truth, n_boot=n_boot, alpha=alpha, seed=seed
            )
        for mname in _METRICS:
            row[f"{mname}_ceiling"] = ceilings[mname]
            row[f"{mname}_frac"] = row[mname] / ceilings[mname] if ceilings[mname] else float("nan")
        row["seconds"] = float(seconds.get(name, float("nan")))
        rows.append(row)
    df = pd.DataFrame(rows).set_index("estimator") if rows else pd.DataFrame()
    df.attrs.update(n=n, frac=frac, alpha=alpha, n_seeds=n_seeds)
    return df


def train_test_splits(n: int, n_train: int, splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``splits`` seeded random (train, held-out) partitions of ``range(n)``, ``n_train`` for training.

    ``sklearn.model_selection.ShuffleSplit`` with ``random_state=seed``: every architecture not in
    the training set is held out, the two are disjoint, and the same arguments give the same splits.
    Indices are sorted within each side.
    """
    from sklearn.model_selection import ShuffleSplit

    if not 2 <= n_train <= n - 2:
        raise ValueError(f"n_train must leave at least 2 architectures on each side: n={n}, n_train={n_train}")
    if splits < 1:
        raise ValueError(f"splits must be >= 1, got {splits}")
    ss = ShuffleSplit(n_splits=splits, train_size=n_train, test_size=n - n_train, random_state=seed)
    return [(np.sort(tr), np.sort(te)) for tr, te in ss.split(np.zeros((n, 1)))]


def ranking_stats(pred: Any, truth: Any, frac: float = 0.1) -> dict[str, float]:
    """``{"kendall", "spearman", "top"}`` of ``pred`` against ``truth`` (both higher = better)."""
    return {"kendall": kendall(pred, truth), "spearman": spearman(pred, truth),
            "top": top_k_precision(pred, truth, frac)}


def summarize_splits(values: Any, alpha: float = 0.05) -> dict[str, float]:
    """Mean, std (ddof 1), and the ``alpha/2`` .. ``1 - alpha/2`` percentiles of a statistic over
    splits (the range that holds ``1 - alpha`` of the splits, not an interval of the mean: the
    splits share architectures, so they are not independent). NaN values (a constant ranking) are
    left out; ``n`` counts the rest."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[~np.isnan(v)]
    if v.size == 0:
        nan = float("nan")
        return {"mean": nan, "std": nan, "lo": nan, "hi": nan, "n": 0}
    lo, hi = np.quantile(v, [alpha / 2, 1 - alpha / 2])
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else float("nan"),
            "lo": float(lo), "hi": float(hi), "n": int(v.size)}
