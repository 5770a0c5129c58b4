"""The comparison report: ``report.md`` with tables and embedded PNG plots.

Plot functions draw into a given (or new) matplotlib ``Axes`` and return it (Agg backend), so they
compose into grids and can be used on their own::

    >>> ax = plot_rank_scatter(scores, -truth_logloss, title="sigeo | inherit 10%")   # doctest: +SKIP
    >>> ax.figure.savefig("scatter.png")                                               # doctest: +SKIP
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from recnas.bench import stats  # noqa: E402
from recnas.bench.config import BenchConfig  # noqa: E402

__all__ = ["plot_rank_scatter", "plot_warmup_sweep", "write_report", "REPORT_FILE"]

REPORT_FILE = "report.md"


def _ranks(x: np.ndarray) -> np.ndarray:
    """1 = best (highest value), average ranks for ties."""
    return pd.Series(-np.asarray(x, dtype=np.float64)).rank(method="average").to_numpy()


def plot_rank_scatter(pred: Any, truth: Any, title: str = "", ax: Axes | None = None) -> Axes:
    """Rank by the estimator (x) against rank by the ground truth (y), 1 = best; Kendall in the title.

    Args:
        pred: ``(n,)`` estimator scores, higher = predicted better.
        truth: ``(n,)`` ground truth, higher = better (e.g. ``-test_logloss``).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 3.2))
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    rp, rt = _ranks(p), _ranks(t)
    ax.scatter(rp, rt, s=10, alpha=0.75)
    n = len(p)
    ax.plot([1, n], [1, n], color="grey", lw=0.7, ls="--")
    ax.set_xlim(0, n + 1)
    ax.set_ylim(0, n + 1)
    ax.set_title(f"{title}\nKendall {stats.kendall(p, t):+.2f}", fontsize=8)
    ax.set_xlabel("estimator rank", fontsize=7)
    ax.set_ylabel("ground-truth rank", fontsize=7)
    ax.tick_params(labelsize=6)
    return ax


