"""SiGeo's terms against warm-up rows: the SiGeo paper's warm-up study, measured on the bench.

The SiGeo paper (Zheng et al., arXiv 2311.13169) shows on an MNIST MLP that the training-loss term
ranks better the longer the supernet warms up (Spearman .30 at no warm-up, .85 after a full one).
The bench scores SiGeo's three raw terms at every warm-up fraction (the ``sigeo_ablation`` rows of
``results.csv``); this module lays them out against the number of training rows the warm-up
consumed -- ``steps x warmup.batch_size`` from ``warmup.csv`` (the warm-up loader drops the last
partial batch) -- beside the paper's weights (1, 50, 1), the pipeline's own ``sigeo`` entries, and
``oneshot`` and ``params`` as references. The intervals are the ones ``results.csv`` holds
(:func:`recnas.bench.stats.bootstrap_ci` over architectures, computed when the rows were judged), so
nothing is scored or resampled here.

``sigeo_terms_section(out, cfg, results, warm)`` returns the report's markdown lines and draws
``sigeo_terms_warmup.png`` into ``out``; both are empty / absent when ``results`` has no ablation row
of a single term.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recnas.bench.config import BenchConfig

__all__ = ["SIGEO_TERMS_PLOT", "PAPER_MNIST_LOSS_SPEARMAN", "TermLine", "warmup_rows", "term_lines",
           "plot_sigeo_terms", "sigeo_terms_section"]

SIGEO_TERMS_PLOT = "sigeo_terms_warmup.png"

#: the SiGeo paper's MNIST MLP study (not measured here): warm-up (% of the training data) ->
#: Spearman of the training-loss term with the test loss; quoted as text, never plotted
PAPER_MNIST_LOSS_SPEARMAN = {0: 0.30, 10: 0.71, 20: 0.79, 100: 0.85}

PAPER_WEIGHTS = (1.0, 50.0, 1.0)


@dataclass(frozen=True)
class TermLine:
    """One row of the table and one line of the plot.

    Attributes:
        name: the row's name (e.g. ``"l3 -loss"``).
        kind: ``term`` (a single SiGeo term), ``paper`` (weights 1, 50, 1), ``entry`` (a ``sigeo``
            entry of the pipeline), ``reference`` (``oneshot``, ``params``).
        embeddings: the embeddings mode of the SiGeo score (``""`` for the references).
        rows: its ``results.csv`` rows (every context it was judged in).
        weights: an entry's SiGeo ``weights`` parameter (``""`` otherwise).
    """

    name: str
    kind: str
    embeddings: str
    rows: pd.DataFrame
    weights: str = ""


def warmup_rows(cfg: BenchConfig, warm: pd.DataFrame, fractions: list[float]) -> pd.DataFrame:
    """Per warm-up fraction (increasing): ``fraction``, ``steps`` and ``rows`` = steps x
    ``cfg.warmup.batch_size`` (0 for the fraction 0, NaN where ``warm`` does not know the steps)."""
    steps = {round(float(f), 12): int(s) for f, s in zip(warm.get("fraction", []), warm.get("steps", []))}
    out = []
    for f in sorted(set(float(x) for x in fractions)):
        s = 0 if f == 0.0 else steps.get(round(f, 12), -1)
        out.append({"fraction": f, "steps": s, "rows": float(s * cfg.warmup.batch_size) if s >= 0 else float("nan")})
    return pd.DataFrame(out, columns=["fraction", "steps", "rows"]).sort_values(["fraction"], ignore_index=True)


def _sigeo_entries(cfg: BenchConfig) -> list[tuple[str, str, str]]:
    """``(display label, embeddings mode, weights)`` of the pipeline's SiGeo entries."""
    from recnas.estimators import SiGeo

    out = []
    for e in cfg.estimators:
        if not e.needs_fit and issubclass(e.estimator_class, SiGeo):
            p = e.make().get_params()
            out.append((e.display, str(p["embeddings"]), str(p["weights"])))
    return out


