"""Is an estimator's ranking size in disguise? ``recnas bench diagnose``, over a finished comparison.

SiGeo's ZiCo term is a sum over parameter tensors, so it can rank architectures by how many
tensors they have rather than by how good they are (issue 18, "Diagnose the bias"). This reads a
finished ``recnas bench compare`` folder (its ``build.json``, ground-truth table, ``results.csv`` and
``scores.csv``, e.g. a committed ``reports/`` folder), scores nothing, and gives for every score
column -- each estimator, each SiGeo term and ablation combination, each warm-up fraction:

- Kendall's tau-b and Spearman's rho with the **ground truth** (the negated seed-mean test log loss,
  higher = better, as in the report);
- the same two with each **size** measure: the number of parameter tensors of the dense part, its
  parameter count, its FLOPs per example, and the parameter count of the whole model, embedding
  tables included (each architecture's ``CTRModel`` is built on the ``meta`` device: no data, no
  memory; the tables' rows are the pipeline's ``hash_size``, and with a vocabulary instead of hashing
  the total is the ground-truth table's ``params_total``). The total is the one size measure that
  sees the embedding width, which on a space with a width choice can be the largest single factor of
  the truth;
- the **partial Spearman correlation** with the ground truth controlling for size: the ranks of the
  score and of the truth are each regressed (least squares, with an intercept) on the ranks of
  log(params), log(FLOPs), the tensor count and log(params incl. tables) -- and, where the
  architectures have more than one embedding width, on one indicator per width but the first --
  and the residuals are correlated (Pearson). A log does not change a rank, so the controls are the
  ranks of the four size measures. The width indicators are there because the ranks of the total
  enter the fit linearly, while the width is a step in them: on the first 61 architectures of
  ``pipelines/bench_ctr.yaml`` a score that is the width alone has a partial of +0.64 given the
  three dense controls, still +0.39 with the total added, and 0 with the indicators. In a space
  with one embedding width there is no indicator, and the total is the dense count plus a
  constant, so its ranks repeat those of log(params): the design is rank-deficient, which
  ``numpy.linalg.lstsq`` (SVD, minimum-norm solution) handles, and the residuals -- hence the
  partials -- are those of the three dense controls up to float rounding. A score whose ranks the
  size ranks explain entirely carries no information beyond size: its partial correlation is
  reported as 0 (it is 0/0 otherwise);
- where the architectures have more than one embedding width, the **Kendall within width**:
  Kendall's tau-b (``scipy.stats.kendalltau``) with the truth within each width group, and their
  mean weighted by the groups' sizes -- the width held fixed and nothing else, no regression (a
  score constant within a group, e.g. the width itself, counts 0 there);
- percentile bootstrap intervals of every figure, resampling architectures with
  :func:`recnas.bench.stats.bootstrap_ci` (every statistic of every column sees the same resamples).

The size measures themselves appear as rows of kind ``size``. Writes ``diagnose.csv``,
``diagnose.md`` and ``diagnose_scatter.png`` (SiGeo and its three terms against the tensor count and
against the truth, fresh and at the largest warm-up).

Example::

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> truth, size = rng.normal(size=200), rng.normal(size=200)
    >>> controls = np.column_stack([size, size, size, size])
    >>> round(partial_spearman(truth + 3 * size, truth, controls), 1)
    0.9
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from recnas.bench import stats

__all__ = [
    "SIZE_MEASURES",
    "STATISTICS",
    "WITHIN_WIDTH",
    "kendall",
    "spearman",
    "partial_spearman",
    "kendall_within",
    "within_width",
    "size_table",
    "diagnose",
    "load_comparison",
    "run_diagnose",
    "DIAGNOSE_CSV",
    "DIAGNOSE_MD",
    "DIAGNOSE_PLOT",
]

DIAGNOSE_CSV = "diagnose.csv"
DIAGNOSE_MD = "diagnose.md"
DIAGNOSE_PLOT = "diagnose_scatter.png"

#: the size measures, in the order of the output columns
SIZE_MEASURES = ("tensors", "params", "flops", "params_total")
_SIZE_LABELS = {"tensors": "dense tensor count", "params": "dense params", "flops": "FLOPs per example",
                "params_total": "all params (tables included)"}

#: every statistic of a row: name -> (kind, target); kind ``partial`` controls for all size measures
STATISTICS: dict[str, tuple[str, str]] = {
    "kendall_truth": ("kendall", "truth"),
    "spearman_truth": ("spearman", "truth"),
    "partial_truth": ("partial", "truth"),
    **{f"{m}_{s}": (m, s) for s in SIZE_MEASURES for m in ("kendall", "spearman")},
}

#: the size-weighted mean of the within-width Kendalls (only where there is more than one width); the
#: per-width ones are ``kendall_within_e<width>``
WITHIN_WIDTH = "kendall_within_width"

# share of a score's rank variance left after regressing on the size ranks below which the score
# counts as a function of size alone (partial correlation 0)
_EXPLAINED_TOL = 1e-10


def kendall(x: Any, y: Any) -> float:
    """Kendall's tau-b (``scipy.stats.kendalltau``); NaN when either side is constant."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(sps.kendalltau(x, y).statistic)