def plot_warmup_sweep(results: pd.DataFrame, metric: str = "kendall", ceiling: float | None = None,
                      ax: Axes | None = None, ceiling_label: str = "noise ceiling (seed 0 vs 1)") -> Axes:
    """``metric`` of every inherited-weights estimator against the warm-up fraction (with the bootstrap
    interval as a band), fresh-weight and weight-free estimators as horizontal dotted lines, and the
    noise ceiling as a dashed line.

    Args:
        results: rows of :func:`recnas.bench.compare.judge` with ``kind == "estimator"``.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.5))
    est = results[results["kind"] == "estimator"]
    inherit = est[est["init"] == "inherit"]
    fracs = sorted(inherit["fraction"].unique())
    xs = {f: i for i, f in enumerate(fracs)}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (name, g) in enumerate(inherit.groupby("estimator", sort=False)):
        g = g.sort_values("fraction")
        x = [xs[f] for f in g["fraction"]]
        c = colors[k % len(colors)]
        lw = 2.5 if name.startswith("sigeo") else 1.2
        ax.plot(x, g[metric], marker="o", lw=lw, color=c, label=f"{name} (inherit)")
        ax.fill_between(x, g[f"{metric}_lo"], g[f"{metric}_hi"], color=c, alpha=0.08)
    others = est[est["init"] != "inherit"]
    for k, row in enumerate(others.itertuples()):
        c = colors[(k + 3) % len(colors)]
        ax.axhline(getattr(row, metric), color=c, ls=":", lw=1.2, label=f"{row.estimator} ({row.init})")
    if ceiling is not None and not math.isnan(ceiling):
        ax.axhline(ceiling, color="black", ls="--", lw=1.5, label=ceiling_label)
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.set_xticks(range(len(fracs)), [f"{100 * f:g}%" for f in fracs])
    ax.set_xlabel("supernet warm-up (fraction of the training split)")
    ax.set_ylabel(f"{metric} vs seed-averaged test log loss")
    ax.legend(fontsize=6, ncol=2, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return ax


def _f(x: Any, d: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "--"
    if isinstance(x, (int, np.integer)):
        return f"{x:,}"
    return f"{x:.{d}f}"


def _ci(row: Any, m: str) -> str:
    return f"{_f(row[m])} [{_f(row[m + '_lo'])}, {_f(row[m + '_hi'])}]"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _results_table(df: pd.DataFrame) -> str:
    rows = []
    for _, r in df.sort_values("kendall", ascending=False).iterrows():
        rows.append([
            r["estimator"], r["init"], "--" if math.isnan(r["fraction"]) else f"{100 * r['fraction']:g}%",
            _ci(r, "kendall"), _ci(r, "spearman"), _ci(r, "top"), _f(r["kendall_frac"], 2),
            _f(r["seconds_per_arch"], 3), str(int(r.get("failed", 0))),
        ])
    return _md_table(
        ["estimator", "init", "warm-up", "Kendall [95% CI]", "Spearman [95% CI]", "top-10% precision [95% CI]",
         "Kendall / ceiling", "s / arch", "failed"],
        rows,
    )


def _ceiling_rows(ceilings: pd.DataFrame, max_pairs: int = 6) -> list[list[str]]:
    """The ceiling table's rows: every seed pair up to ``max_pairs``, else the first pair and a
    summary of all of them (every pair stays in ``ceiling.csv``), then the seed-averaged halves."""
    pairs, halves = ceilings[ceilings["kind"] == "seed pair"], ceilings[ceilings["kind"] != "seed pair"]
    rows = [[r["comparison"], _ci(r, "kendall"), _ci(r, "spearman")] for _, r in pairs.head(
        len(pairs) if len(pairs) <= max_pairs else 1).iterrows()]
    if len(pairs) > max_pairs:
        rows.append([
            f"all {len(pairs)} seed pairs: mean [smallest, largest] (each pair in `ceiling.csv`)",
            *(f"{_f(pairs[m].mean())} [{_f(pairs[m].min())}, {_f(pairs[m].max())}]" for m in ("kendall", "spearman")),
        ])
    rows += [[r["comparison"], _ci(r, "kendall"), _ci(r, "spearman")] for _, r in halves.iterrows()]
    return rows


def _sweep_table(df: pd.DataFrame, metric: str, group: str) -> str:
    inh = df[df["init"] == "inherit"]
    fracs = sorted(inh["fraction"].unique())
    rows = []
    for name, g in inh.groupby(group, sort=False):
        by = dict(zip(g["fraction"], g[metric]))
        fresh = df[(df[group] == name) & (df["init"] == "fresh")][metric]
        rows.append([str(name), *[_f(by.get(f)) for f in fracs], _f(fresh.iloc[0]) if len(fresh) else "--"])
    return _md_table([group, *[f"inherit {100 * f:g}%" for f in fracs], "fresh"], rows)


def write_report(out: Path, cfg: BenchConfig, source: str, table: pd.DataFrame, truth: np.ndarray,
                 results: pd.DataFrame, scores: pd.DataFrame, ceilings: pd.DataFrame,
                 warm: pd.DataFrame) -> Path:
    """Writes ``report.md`` and the PNGs into ``out``; returns the report's path."""
    n, k = truth.shape
    est = results[results["kind"] == "estimator"]
    abl = results[results["kind"] == "sigeo_ablation"]
    ceil_k = float(ceilings["kendall"].iloc[0])
    headline = max(cfg.warmup.fractions)
    truth_pos = -truth.mean(axis=1)

    # rank scatter grid at the headline fraction (+ fresh and weight-free estimators)
    shown = est[(est["init"] != "inherit") | (est["fraction"] == headline)].sort_values("kendall", ascending=False)
    cols = 5
    nrows = max(1, math.ceil(len(shown) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.0 * cols, 3.1 * nrows), squeeze=False)
    for ax, (_, r) in zip(axes.flat, shown.iterrows()):
        plot_rank_scatter(scores[r["label"]].to_numpy(), truth_pos, title=r["label"], ax=ax)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "rank_scatter.png", dpi=80)
    plt.close(fig)

    figs = []
    for metric in ("kendall", "spearman"):
        fig, ax = plt.subplots(figsize=(9.5, 4.8))
        halves = ceilings[ceilings["kind"] == "all halves"]
        if len(halves):
            c, label = float(halves[metric].iloc[0]), f"noise ceiling ({k // 2}-seed mean vs the other {k - k // 2})"
        else:
            c, label = float(ceilings[metric].iloc[0]), f"noise ceiling (seed {cfg.train.seeds[0]} vs {cfg.train.seeds[1]})"
        plot_warmup_sweep(results, metric=metric, ceiling=c, ax=ax, ceiling_label=label)
        ax.set_title(f"{metric} vs warm-up fraction ({n} architectures, truth = mean of {k} seeds)")
        fig.tight_layout()
        name = f"warmup_sweep_{metric}.png"
        fig.savefig(out / name, dpi=80)
        plt.close(fig)
        figs.append(name)

    # seed 0 vs seed 1 scatter (the ceiling)
    fig, ax = plt.subplots(figsize=(3.6, 3.6))
    plot_rank_scatter(-truth[:, 0], -truth[:, 1], title=f"seed {cfg.train.seeds[0]} vs seed {cfg.train.seeds[1]}", ax=ax)
    ax.set_xlabel(f"rank, seed {cfg.train.seeds[0]}", fontsize=7)
    ax.set_ylabel(f"rank, seed {cfg.train.seeds[1]}", fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "ceiling_scatter.png", dpi=80)
    plt.close(fig)

    ll = truth.mean(axis=1)
    secs = table["train_seconds"].to_numpy(dtype=float)
    diverged = int((truth > 1.0).sum())
    head = est[(est["init"] != "inherit") | (est["fraction"] == headline)].sort_values("kendall", ascending=False)
    best = head.iloc[0]
    pairs = ceilings[ceilings["kind"] == "seed pair"]
    divisor = float(results["kendall_ceiling"].iloc[0]) if len(results) else float("nan")
    summary = [
        f"- Noise ceiling, single seeds: seed {cfg.train.seeds[0]} vs seed {cfg.train.seeds[1]} Kendall {ceil_k:.3f} "
        f"(Spearman {float(ceilings['spearman'].iloc[0]):.3f}); mean over all {len(pairs)} seed pairs Kendall "
        f"{pairs['kendall'].mean():.3f} (Spearman {pairs['spearman'].mean():.3f}).",
        *([f"- Noise ceiling of a seed-averaged truth: {r['comparison']}: Kendall {r['kendall']:.3f} "
           f"[{r['kendall_lo']:.3f}, {r['kendall_hi']:.3f}], Spearman {r['spearman']:.3f}."
           for _, r in ceilings[ceilings["kind"].isin(["halves", "all halves"])].iterrows()]),
        f"- `Kendall / ceiling` divides by {divisor:.3f}: "
        + ("the average over every split of the seeds into halves (the truth is a seed average)."
           if (ceilings["kind"] == "all halves").any() else "the mean over seed pairs."),
        f"- Best estimator at the {100 * headline:g} % warm-up: {best['label']} with Kendall {best['kendall']:.3f} "
        f"[{best['kendall_lo']:.3f}, {best['kendall_hi']:.3f}] ({best['kendall_frac']:.2f} of the ceiling).",
        f"- Training runs whose test log loss exceeds 1.0 (diverged; the label-rate baseline is about 0.5): "
        f"{diverged} of {n * k}.",
    ]
    for name in ("sigeo", "zico", "oneshot", "params"):
        rows = head[head["estimator"] == name]
        for _, r in rows.iterrows():
            summary.append(f"- {r['label']}: Kendall {r['kendall']:.3f} [{r['kendall_lo']:.3f}, {r['kendall_hi']:.3f}], "
                           f"{r['seconds_per_arch']:.3f} s per architecture.")
    lines = [
        f"# Estimator comparison: `{source}`",
        "",
        f"Ground truth: {n} architectures of `{cfg.space}` (sample seed {cfg.sample_seed}), each trained from "
        f"scratch for seeds {list(cfg.train.seeds)} ({cfg.train.epochs} epoch(s), batch {cfg.train.batch_size}, "
        f"{_f(cfg.train.fraction, 2)} of the training split, dense lr {cfg.train.dense_lr}, table lr "
        f"{cfg.train.table_lr}). Truth = test log loss averaged over the seeds. "
        f"Test log loss range {ll.min():.4f} -- {ll.max():.4f} (median {np.median(ll):.4f}); "
        f"test AUC {table['test_auc'].min():.3f} -- {table['test_auc'].max():.3f}. "
        f"Training took {secs.sum() / 60:.1f} min in all (median {np.median(secs):.1f} s per run).",
        "",
        f"Scoring: {cfg.scoring.batches} x {cfg.scoring.batch_size} training rows (gradient proxies), "
        f"{cfg.scoring.val_batches} x {cfg.scoring.batch_size} validation rows (one-shot). Statistics: "
        f"bootstrap over architectures ({cfg.stats.n_boot} replicates, {100 * (1 - cfg.stats.alpha):g} % "
        f"percentile intervals), top-{100 * cfg.stats.top_frac:g} % precision "
        f"(k = {max(1, round(cfg.stats.top_frac * n))}). Higher is better for every statistic.",
        "",
        "## Summary",
        "",
        *summary,
        "",
        "## Noise ceiling (the ground truth against itself)",
        "",
        _md_table(
            ["comparison", "Kendall [95% CI]", "Spearman [95% CI]"],
            _ceiling_rows(ceilings),
        ),
        "",
        "![seed 0 vs seed 1](ceiling_scatter.png)",
        "",
        "The truth the estimators are judged against is the mean over the seeds, which is less noisy than "
        "one seed, so a fraction of the ceiling above 1 is possible. The `mean of ... seeds` rows compare two "
        "truths averaged over disjoint halves of the seeds: how well a truth of that many seeds agrees with an "
        "independent one (the truth used here averages all of them, so it is more reliable still). `failed`: architectures the estimator "
        "could not score (an arithmetic error or a non-finite score); they are ranked last.",
        "",
        f"## Every estimator (inherited weights at the {100 * headline:g} % warm-up; fresh and weight-free once)",
        "",
        _results_table(est[(est["init"] != "inherit") | (est["fraction"] == headline)]),
        "",
        "![rank scatter](rank_scatter.png)",
        "",
        "## Warm-up sweep (Kendall)",
        "",
        _md_table(
            ["warm-up", "steps", "seconds"],
            [[f"{100 * r.fraction:g}%", _f(int(r.steps)) if r.steps >= 0 else "--", _f(r.seconds, 1)]
             for r in warm.itertuples()],
        ),
        "",
        _sweep_table(est, "kendall", "estimator"),
        "",
        f"![Kendall vs warm-up]({figs[0]})",
        "",
        "Spearman:",
        "",
        _sweep_table(est, "spearman", "estimator"),
        "",
        f"![Spearman vs warm-up]({figs[1]})",
        "",
        "## SiGeo ablation (Kendall; score = l1 ZiCo + l2 Fisher-Rao - l3 loss)",
        "",
    ]
    for emb, g in abl.groupby("embeddings", sort=False):
        lines += [f"Embeddings `{emb}`:", "", _sweep_table(g, "kendall", "estimator"), ""]
    lines += [
        "## Every row at every warm-up",
        "",
        "All numbers (with intervals) are in `results.csv`; per-architecture scores in `scores.csv`.",
        "",
        _results_table(est),
        "",
    ]
    path = out / REPORT_FILE
    path.write_text("\n".join(lines))
    return path