def term_lines(cfg: BenchConfig, results: pd.DataFrame) -> list[TermLine]:
    """The rows of the section, in order: per embeddings mode the single terms and the paper's
    weights (from the ablation rows), then the pipeline's ``sigeo`` entries, ``oneshot`` and
    ``params``. Empty when ``results`` has no ablation row of a single term."""
    from recnas.bench.compare import sigeo_term_combos

    abl = results[results["kind"] == "sigeo_ablation"]
    singles = sigeo_term_combos(cfg)
    if abl.empty or not abl["estimator"].isin(singles).any():
        return []
    paper = [f"sigeo {c}" for c, w in cfg.sigeo_ablation.combos.items()
             if tuple(float(x) for x in w) == PAPER_WEIGHTS]
    lines: list[TermLine] = []
    for emb in abl["embeddings"].dropna().unique():
        for name in [*singles, *paper]:
            g = abl[(abl["estimator"] == name) & (abl["embeddings"] == emb)]
            if len(g):
                lines.append(TermLine(name.removeprefix("sigeo "), "paper" if name in paper else "term", str(emb), g))
    est = results[results["kind"] == "estimator"]
    for label, emb, weights in _sigeo_entries(cfg):
        g = est[est["estimator"] == label]
        if len(g):
            lines.append(TermLine(label, "entry", emb, g, weights))
    for name in ("oneshot", "params"):
        g = est[est["estimator"] == name]
        if len(g):
            lines.append(TermLine(name, "reference", "", g))
    return lines


def _at(rows: pd.DataFrame, init: str, fraction: float | None = None) -> pd.Series | None:
    g = rows[rows["init"] == init]
    if fraction is not None:
        g = g[np.isclose(g["fraction"].astype(float), fraction)]
    return None if g.empty else g.iloc[0]


def _short(x: float) -> str:
    """Rows as a tick label: ``0``, ``512``, ``1.79k``, ``20k``."""
    return f"{int(x):,}" if x < 1000 else f"{x / 1000:.3g}k"


def _column_label(r: pd.Series) -> str:
    if math.isnan(r["rows"]):
        return f"{100 * r['fraction']:g} % (rows unknown)"
    return f"{int(r['rows']):,} rows ({100 * r['fraction']:g} %)"


def _row_label(line: TermLine) -> str:
    if line.kind in ("term", "paper"):
        return f"{line.name}, embeddings `{line.embeddings}`"
    if line.kind == "entry":
        return f"`{line.name}` (pipeline entry: weights `{line.weights}`, embeddings `{line.embeddings}`)"
    if line.name == "params":
        return "`params` (reads no weights: one value, in every column)"
    return f"`{line.name}`"


def _table(lines: list[TermLine], cols: pd.DataFrame, metric: str) -> str:
    from recnas.bench.report import _ci, _md_table

    body = []
    for line in lines:
        cells = []
        for c in cols.itertuples():
            r = _at(line.rows, "inherit", c.fraction)
            if r is None:
                r = _at(line.rows, "none")
            cells.append("--" if r is None else _ci(r, metric))
        fresh = _at(line.rows, "fresh")
        body.append([_row_label(line), *cells, "--" if fresh is None else _ci(fresh, metric)])
    return _md_table(["score", *[_column_label(c) for _, c in cols.iterrows()], "fresh weights"], body)


def _ceiling(results: pd.DataFrame, metric: str) -> float:
    col = f"{metric}_ceiling"
    return float(results[col].iloc[0]) if col in results and len(results) else float("nan")


