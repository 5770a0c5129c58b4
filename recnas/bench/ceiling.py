"""How well a ground truth can judge an estimator, from the rows built so far: ``recnas bench ceiling``.

A benchmark is sized from its noise ceiling before any estimator is scored on it. This reads the
ground-truth rows of a (possibly partial) ``recnas bench build`` -- e.g. a pilot of 20 architectures
x 3 seeds -- and reports, without scoring anything:

- the **spread** of the architectures (standard deviation and range of their seed-mean test log
  loss) against the **seed noise** (the pooled within-architecture standard deviation), estimated as
  the variance components of a one-way random-effects model: ``y[a, s] = mu + alpha_a + eps_as`` with
  ``Var(alpha) = sigma_arch^2``, ``Var(eps) = sigma_seed^2`` (``MSW`` and ``(MSB - MSW) / k``);
- the **measured agreement** of single seeds (Kendall and Spearman of every pair of seeds, averaged);
- the **projected ceiling**: the Kendall of two independent truths, each the mean of ``m`` seeds,
  over ``n`` architectures, for ``m = 1 ..`` -- simulated from the two variance components
  (Gaussian), so it needs no more seeds than the pilot has; and the smallest ``m`` that reaches the
  target (issue: 0.8). The ceiling ``bench compare`` quotes for an ``m``-seed truth is this figure for
  ``m / 2`` seeds per side (two disjoint halves), a lower bound for the full ``m``-seed mean.

The projection assumes that the noise is the same for every architecture and that the architecture
effects of the pilot's sample stand for the full build's (both are checked by the full build's own
``bench compare`` ceiling, which is measured, not projected).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recnas.bench import stats

__all__ = ["VarianceComponents", "variance_components", "projected_kendall", "complete_truth", "ceiling_report"]

CEILING_CSV = "ceiling_projection.csv"
CEILING_MD = "ceiling_projection.md"


@dataclass(frozen=True)
class VarianceComponents:
    """One-way random-effects estimates from an ``(n_archs, k_seeds)`` matrix.

    Attributes:
        sigma_arch: standard deviation of the architectures' true means (0 when MSB < MSW).
        sigma_seed: standard deviation of one run around its architecture's mean (pooled).
        n_archs, k_seeds: the matrix's shape.
    """

    sigma_arch: float
    sigma_seed: float
    n_archs: int
    k_seeds: int

    def reliability(self, m: int) -> float:
        """Share of the variance of an ``m``-seed mean that is architecture (the intraclass correlation of ``m`` seeds)."""
        a, e = self.sigma_arch ** 2, self.sigma_seed ** 2 / m
        return a / (a + e) if a + e > 0 else math.nan


def variance_components(y: np.ndarray) -> VarianceComponents:
    """Variance components of ``y`` ``(n_archs, k_seeds)`` (every cell finite, k >= 2)."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] < 2 or y.shape[0] < 2:
        raise ValueError(f"variance_components: need >= 2 architectures x >= 2 seeds, got shape {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("variance_components: the matrix has non-finite cells")
    n, k = y.shape
    means = y.mean(axis=1)
    msw = float(((y - means[:, None]) ** 2).sum() / (n * (k - 1)))
    msb = float(k * ((means - means.mean()) ** 2).sum() / (n - 1))
    return VarianceComponents(math.sqrt(max((msb - msw) / k, 0.0)), math.sqrt(msw), n, k)


def projected_kendall(vc: VarianceComponents, n_archs: int, m: int, sims: int = 400, seed: int = 0) -> tuple[float, float, float]:
    """Kendall of two independent ``m``-seed-mean truths over ``n_archs`` architectures drawn from
    ``vc`` (Gaussian): (mean, 5th percentile, 95th percentile) over ``sims`` simulations."""
    if m < 1 or n_archs < 2:
        raise ValueError("projected_kendall: m >= 1 and n_archs >= 2")
    rng = np.random.default_rng(seed)
    noise = vc.sigma_seed / math.sqrt(m)
    vals = np.empty(sims)
    for i in range(sims):
        a = rng.normal(0.0, vc.sigma_arch, n_archs)
        t1 = a + rng.normal(0.0, noise, n_archs)
        t2 = a + rng.normal(0.0, noise, n_archs)
        vals[i] = stats.kendall(t1, t2)
    return float(vals.mean()), float(np.percentile(vals, 5)), float(np.percentile(vals, 95))


def complete_truth(table: pd.DataFrame, column: str = "test_logloss") -> tuple[np.ndarray, list[str], list[int]]:
    """The ``(archs, seeds)`` matrix of the architectures that have a finite ``column`` for every
    seed present in the table (a partial build's finished part), with their keys and the seeds."""
    if table.empty:
        raise ValueError("the ground-truth table is empty: run `recnas bench build` first")
    pivot = table.pivot_table(index="key", columns="seed", values=column, aggfunc="first")
    seeds = sorted(int(s) for s in pivot.columns)
    full = pivot.dropna(axis=0, how="any")
    order = table.drop_duplicates("key").set_index("key")["arch"]
    keys = sorted(full.index, key=lambda k: int(order[k]))
    return full.loc[keys, seeds].to_numpy(dtype=np.float64), keys, seeds


def ceiling_report(cfg: Any, *, target: float = 0.8, n_archs: int | None = None, max_seeds: int = 8,
                   column: str = "test_logloss", source: str = "pipeline") -> str:
    """Writes ``OUTPUT/ceiling_projection.{csv,md}`` from the rows built so far; returns the markdown."""
    from recnas.bench.groundtruth import read_table

    out = Path(cfg.output)
    y, keys, seeds = complete_truth(read_table(out), column)
    if y.shape[0] < 3 or y.shape[1] < 2:
        raise ValueError(f"{out}: {y.shape[0]} architectures have all of {len(seeds)} seed(s); the projection "
                         "needs >= 3 architectures with >= 2 seeds each")
    vc = variance_components(y)
    n = n_archs or cfg.num_archs
    pair_k, pair_s = [], []
    for i in range(len(seeds)):
        for j in range(i + 1, len(seeds)):
            pair_k.append(stats.kendall(-y[:, i], -y[:, j]))
            pair_s.append(stats.spearman(-y[:, i], -y[:, j]))
    rows = []
    for m in range(1, max_seeds + 1):
        mean, lo, hi = projected_kendall(vc, n, m, seed=cfg.stats.seed if hasattr(cfg, "stats") else 0)
        rows.append({"seeds_per_truth": m, "n_archs": n, "kendall": mean, "kendall_p5": lo, "kendall_p95": hi,
                     "reliability": vc.reliability(m)})
    proj = pd.DataFrame(rows)
    proj.to_csv(out / CEILING_CSV, index=False)
    reach = proj[proj["kendall"] >= target]
    m_need = int(reach["seeds_per_truth"].iloc[0]) if len(reach) else None
    arch_means = y.mean(axis=1)
    lines = [
        f"# Noise ceiling from the rows built so far ({source})",
        "",
        f"Rows: {y.shape[0]} architectures with all of seeds {seeds} ({column}); no estimator was scored.",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| spread of the architectures' seed means (std) | {arch_means.std(ddof=1):.5f} |",
        f"| range of the seed means | {arch_means.min():.5f} - {arch_means.max():.5f} |",
        f"| sigma_arch (random-effects estimate) | {vc.sigma_arch:.5f} |",
        f"| sigma_seed (pooled within-architecture std) | {vc.sigma_seed:.5f} |",
        f"| sigma_arch / sigma_seed | {vc.sigma_arch / vc.sigma_seed if vc.sigma_seed > 0 else math.inf:.2f} |",
        f"| measured Kendall of single seeds (mean of {len(pair_k)} pairs) | {np.mean(pair_k):.3f} |",
        f"| measured Spearman of single seeds | {np.mean(pair_s):.3f} |",
        "",
        f"Projected agreement of two independent truths, each the mean of m seeds, over {n} architectures "
        "(Gaussian simulation from the two components; p5-p95 over 400 draws):",
        "",
        "| m seeds per truth | Kendall | p5 | p95 | reliability |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r.seeds_per_truth} | {r.kendall:.3f} | {r.kendall_p5:.3f} | {r.kendall_p95:.3f} | {r.reliability:.3f} |"
              for r in proj.itertuples()]
    lines += ["", (f"Target Kendall {target}: reached with m = {m_need} seeds per truth, i.e. a build of {2 * m_need} "
                   f"seeds, whose two disjoint halves (the ceiling `bench compare` quotes) agree at the target." if m_need else
                   f"Target Kendall {target}: not reached with up to {max_seeds} seeds per truth; more rows per run "
                   "or a space whose architectures differ more is needed.")]
    text = "\n".join(lines) + "\n"
    (out / CEILING_MD).write_text(text)
    return text
