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
from recnas.bench.sigeo_terms import sigeo_terms_section  # noqa: E402

__all__ = ["plot_rank_scatter", "plot_warmup_sweep", "plot_predictor_sweep", "write_report", "write_sweep",
           "REPORT_FILE", "SWEEP_REPORT_FILE", "SWEEP_PLOT"]

REPORT_FILE = "report.md"
SWEEP_REPORT_FILE = "sweep.md"
SWEEP_PLOT = "sweep_kendall.png"


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


def _shown_others(summary: pd.DataFrame, headline: float | None) -> pd.DataFrame:
    """The non-predictor rows of a sweep summary shown in its plot and table: fresh and weight-free
    estimators, and inherited weights at the ``headline`` warm-up only (all of them in the CSVs)."""
    o = summary[summary["kind"] != "predictor"]
    if headline is None:
        return o
    return o[(o["init"] != "inherit") | np.isclose(o["fraction"].astype(float), headline)]


def plot_predictor_sweep(summary: pd.DataFrame, metric: str = "kendall", headline: float | None = None,
                         ax: Axes | None = None) -> Axes:
    """Held-out ``metric`` against the training-set size: each predictor's mean over the splits as a
    solid line with the percentile range of the splits as a band; every other estimator (see
    :func:`_shown_others`) on the same held-out sets as a thin dotted line.

    Args:
        summary: :func:`recnas.bench.compare.sweep_summary`'s rows.
        headline: the warm-up fraction whose inherited-weight estimators are drawn (``None``: all).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(8.5, 4.8))
    sizes = sorted(summary["n_train"].unique())
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    preds = summary[summary["kind"] == "predictor"]
    for k, (name, g) in enumerate(preds.groupby("label", sort=False)):
        g = g.sort_values("n_train")
        c = colors[k % len(colors)]
        ax.plot(g["n_train"], g[f"{metric}_mean"], marker="o", lw=2.5, color=c, label=f"{name} (predictor)")
        ax.fill_between(g["n_train"], g[f"{metric}_lo"], g[f"{metric}_hi"], color=c, alpha=0.12)
    others = _shown_others(summary, headline)
    for k, (name, g) in enumerate(others.groupby("label", sort=False)):
        g = g.sort_values("n_train")
        ax.plot(g["n_train"], g[f"{metric}_mean"], ls=":", lw=1.2, marker=".",
                color=colors[(k + len(preds["label"].unique())) % len(colors)], label=name)
    ax.axhline(0.0, color="grey", lw=0.5)
    fr = dict(zip(summary["n_train"], summary["train_fraction"]))
    ax.set_xticks(sizes, [f"{int(s)}\n({100 * fr[s]:g}%)" for s in sizes])
    ax.set_xlabel("training architectures (fraction of the benchmark)")
    ax.set_ylabel(f"held-out {metric} (mean over splits)")
    ax.legend(fontsize=6, ncol=1, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return ax


def _label_cell(label: str) -> str:
    """``"name | context"`` (a score set's label) as ``"name (context)"``: no ``|`` inside a table cell."""
    name, _, ctx = str(label).partition(" | ")
    return f"{name} ({ctx})" if ctx else name


def _proxy_paragraph(cfg: BenchConfig, proxy_columns: list[str] | None) -> list[str]:
    """What the proxy-feature predictors (``uses_scores``) of ``cfg`` were given, when any was."""
    users = [e for e in cfg.estimators if e.needs_fit and getattr(e.estimator_class, "uses_scores", False)]
    if not users or not proxy_columns:
        return []
    est = [c for c in proxy_columns if not c.startswith("sigeo[")]
    terms = [c for c in proxy_columns if c.startswith("sigeo[")]
    which = "; ".join(f"`{e.display}`: {'proxies + one-hot encoding' if e.params.get('onehot', True) else 'proxies only'}"
                      + (f" (columns {list(e.params['proxies'])})" if e.params.get("proxies") else "") for e in users)
    return [
        f"Predictors on the zero-cost signals ({which}): gradient-boosted trees whose features are the "
        f"benchmark's own cached score vectors, read by architecture key: {len(est)} estimator columns (every "
        f"estimator in every context it was scored in, `params` and `flops` included) and {len(terms)} columns of "
        "SiGeo's three raw terms from the ablation. These scores are label-free (computed from the architecture and "
        "the training rows, never from a ground-truth result), so a held-out architecture's scores are read at "
        "prediction just as each zero-cost estimator's are when it is judged on the same held-out set; only the "
        "training architectures' targets are labels. The proxies-only model against the best single proxy asks "
        "whether the proxies carry complementary information (NAS-Bench-Suite-Zero's question).",
        "",
    ]


def _sweep_section(cfg: BenchConfig, summary: pd.DataFrame, n: int, k: int, png: str,
                   proxy_columns: list[str] | None = None) -> list[str]:
    """The markdown of the predictors' training-set-size sweep (tables and the plot's link)."""
    p = cfg.predictors
    headline = max(cfg.warmup.fractions)
    fracs = sorted(summary["train_fraction"].unique())
    size = dict(zip(summary["train_fraction"], summary["n_train"]))
    held = dict(zip(summary["train_fraction"], summary["n_test"]))
    preds = summary[summary["kind"] == "predictor"]
    others = _shown_others(summary, headline)
    order_key = others[others["train_fraction"] == fracs[-1]].sort_values("kendall_mean", ascending=False)["label"]

    def cell(g: pd.DataFrame, f: float, m: str) -> str:
        r = g[g["train_fraction"] == f]
        if r.empty:
            return "--"
        r = r.iloc[0]
        return f"{_f(r[m + '_mean'])} ± {_f(r[m + '_std'])} [{_f(r[m + '_lo'])}, {_f(r[m + '_hi'])}]"

    header = ["estimator", *[f"train {int(size[f])} ({100 * f:g} %), held out {int(held[f])}" for f in fracs]]
    rows = [[f"**{name}** (predictor)", *[cell(g, f, "kendall") for f in fracs]]
            for name, g in preds.groupby("label", sort=False)]
    rows += [[_label_cell(name), *[cell(others[others["label"] == name], f, "kendall") for f in fracs]]
             for name in order_key]
    detail = []
    for _, r in preds.iterrows():
        detail.append([
            str(r["label"]), f"{int(r['n_train'])} ({100 * r['train_fraction']:g} %)", _f(int(r["gt_runs"])),
            f"{_f(r['kendall_mean'])} [{_f(r['kendall_lo'])}, {_f(r['kendall_hi'])}]",
            f"{_f(r['spearman_mean'])} [{_f(r['spearman_lo'])}, {_f(r['spearman_hi'])}]",
            f"{_f(r['top_mean'])} [{_f(r['top_lo'])}, {_f(r['top_hi'])}]",
            _f(r["fit_seconds"], 4), _f(r["query_seconds"], 4),
            _label_cell(r["best_other"]) if isinstance(r["best_other"], str) and r["best_other"] else "--",
            _f(r["kendall_diff"]), _f(r["better_share"], 2),
        ])
    ref = preds["reference"].dropna() if "reference" in preds else pd.Series(dtype=str)
    ref = ref[ref != ""]
    ref_lines: list[str] = []
    if len(ref):
        ref_name = _label_cell(ref.iloc[0])


        def vs_ref(g: pd.DataFrame, f: float) -> str:
            r = g[g["train_fraction"] == f]
            if r.empty:
                return "--"
            return f"{_f(r.iloc[0]['reference_diff'])} ({_f(r.iloc[0]['reference_better_share'], 2)})"

        ref_rows = [[str(name), *[vs_ref(g, f) for f in fracs]] for name, g in preds.groupby("label", sort=False)]
        ref_lines = [
            f"Each predictor against `{ref_name}`, the simplest proxy, fixed beforehand (not picked after the fact): "
            f"mean held-out Kendall difference paired by split (share of splits on which the predictor ranks better); "
            f"negative = the predictor loses to counting parameters:",
            "",
            _md_table(["predictor", *[f"train {int(size[f])} ({100 * f:g} %)" for f in fracs]], ref_rows),
            "",
        ]
    k_top = [max(1, round(cfg.stats.top_frac * int(held[f]))) for f in fracs]
    lines = [
        "## Predictors: training-set-size sweep (held-out architectures)",
        "",
        f"A predictor is fitted on measured architectures, so it is never judged on all {n}: for each training "
        f"fraction, {p.splits} seeded random splits (`sklearn` `ShuffleSplit`, seed {p.seed}) of the {n} "
        f"architectures; on each, a fresh predictor is fitted on the training architectures (target: minus the "
        f"{k}-seed mean test log loss, so it consumes training-set size x {k} ground-truth runs) and ranks the "
        f"held-out ones. Every other estimator is judged on the same held-out sets (its scores restricted to "
        f"them; it consumes no ground-truth runs). Cells: mean ± std over the splits "
        f"[{100 * cfg.stats.alpha / 2:g}th, {100 * (1 - cfg.stats.alpha / 2):g}th percentile of the splits]; "
        f"top-{100 * cfg.stats.top_frac:g} % precision on the held-out set (k = {', '.join(map(str, k_top))}).",
        "",
        *([f"**Only {p.splits} splits per fraction: the protocol asks for at least 20.**", ""] if p.splits < 20 else []),
        *_proxy_paragraph(cfg, proxy_columns),
        f"Held-out Kendall (other estimators: fresh and weight-free, and inherited weights at the "
        f"{100 * headline:g} % warm-up; every warm-up is in `sweep.csv` and `sweep_summary.csv`):",
        "",
        _md_table(header, rows),
        "",
        f"![held-out Kendall vs training-set size]({png})",
        "",
        "Each predictor against the other estimator with the best mean held-out Kendall at that fraction "
        "(over every warm-up; picked after the fact, which favours it), paired by split:",
        "",
        _md_table(["predictor", "training archs", "ground-truth runs", "Kendall [range]", "Spearman [range]",
                   f"top-{100 * cfg.stats.top_frac:g}% [range]", "fit s", "predict s", "best other estimator",
                   "Kendall difference (mean)", "share of splits better"], detail),
        "",
        *ref_lines,
    ]
    return lines


def write_sweep(out: Path, cfg: BenchConfig, source: str, summary: pd.DataFrame, shape: tuple[int, int],
                truth_from: str, proxy_columns: list[str] | None = None) -> Path:
    """``sweep.md`` and ``sweep_kendall.png`` of a sweep run on its own (``recnas bench sweep``)."""
    n, k = shape
    out.mkdir(parents=True, exist_ok=True)
    _save_sweep_plot(out, cfg, summary, n, k)
    lines = [
        f"# Predictors sweep: `{source}`",
        "",
        f"Ground truth and the other estimators' score vectors: `{truth_from}` ({n} architectures of "
        f"`{cfg.space}`, sample seed {cfg.sample_seed}, test log loss of seeds {list(cfg.train.seeds)}). "
        "Per-split rows: `sweep.csv`; the summary: `sweep_summary.csv`.",
        "",
        *_sweep_section(cfg, summary, n, k, SWEEP_PLOT, proxy_columns),
    ]
    path = out / SWEEP_REPORT_FILE
    path.write_text("\n".join(lines))
    return path


def _regret_section(out: Path, sub: str = "regret") -> list[str]:
    """The regret curves of ``recnas bench regret`` when ``out/sub`` holds them: the command (from
    its ``regret.md``), the table against ground-truth queries and links to the plots; else nothing."""
    from recnas.bench.regret import MD_FILE, PLOTS, SUMMARY_FILE, query_table

    d = out / sub
    if not (d / SUMMARY_FILE).is_file():
        return []
    summary = pd.read_csv(d / SUMMARY_FILE)
    made = ""
    if (d / MD_FILE).is_file():
        made = next((x for x in (d / MD_FILE).read_text().splitlines() if x.startswith("Command:")), "")
    return [
        "## Search strategies: regret curves (tabular simulation over these architectures)",
        "",
        f"Written by `recnas bench regret` into `{sub}/`. {made} Every setting, the seconds axis and the runs are in "
        f"[`{sub}/{MD_FILE}`]({sub}/{MD_FILE}). Each search may only pick among the benchmark's architectures, "
        "answered with their seed-mean test log loss. Regret = best test log loss found so far minus the table's "
        "best, x1e-3; mean [95 % t-interval over the repeats, clipped at 0]; 'found' = share of repeats that "
        "found the table's best.",
        "",
        *query_table(summary),
        "",
        f"![regret against queries]({sub}/{PLOTS[0]})",
        "",
        f"![regret against seconds]({sub}/{PLOTS[1]})",
        "",
    ]


def _save_sweep_plot(out: Path, cfg: BenchConfig, summary: pd.DataFrame, n: int, k: int) -> None:
    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    plot_predictor_sweep(summary, "kendall", headline=max(cfg.warmup.fractions), ax=ax)
    ax.set_title(f"held-out Kendall vs training-set size ({n} architectures, truth = mean of {k} seeds, "
                 f"{cfg.predictors.splits} splits)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / SWEEP_PLOT, dpi=80)
    plt.close(fig)


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


def _split_section(cfg: BenchConfig, results: pd.DataFrame, facts: dict[str, Any] | None) -> list[str]:
    """The split supernet's rows (kind ``split``) beside the same estimators on the single supernet
    of the same warm-up, with each fraction's compute parity and what was split; nothing without them."""
    rows = results[results["kind"] == "split"]
    if rows.empty:
        return []
    from recnas.config import to_dict
    from recnas.lid.bench import parity

    settings = (facts or {}).get("settings") or (to_dict(cfg.split) if cfg.split is not None else {})
    method, levels = settings.get("method", "?"), settings.get("levels", "?")
    est = results[(results["kind"] == "estimator") & (results["init"] == "inherit")]
    lines = [
        f"## Split supernet ({method} split, {levels} level(s)) beside the single supernet",
        "",
        f"Every estimator that reads inherited weights, scored through the sub-supernet that holds each "
        f"architecture (`recnas.lid.bench.split_for_fraction`, split settings `{settings}`), beside the same "
        "estimator on the single supernet of the same warm-up fraction. Same statistics as above. Compute parity "
        "per warm-up (training steps of the split run = parent warm-up + fine-tuning = the single supernet's; "
        "the split's measurement passes come on top):",
        "",
    ]
    for f in (facts or {}).get("fractions", []):
        lines.append(f"- warm-up {100 * f['fraction']:g} %: {parity(f)}; measured in {_f(f['measure_seconds'], 1)} s, "
                     f"fine-tuned in {_f(f['finetune_seconds'], 1)} s")
        for x in f.get("splits", []):
            lines.append(f"  - level {x['level']}: split {x['choice']} into {x['groups'][0]} | {x['groups'][1]} "
                         f"(score {x['score']:.4f})")
    if not (facts or {}).get("fractions"):
        lines.append("- (the split's facts, `split_warmup.json`, are not in this folder)")
    table = []
    for (name, frac), g in rows.groupby(["estimator", "fraction"], sort=False):
        single = est[(est["estimator"] == name) & np.isclose(est["fraction"].astype(float), frac)]
        for what, r in [("single", x) for _, x in single.iterrows()] + [(f"{method} split L{levels}", x)
                                                                       for _, x in g.iterrows()]:
            table.append([str(name), f"{100 * frac:g}%", what, _ci(r, "kendall"), _ci(r, "spearman"), _ci(r, "top"),
                          _f(r["seconds_per_arch"], 3), str(int(r.get("failed", 0)))])
    lines += ["", _md_table(["estimator", "warm-up", "supernet", "Kendall [95% CI]", "Spearman [95% CI]",
                             "top-10% precision [95% CI]", "s / arch", "failed"], table), ""]
    return lines


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
                 warm: pd.DataFrame, sweep_summary: pd.DataFrame | None = None,
                 proxy_columns: list[str] | None = None, sweep_png: str | None = None,
                 split_facts: dict[str, Any] | None = None) -> Path:
    """Writes ``report.md`` and the PNGs into ``out``; returns the report's path.

    ``sweep_summary`` (:func:`recnas.bench.compare.sweep_summary`), when the pipeline has predictor
    entries, adds the training-set-size sweep section and its plot (drawn into ``out``, unless
    ``sweep_png`` names an existing one, relative to ``out``); predictors are not in ``results``
    (the main tables), which point to that section. ``proxy_columns``: the score columns handed to
    the proxy-feature predictors, described in that section. When ``out/regret/`` holds the output
    of ``recnas bench regret``, its table against queries and its plots are added too. Rows of kind
    ``split`` (a pipeline's ``split:`` section) get a section of their own, with the compute parity
    of ``split_facts`` (``split_warmup.json``). With SiGeo ablation rows, the section "SiGeo terms
    against warm-up rows" and ``sigeo_terms_warmup.png`` (:mod:`recnas.bench.sigeo_terms`) follow the
    ablation tables.
    """
    n, k = truth.shape
    est = results[results["kind"] == "estimator"]
    pred_names = [] if sweep_summary is None else list(
        sweep_summary.loc[sweep_summary["kind"] == "predictor", "label"].unique())
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
        *([f"Not in this table: the predictors ({', '.join(f'`{x}`' for x in pred_names)}). They are fitted on "
           f"measured architectures, so they are judged on held-out architectures only: see "
           f"\"Predictors: training-set-size sweep\" below.", ""] if pred_names else []),
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
    lines += sigeo_terms_section(out, cfg, results, warm)
    lines += [
        "## Every row at every warm-up",
        "",
        "All numbers (with intervals) are in `results.csv`; per-architecture scores in `scores.csv`.",
        "",
        _results_table(est),
        "",
    ]
    lines += _split_section(cfg, results, split_facts)
    if sweep_summary is not None:
        if sweep_png is None:
            _save_sweep_plot(out, cfg, sweep_summary, n, k)
        lines += _sweep_section(cfg, sweep_summary, n, k, sweep_png or SWEEP_PLOT, proxy_columns)
    lines += _regret_section(out)
    path = out / REPORT_FILE
    path.write_text("\n".join(lines))
    return path