def plot_sigeo_terms(path: Path, lines: list[TermLine], cols: pd.DataFrame, results: pd.DataFrame,
                     metrics: tuple[str, ...] = ("kendall", "spearman")) -> None:
    """The PNG: one panel per (metric, embeddings mode); x = warm-up rows on a symlog axis (0
    shown), the fresh-weights scores as hollow diamonds at a slot of their own on the right; error
    bars = the intervals of ``results.csv``; the noise ceiling the report quotes as a dashed line."""
    from matplotlib.transforms import ScaledTranslation

    from recnas.bench.report import plt  # Agg backend, set there

    embs = list(dict.fromkeys(x.embeddings for x in lines if x.kind in ("term", "paper")))
    known = not cols["rows"].isna().any()
    xs = cols["rows"].to_numpy(float) if known else 100 * cols["fraction"].to_numpy(float)
    top = float(xs.max()) if len(xs) and xs.max() > 0 else 1.0
    positive = xs[xs > 0]
    step = float(positive.min()) if positive.size else 1.0
    fresh_x = top * 4.0
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = list(dict.fromkeys(x.name for x in lines if x.kind != "reference"))
    color = {**{n: palette[k % len(palette)] for k, n in enumerate(names)}, "oneshot": "dimgrey", "params": "darkgrey"}
    style = {"term": dict(lw=2.0, ls="-", marker="o"), "paper": dict(lw=1.5, ls="-", marker="s"),
             "entry": dict(lw=1.5, ls="--", marker="^"), "reference": dict(lw=1.0, ls=":", marker=".")}
    fig, axes = plt.subplots(len(metrics), len(embs), figsize=(5.2 * len(embs) + 2.6, 3.9 * len(metrics)),
                             squeeze=False, sharex=True)
    for i, metric in enumerate(metrics):
        handles: dict[str, object] = {}
        for j, emb in enumerate(embs):
            ax = axes[i][j]
            # an entry goes to the panel of its embeddings mode (to every panel when none is ablated)
            shown = [x for x in lines if x.embeddings == emb or x.kind == "reference"
                     or (x.kind == "entry" and x.embeddings not in embs)]
            ys: list[float] = []
            for k, line in enumerate(shown):
                # a few points sideways per line, so that the bars do not hide each other
                tr = ax.transData + ScaledTranslation((k - (len(shown) - 1) / 2) * 3.0 / 72, 0, fig.dpi_scale_trans)
                flat = _at(line.rows, "none")  # reads no weights: the same at every warm-up
                pts = [(x, flat if flat is not None else _at(line.rows, "inherit", f))
                       for x, f in zip(xs, cols["fraction"])]
                pts = [(x, r) for x, r in pts if r is not None]
                fresh = _at(line.rows, "fresh")
                if fresh is not None:
                    pts.append((fresh_x, fresh))
                if not pts:
                    continue
                y = np.array([r[metric] for _, r in pts], dtype=float)
                lo = np.array([r[f"{metric}_lo"] for _, r in pts], dtype=float)
                hi = np.array([r[f"{metric}_hi"] for _, r in pts], dtype=float)
                err = np.clip(np.vstack([y - lo, hi - y]), 0, None)
                ys += [*lo, *hi, *y]
                n = len(pts) - (fresh is not None)
                label = line.name if line.kind != "entry" else f"{line.name} (pipeline entry, {line.weights})"
                if n:
                    h = ax.errorbar([x for x, _ in pts[:n]], y[:n], yerr=err[:, :n], color=color[line.name], capsize=2,
                                    elinewidth=0.8, transform=tr, label=label, **style[line.kind])
                    handles.setdefault(label, h)
                if fresh is not None:
                    ax.errorbar([fresh_x], y[n:], yerr=err[:, n:], color=color[line.name], marker="D", mfc="none",
                                ls="none", capsize=2, elinewidth=0.8, transform=tr)
            ceiling = _ceiling(results, metric)
            if not math.isnan(ceiling):
                handles.setdefault("ceiling", ax.axhline(ceiling, color="black", ls="--", lw=1.2,
                                                         label=f"noise ceiling {ceiling:.3f}"))
                ys.append(ceiling)
            ys = [v for v in ys if np.isfinite(v)]
            if ys:  # the shifted bars do not enter the autoscale
                pad = 0.05 * (max(ys) - min(ys) or 1.0)
                ax.set_ylim(min(min(ys), 0.0) - pad, max(max(ys), 0.0) + pad)
            ax.axhline(0.0, color="grey", lw=0.5)
            ax.set_xscale("symlog", linthresh=step)
            ax.axvline(top * 2.0, color="grey", lw=0.5, ls=":")
            ax.set_xticks([*xs, fresh_x], [*(_short(x) if known else f"{x:g}%" for x in xs), "fresh\nweights"])
            ax.minorticks_off()
            ax.tick_params(labelsize=7)
            ax.set_xlim(-0.4 * step, fresh_x * 1.8)
            ax.set_title(f"{metric} | embeddings {emb}", fontsize=9)
            ax.set_ylabel(f"{metric} vs seed-mean test log loss", fontsize=8)
            if i == len(metrics) - 1:
                ax.set_xlabel("warm-up rows (steps x batch size; symlog)" if known
                              else "warm-up (% of the training split; rows unknown)", fontsize=8)
        axes[i][-1].legend(list(handles.values()), [h.get_label() for h in handles.values()], fontsize=7,
                           loc="center left", bbox_to_anchor=(1.02, 0.5), title="hollow diamond: fresh weights",
                           title_fontsize=7)
    paper = ", ".join(f"{v:.2f} at {k} %" for k, v in PAPER_MNIST_LOSS_SPEARMAN.items())
    fig.text(0.01, 0.005, f"Not measured here: the SiGeo paper's MNIST MLP study gives the loss term's Spearman "
                          f"{paper} of the training data.", fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=80)
    plt.close(fig)