def spearman(x: Any, y: Any) -> float:
    """Spearman's rho (``scipy.stats.spearmanr``); NaN when either side is constant."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(sps.spearmanr(x, y).statistic)


def partial_spearman(x: Any, y: Any, controls: Any, strata: Any | None = None) -> float:
    """Rank partial correlation of ``x`` and ``y`` given ``controls`` ``(n, k)`` (and ``strata``).

    The average ranks (``scipy.stats.rankdata``) of ``x`` and of ``y`` are regressed on the ranks of
    each control column plus an intercept -- and, with ``strata`` ``(n,)`` (a categorical control such
    as the embedding width), one indicator column per stratum but the first, so each stratum gets
    its own level -- by ``numpy.linalg.lstsq`` (SVD, minimum-norm solution: collinear, rank-deficient
    controls are fine and leave the fitted values, hence the residuals, unchanged), and the residuals
    are correlated (``scipy.stats.pearsonr``). Returns 0 when the controls explain the ranks of ``x``
    entirely (``x`` is a function of them: nothing beyond them), NaN when they explain ``y`` entirely
    or ``x`` / ``y`` is constant. A single stratum adds no column: the same figure as without.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    z = np.asarray(controls, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    if not (x.shape == y.shape == (z.shape[0],)):
        raise ValueError(f"partial_spearman: shapes {x.shape}, {y.shape} and controls {z.shape} disagree")
    r = np.column_stack([sps.rankdata(x), sps.rankdata(y)])
    design = np.column_stack([np.ones(len(x)), sps.rankdata(z, axis=0)])
    if strata is not None:
        g = np.asarray(strata)
        if g.shape != x.shape:
            raise ValueError(f"partial_spearman: strata shape {g.shape} disagrees with {x.shape}")
        levels = np.unique(g)
        if len(levels) > 1:
            design = np.column_stack([design, *((g == v).astype(np.float64) for v in levels[1:])])
    coef, *_ = np.linalg.lstsq(design, r, rcond=None)
    resid = r - design @ coef
    total = ((r - r.mean(axis=0)) ** 2).sum(axis=0)
    left = (resid ** 2).sum(axis=0)
    if total[0] == 0 or total[1] == 0 or left[1] <= _EXPLAINED_TOL * total[1]:
        return float("nan")
    if left[0] <= _EXPLAINED_TOL * total[0]:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(sps.pearsonr(resid[:, 0], resid[:, 1]).statistic)


def size_controls(sizes: pd.DataFrame) -> np.ndarray:
    """``(n, 4)``: log(params), log(FLOPs), tensor count, log(params incl. tables) -- the partial
    correlation's controls (collinear where there is one embedding width: see :func:`partial_spearman`)."""
    return np.column_stack([np.log(sizes["params"].to_numpy(np.float64)),
                            np.log(sizes["flops"].to_numpy(np.float64)),
                            sizes["tensors"].to_numpy(np.float64),
                            np.log(sizes["params_total"].to_numpy(np.float64))])


def _group_kendall(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall within one group: 0 when the score is constant there but the truth is not (it ranks
    nothing within the group), NaN when undefined otherwise (under 2 members, a constant truth)."""
    if x.size < 2:
        return float("nan")
    tau = kendall(x, y)
    if math.isnan(tau) and np.ptp(x) == 0 and np.ptp(y) > 0:
        return 0.0
    return tau


def kendall_within(x: Any, y: Any, groups: Any) -> float:
    """Kendall's tau-b of ``x`` and ``y`` (``scipy.stats.kendalltau``) within each group of ``groups``,
    averaged with the groups' sizes as weights; groups where it is undefined (see
    :func:`_group_kendall`) are left out of the mean, NaN when all are.

    Example::

        >>> kendall_within([1, 2, 3, 10, 20, 30], [3, 2, 1, 30, 20, 10], [8, 8, 8, 16, 16, 16])
        -1.0
    """
    x, y, g = (np.asarray(v) for v in (x, y, groups))
    taus, weights = [], []
    for w in np.unique(g):
        m = g == w
        tau = _group_kendall(x[m].astype(np.float64), y[m].astype(np.float64))
        if not math.isnan(tau):
            taus.append(tau)
            weights.append(int(m.sum()))
    return float(np.average(taus, weights=weights)) if taus else float("nan")


def within_width(widths: Any) -> list[int]:
    """The distinct embedding widths, sorted, when there is more than one (else ``[]``: nothing to stratify)."""
    w = sorted({int(v) for v in np.asarray(widths).ravel()})
    return w if len(w) > 1 else []


def _statistic(kind: str) -> Callable[..., float]:
    return {"kendall": kendall, "spearman": spearman}[kind]


def diagnose(scores: dict[str, Any], truth: Any, sizes: pd.DataFrame, n_boot: int = 1000, alpha: float = 0.05,
             seed: int = 0, widths: Any | None = None) -> pd.DataFrame:
    """One row per score column: every statistic of :data:`STATISTICS` with its bootstrap interval.

    Args:
        scores: label -> ``(n,)`` scores, higher = predicted better (NaN-free).
        truth: ``(n,)`` ground truth, higher = better (``-`` mean test log loss).
        sizes: ``(n,)`` columns ``tensors``, ``params``, ``flops``, ``params_total`` (all positive).
        n_boot, alpha, seed: :func:`recnas.bench.stats.bootstrap_ci`'s; the same ``seed`` for every
            statistic, so all of them see the same resamples of the architectures.
        widths: ``(n,)`` embedding widths (optional). With more than one distinct width, the rows
            also get :data:`WITHIN_WIDTH` (:func:`kendall_within` with the truth) and
            ``kendall_within_e<w>`` for each width ``w``, on the same resamples.

    Returns:
        DataFrame indexed by label, columns ``<stat>``, ``<stat>_lo``, ``<stat>_hi`` for each statistic.
    """
    t = np.asarray(truth, dtype=np.float64)
    n = t.size
    missing = [c for c in SIZE_MEASURES if c not in sizes]
    if missing:
        raise ValueError(f"sizes lacks {missing}")
    if len(sizes) != n:
        raise ValueError(f"sizes has {len(sizes)} rows, truth {n}")
    ctrl = size_controls(sizes)
    if not np.isfinite(ctrl).all():
        raise ValueError("sizes: params and flops must be positive (their logs are controls)")
    targets = {"truth": t, **{s: sizes[s].to_numpy(np.float64) for s in SIZE_MEASURES}}
    widths_list: list[int] = []
    wv = None
    if widths is not None:
        wv = np.asarray(widths)
        if wv.shape != (n,):
            raise ValueError(f"widths: expected {n} values, got shape {wv.shape}")
        widths_list = within_width(wv)
        wv = wv.astype(np.int64)
    idx = np.arange(n, dtype=np.float64)  # resample indices through bootstrap_ci, then pick rows
    rows = []
    for label, s in scores.items():
        p = np.asarray(s, dtype=np.float64)
        if p.shape != (n,):
            raise ValueError(f"score {label!r}: expected {n} values, got shape {p.shape}")
        if not np.isfinite(p).all():
            raise ValueError(f"score {label!r}: {int((~np.isfinite(p)).sum())} of {n} values are not finite")
        row: dict[str, Any] = {"label": label}
        for name, (kind, target) in STATISTICS.items():
            y = targets[target]
            if kind == "partial":
                def metric(a: np.ndarray, _b: np.ndarray, p=p, y=y) -> float:
                    i = a.astype(np.intp)
                    return partial_spearman(p[i], y[i], ctrl[i], None if wv is None else wv[i])
            else:
                f = _statistic(kind)

                def metric(a: np.ndarray, _b: np.ndarray, p=p, y=y, f=f) -> float:
                    i = a.astype(np.intp)
                    return f(p[i], y[i])
            row[name] = metric(idx, idx)
            row[f"{name}_lo"], row[f"{name}_hi"] = stats.bootstrap_ci(metric, idx, idx, n_boot=n_boot, alpha=alpha,
                                                                      seed=seed)
        if widths_list:
            def within(a: np.ndarray, _b: np.ndarray, p=p) -> float:
                i = a.astype(np.intp)
                return kendall_within(p[i], t[i], wv[i])

            per_width = {}
            for w in widths_list:
                def one(a: np.ndarray, _b: np.ndarray, p=p, w=w) -> float:
                    i = a.astype(np.intp)
                    m = wv[i] == w
                    return _group_kendall(p[i][m], t[i][m])

                per_width[f"kendall_within_e{w}"] = one
            for name, metric in {WITHIN_WIDTH: within, **per_width}.items():
                row[name] = metric(idx, idx)
                row[f"{name}_lo"], row[f"{name}_hi"] = stats.bootstrap_ci(metric, idx, idx, n_boot=n_boot,
                                                                          alpha=alpha, seed=seed)
        rows.append(row)
    df = pd.DataFrame(rows).set_index("label")
    df.attrs.update(n=n, n_boot=n_boot, alpha=alpha, seed=seed, widths=widths_list)
    return df


# -- architectures' sizes ------------------------------------------------------------------------


def _feature_map(data: Any) -> Any:
    """A feature map with the dataset's features (no data read): only the number of dense and sparse
    features fixes the dense part; table sizes (here ``hash_size`` or 2) do not enter it."""
    from recnas.data.feature_map import DenseFeature, FeatureMap, SparseFeature
    from recnas.data.formats import output_features

    dense, sparse = output_features(data.format)
    rows = int(data.hash_size or 2)
    return FeatureMap(data.format, dense=tuple(DenseFeature(n) for n in dense),
                      sparse=tuple(SparseFeature(n, max(rows, 2)) for n in sparse))


def size_table(specs: Sequence[Any], feature_map: Any) -> pd.DataFrame:
    """Per architecture: ``tensors`` (parameter tensors of the dense part), ``params`` (its parameter
    count, ``num_params(include_embeddings=False)``), ``flops`` (``flops_per_example()``) and
    ``params_total`` (``num_params()``: the embedding tables too, with ``feature_map``'s table rows),
    from ``CTRModel(feature_map, spec, device=meta)``."""
    import torch

    from recnas.models import CTRModel

    out = []
    for spec in specs:
        m = CTRModel(feature_map, spec, device=torch.device("meta"))
        dense = list(m.dense_arch.parameters())
        out.append({"tensors": len(dense), "params": m.num_params(include_embeddings=False),
                    "flops": m.flops_per_example(), "params_total": m.num_params(include_embeddings=True)})
    return pd.DataFrame(out, columns=list(SIZE_MEASURES))


# -- a finished comparison -------------------------------------------------------------------------


def load_comparison(cfg: Any, from_dir: str | os.PathLike, source: str = "pipeline") -> dict[str, Any]:
    """Reads a finished comparison folder of ``cfg``'s pipeline and checks it is this pipeline's.

    Returns ``specs``, ``truth_logloss`` ``(n, seeds)``, ``table`` (ground-truth rows), ``results``
    (``results.csv``), ``scores`` (``scores.csv``).
    """
    from recnas.bench.compare import RESULTS_FILE, SCORES_FILE, read_finished
    from recnas.bench.groundtruth import sample_archs, truth_matrix
    from recnas.space.space import SearchSpace

    src = Path(from_dir)
    table = read_finished(cfg, src, source)
    specs = sample_archs(SearchSpace.load(cfg.space), cfg.num_archs, cfg.sample_seed)
    keys = [s.key() for s in specs]
    scores = pd.read_csv(src / SCORES_FILE)
    if scores["key"].tolist() != keys:
        raise ValueError(f"{src / SCORES_FILE}: its architectures are not this pipeline's {len(keys)} architectures")
    return {"specs": specs, "truth_logloss": truth_matrix(table, keys, cfg.train.seeds), "table": table,
            "results": pd.read_csv(src / RESULTS_FILE), "scores": scores}


def _recorded(table: pd.DataFrame, keys: list[str], col: str) -> np.ndarray:
    return table.drop_duplicates("key").set_index("key")[col].reindex(keys).to_numpy(np.float64)


def _check_sizes(sizes: pd.DataFrame, table: pd.DataFrame, keys: list[str], src: Path, hashed: bool = True) -> None:
    """The recomputed sizes must be the ground-truth table's (same models, same feature map).

    ``hashed``: the tables' rows are the pipeline's ``hash_size``, so ``params_total`` is rebuilt
    exactly and checked too; otherwise (a vocabulary, whose sizes come from the data) the rebuilt
    total is replaced in place by the table's ``params_total``, which must then be there.
    """
    if not hashed:
        if "params_total" not in table or np.isnan(_recorded(table, keys, "params_total")).any():
            raise ValueError(f"{src}: the ground-truth table has no params_total for every architecture, and the "
                             "pipeline's data has no hash_size to rebuild the embedding tables from")
        sizes["params_total"] = _recorded(table, keys, "params_total").astype(np.int64)
    for col in ("params", "flops") + (("params_total",) if hashed else ()):
        if col not in table:
            continue
        recorded = _recorded(table, keys, col)
        ok = np.isnan(recorded) | (recorded == sizes[col].to_numpy(np.float64))
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            raise ValueError(f"{src}: architecture {i}'s {col} is {recorded[i]:.0f} in the ground truth but "
                             f"{sizes[col].iloc[i]} rebuilt here: the feature map or the model code differs")


def run_diagnose(cfg: Any, source: str = "pipeline", from_dir: str | os.PathLike | None = None,
                 out: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """The size diagnosis of a finished comparison; returns the path of ``diagnose.md``.

    ``from_dir`` (default ``cfg.output``): the comparison folder; ``out`` (default
    ``from_dir/diagnose``): where ``diagnose.csv``, ``diagnose.md`` and the plot go. Bootstrap
    settings are the pipeline's ``stats`` section.
    """
    import sys

    src = Path(from_dir if from_dir is not None else cfg.output)
    dst = Path(out) if out is not None else src / "diagnose"
    c = load_comparison(cfg, src, source)
    specs, scores, results = c["specs"], c["scores"], c["results"]
    keys = [s.key() for s in specs]
    sizes = size_table(specs, _feature_map(cfg.data))
    _check_sizes(sizes, c["table"], keys, src, hashed=bool(cfg.data.hash_size))
    widths = np.array([s.embedding_dim for s in specs], dtype=np.int64)
    truth = -c["truth_logloss"].mean(axis=1)
    facts_cols = ["label", "estimator", "kind", "init", "fraction", "embeddings", "failed"]
    facts = results[[k for k in facts_cols if k in results]].copy()
    skipped = [lb for lb in facts["label"] if lb not in scores.columns]
    facts = facts[facts["label"].isin(scores.columns)]
    cols = {lb: scores[lb].to_numpy(np.float64) for lb in facts["label"]}
    size_facts = [{"label": f"size: {_SIZE_LABELS[s]}", "estimator": s, "kind": "size", "init": "none"}
                  for s in SIZE_MEASURES]
    cols.update({r["label"]: sizes[r["estimator"]].to_numpy(np.float64) for r in size_facts})
    facts = pd.concat([facts, pd.DataFrame(size_facts)], ignore_index=True)
    s = cfg.stats
    if progress:
        print(f"recnas bench diagnose: {len(specs)} architectures x {c['truth_logloss'].shape[1]} seeds from {src}; "
              f"{len(cols)} score columns x {len(STATISTICS) + _n_within(widths)} statistics, {s.n_boot} bootstrap "
              "replicates",
              file=sys.stderr, flush=True)
    df = diagnose(cols, truth, sizes, n_boot=s.n_boot, alpha=s.alpha, seed=s.seed, widths=widths)
    table = facts.set_index("label").join(df).reset_index()
    table.insert(table.columns.get_loc("kendall_truth"), "n", len(truth))
    dst.mkdir(parents=True, exist_ok=True)
    table.to_csv(dst / DIAGNOSE_CSV, index=False)
    _plot(dst / DIAGNOSE_PLOT, table, cols, sizes, c["truth_logloss"].mean(axis=1))
    md = dst / DIAGNOSE_MD
    md.write_text(_markdown(cfg, source, src, table, sizes, c["truth_logloss"].shape, skipped, widths))
    return md


def _n_within(widths: Any) -> int:
    """How many within-width statistics a row gets: the mean and one per width, or none."""
    w = within_width(widths)
    return 1 + len(w) if w else 0


# -- the report ------------------------------------------------------------------------------------


def _f(x: Any, d: int = 3) -> str:
    return "--" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.{d}f}"


def _ci(row: Any, m: str) -> str:
    return f"{_f(row[m])} [{_f(row[m + '_lo'])}, {_f(row[m + '_hi'])}]"


def _setting(row: Any) -> str:
    if row["init"] == "inherit":
        return f"inherit {float(row['fraction']) * 100:g}%"
    return str(row["init"])


_TERMS = (("sigeo", "SiGeo (as configured)"), ("sigeo l1 (ZiCo)", "l1: ZiCo"),
          ("sigeo l2 (Fisher-Rao)", "l2: Fisher-Rao"), ("sigeo l3 (-loss)", "l3: -loss"))


def _term_rows(table: pd.DataFrame, estimator: str) -> pd.DataFrame:
    t = table[table["estimator"] == estimator]
    if "embeddings" in t and t["embeddings"].notna().any():
        t = t[t["embeddings"].fillna("none") == "none"]
    return t


def _main_settings(table: pd.DataFrame) -> list[tuple[str, float]]:
    """Fresh weights and the largest warm-up with inherited weights, where the table has them."""
    out: list[tuple[str, float]] = []
    if (table["init"] == "fresh").any():
        out.append(("fresh", float("nan")))
    inh = table[table["init"] == "inherit"]["fraction"].dropna()
    if len(inh):
        out.append(("inherit", float(inh.max())))
    return out


def _pick(table: pd.DataFrame, estimator: str, init: str, frac: float) -> pd.Series | None:
    t = _term_rows(table, estimator)
    t = t[t["init"] == init]
    if init == "inherit":
        t = t[np.isclose(t["fraction"].astype(float), frac)]
    return None if t.empty else t.iloc[0]


def _plot(path: Path, table: pd.DataFrame, cols: dict[str, np.ndarray], sizes: pd.DataFrame,
          logloss: np.ndarray) -> None:
    from recnas.bench.report import plt  # Agg backend, set there

    settings = _main_settings(table)
    terms = [(name, title) for name, title in _TERMS
             if any(_pick(table, name, init, frac) is not None for init, frac in settings)]
    if not terms:
        return
    ncols = 2 * len(settings)
    fig, axes = plt.subplots(len(terms), ncols, figsize=(2.9 * ncols, 2.6 * len(terms)), squeeze=False)
    tensors = sizes["tensors"].to_numpy(np.float64)
    for r, (name, title) in enumerate(terms):
        for c, (init, frac) in enumerate(settings):
            row = _pick(table, name, init, frac)
            for j, (x, xlabel, stat) in enumerate(((tensors, "dense tensor count", "kendall_tensors"),
                                                   (logloss, "mean test log loss (reversed: right = better)", "kendall_truth"))):
                ax = axes[r][2 * c + j]
                if row is None:
                    ax.set_axis_off()
                    continue
                ax.scatter(x, cols[row["label"]], s=9, alpha=0.7)
                ax.set_title(f"{title} | {_setting(row)}\nKendall {row[stat]:+.2f}", fontsize=8)
                ax.set_xlabel(xlabel, fontsize=7)
                ax.set_ylabel("score", fontsize=7)
                if j == 1:
                    ax.invert_xaxis()  # right = better, as the Kendall with the truth counts it
                ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _markdown(cfg: Any, source: str, src: Path, table: pd.DataFrame, sizes: pd.DataFrame, shape: tuple[int, int],
              skipped: list[str], widths: Any) -> str:
    from recnas.bench.report import _md_table  # the bench report's table writer (loads matplotlib, so not at import)

    n, k = shape
    n_boot = cfg.stats.n_boot
    ws = within_width(widths)
    counts = pd.Series(np.asarray(widths)).value_counts().sort_index()
    width_text = ", ".join(f"{int(c)} at e={int(w)}" for w, c in counts.items())
    lines = [
        f"# Size diagnosis: `{source}`",
        "",
        f"From `{src}` ({n} architectures x {k} seeds). Truth: the negated mean test log loss over the seeds "
        f"(higher = better). Sizes rebuilt on the meta device and checked against the ground-truth table: of the "
        f"dense part, tensor count {int(sizes['tensors'].min())} -- {int(sizes['tensors'].max())}, params "
        f"{int(sizes['params'].min()):,} -- {int(sizes['params'].max()):,}, FLOPs {int(sizes['flops'].min()):,} -- "
        f"{int(sizes['flops'].max()):,}; all params (embedding tables included) "
        f"{int(sizes['params_total'].min()):,} -- {int(sizes['params_total'].max()):,}. Embedding widths: {width_text}.",
        "",
        f"Every figure: the statistic [{(1 - cfg.stats.alpha) * 100:g} % percentile bootstrap interval over "
        f"architectures, {n_boot} replicates, the same resamples for every figure]. `partial`: Spearman "
        "correlation with the truth after controlling for size -- the ranks of the score and of the truth "
        "each regressed on the ranks of log(params), log(FLOPs), the tensor count and log(all params, tables "
        "included)" + (" and on one indicator per embedding width but the first" if ws else "") +
        " (with an intercept; `numpy.linalg.lstsq`, which handles collinear controls: with one embedding "
        "width the total's ranks repeat those of the dense params), the residuals correlated; 0 when the "
        "score is a function of size alone. A `partial` near the raw Spearman means size is not what the "
        "score ranks by; a raw figure that size explains shrinks to 0.",
    ]
    if ws:
        lines += ["", "`Kendall within width`: Kendall's tau-b with the truth within each embedding width, averaged "
                  "with the number of architectures of each width as weights (a score constant within a width, "
                  "such as the width itself, counts 0 there): the width held fixed and nothing else, where "
                  "`partial` removes the width's level and the other sizes together. Each width's own "
                  f"figure (`kendall_within_e<w>`, e in {ws}) is in `diagnose.csv`."]
    lines += ["", "## Size against the truth", ""]
    sz = table[table["kind"] == "size"]
    within_head = ["Kendall within width"] if ws else []

    def within(r: Any) -> list[str]:
        return [_ci(r, WITHIN_WIDTH)] if ws else []

    lines.append(_md_table(
        ["size measure", "Kendall with truth", "Spearman with truth", *within_head, "Kendall with tensors",
         "Kendall with params", "Kendall with FLOPs", "Kendall with all params"],
        [[r["label"].removeprefix("size: "), _ci(r, "kendall_truth"), _ci(r, "spearman_truth"), *within(r),
          _f(r["kendall_tensors"]), _f(r["kendall_params"]), _f(r["kendall_flops"]), _f(r["kendall_params_total"])]
         for _, r in sz.iterrows()]))
    lines += ["", "## SiGeo's terms (embeddings left out of the terms, as SiGeo's default)", ""]
    term_rows = []
    for name, title in _TERMS:
        t = _term_rows(table, name)
        t = t.assign(_f=t["fraction"].astype(float).fillna(-1)).sort_values(["_f"])
        for _, r in t.iterrows():
            term_rows.append([title, _setting(r), _ci(r, "kendall_truth"), _ci(r, "kendall_tensors"),
                              _f(r["kendall_params"]), _f(r["kendall_flops"]), _ci(r, "spearman_truth"),
                              _ci(r, "partial_truth"), *within(r)])
    lines.append(_md_table(["term", "weights", "Kendall with truth", "Kendall with tensors", "with params",
                            "with FLOPs", "Spearman with truth", "partial (size controlled)", *within_head],
                           term_rows))
    lines += ["", f"![SiGeo and its terms against the tensor count and the truth]({DIAGNOSE_PLOT})", "",
              "## Every score column, by partial correlation", "",
              "Sorted by `partial` (best first). Spearman with each size measure is in `diagnose.csv`.", ""]
    body = table[table["kind"] != "size"].sort_values("partial_truth", ascending=False)
    lines.append(_md_table(
        ["score", "Kendall with truth", "Spearman with truth", "partial (size controlled)", *within_head,
         "Kendall with tensors", "with params", "with FLOPs", "with all params"],
        [[r["label"].replace("|", "\\|"), _ci(r, "kendall_truth"), _ci(r, "spearman_truth"), _ci(r, "partial_truth"),
          *within(r), _f(r["kendall_tensors"]), _f(r["kendall_params"]), _f(r["kendall_flops"]),
          _f(r["kendall_params_total"])] for _, r in body.iterrows()]))
    if skipped:
        lines += ["", f"Rows of `results.csv` with no score column (not diagnosed): {', '.join(skipped)}."]
    lines.append("")
    return "\n".join(lines)