def sigeo_terms_section(out: Path, cfg: BenchConfig, results: pd.DataFrame, warm: pd.DataFrame) -> list[str]:
    """The report's section "SiGeo terms against warm-up rows (the paper's study)" and its PNG
    (:data:`SIGEO_TERMS_PLOT`, drawn into ``out``); ``[]`` and no PNG without single-term ablation rows."""
    lines = term_lines(cfg, results)
    if not lines:
        return []
    abl = results[(results["kind"] == "sigeo_ablation") & (results["init"] == "inherit")]
    cols = warmup_rows(cfg, warm, abl["fraction"].astype(float).dropna().tolist())
    plot_sigeo_terms(out / SIGEO_TERMS_PLOT, lines, cols, results)
    known = not cols["rows"].isna().any()
    largest = "no warm-up was ablated (fresh weights only)"
    if len(cols):
        top = cols.iloc[-1]
        largest = (f"The largest warm-up here: {int(top['rows']):,} rows" if known
                   else f"The largest warm-up here: {100 * top['fraction']:g} % of the training split")
        largest += f" ({100 * top['fraction']:g} %)"
    ck, cs = _ceiling(results, "kendall"), _ceiling(results, "spearman")
    paper = ", ".join(f"{v:.2f} at {k} %" for k, v in PAPER_MNIST_LOSS_SPEARMAN.items())
    where = (f"steps in `warmup.csv` x `warmup.batch_size` {cfg.warmup.batch_size}: the loader drops the last "
             "partial batch, so this is a little under the fraction x the training split's rows"
             + ("; with `warmup.epochs` > 1 a row counts once per pass" if cfg.warmup.epochs > 1 else ""))
    return [
        "## SiGeo terms against warm-up rows (the paper's study)",
        "",
        "SiGeo's raw terms (the ablation above: l1 ZiCo, l2 Fisher-Rao, l3 minus the training loss), the "
        "paper's weights (1, 50, 1), the pipeline's `sigeo` entries, and `oneshot` and `params` as references, "
        "against the number of training rows the supernet's warm-up consumed (" + where + "). `fresh weights`: "
        "seeded fresh weights, no supernet (not a warm-up size). Cells: statistic [95 % percentile bootstrap "
        "interval over architectures] -- the intervals of `results.csv`. The noise ceiling quoted above: Kendall "
        f"{ck:.3f}, Spearman {cs:.3f} (the dashed line of the plot).",
        "",
        "Kendall:",
        "",
        _table(lines, cols, "kendall"),
        "",
        f"![SiGeo's terms against warm-up rows]({SIGEO_TERMS_PLOT})",
        "",
        "Spearman (the paper's statistic):",
        "",
        _table(lines, cols, "spearman"),
        "",
        "For reference only, not measured here: in the SiGeo paper's MNIST MLP study the training-loss term's "
        f"Spearman correlation with the test loss is {paper} of the training data; its RecSys runs warmed up on "
        f"1 % of Criteo, about 367k rows. {largest}.",
        "",
    ]
