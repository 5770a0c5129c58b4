"""The search report: ``report.md``, ``results.csv``, ``top_k.csv`` and PNG plots in the run folder.

- ``results.csv``: one row per journal record (index, key, score, best score so far, estimator
  seconds, cached, dense parameters, parameters with tables, FLOPs per example, spec JSON).
- ``top_k.csv``: the ``top_k`` best distinct architectures, best first.
- ``score_distribution.png`` (histogram of the scores), ``best_so_far.png`` (best score against
  candidates scored), ``top_k.png`` (the top-k table).
- ``report.md``: the settings, the counts and timings, the top-k table, and -- with retraining --
  the retrained log loss / AUC beside the scores and their rank correlation, and -- with
  ``final.top > 0`` -- the production-trained searched models beside the baselines.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from recnas.search.config import PipelineConfig
from recnas.space import ArchSpec, SearchSpace

__all__ = ["write_report", "architecture_size", "plot_score_distribution", "plot_best_so_far"]


def architecture_size(fm: Any, spec_dict: dict[str, Any]) -> tuple[int, int, int]:
    """``(dense parameters, parameters with tables, FLOPs per example)`` of an architecture,
    counted on a ``meta``-device ``CTRModel`` (no memory allocated)."""
    import torch

    from recnas.models import CTRModel
    from recnas.space import ArchSpec

    model = CTRModel(fm, ArchSpec.from_dict(spec_dict), device=torch.device("meta"))
    return model.num_params(include_embeddings=False), model.num_params(), model.flops_per_example()


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def plot_score_distribution(scores: np.ndarray, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    finite = scores[np.isfinite(scores)]
    ax.hist(finite, bins=min(50, max(5, len(finite) // 4)), color="#4c72b0", edgecolor="white")
    ax.set_xlabel("estimator score (higher = predicted lower log loss)")
    ax.set_ylabel("candidates")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_best_so_far(scores: np.ndarray, path: Path, title: str, population: int | None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = np.where(np.isfinite(scores), scores, -np.inf)
    best = np.maximum.accumulate(s) if len(s) else s
    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.arange(1, len(s) + 1)
    ax.scatter(x, np.where(np.isfinite(s), s, np.nan), s=6, alpha=0.35, color="#999999", label="candidate")
    ax.plot(x, np.where(np.isfinite(best), best, np.nan), color="#c44e52", lw=2, label="best so far")
    if population and population < len(s):
        ax.axvline(population, color="#4c72b0", ls="--", lw=1, label="end of initial population")
    ax.set_xlabel("candidates scored")
    ax.set_ylabel("estimator score")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_table(header: list[str], rows: list[list[str]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.3 * len(header) + 1, 0.32 * len(rows) + 1.0))
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=header, loc="center", cellLoc="right")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.2)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3:
        return math.nan
    return float(spearmanr(a, b).statistic)


def write_report(run_dir: Path, cfg: PipelineConfig, fm: Any, trials: list[dict[str, Any]],
                 retrained: list[dict[str, Any]], search_seconds: float,
                 final: list[dict[str, Any]] | None = None) -> list[Path]:
    """Writes the report files into ``run_dir``; returns their paths (``report.md`` first)."""
    from recnas.search.runner import scores_array, top_trials

    scores = scores_array(trials)
    from recnas.models.layout import functional_key

    sizes: dict[str, tuple[int, int, int]] = {}
    models: set[str] = set()  # functional keys: the distinct models the distinct architectures build
    for t in trials:
        if t["key"] not in sizes:
            sizes[t["key"]] = architecture_size(fm, t["spec"])
            models.add(functional_key(ArchSpec.from_dict(t["spec"])))

    best = -math.inf
    with open(run_dir / "results.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", "key", "score", "best_so_far", "seconds", "cached",
                    "dense_params", "params", "flops", "spec"])
        for t, s in zip(trials, scores):
            best = max(best, s) if math.isfinite(s) else best
            dp, p, f = sizes[t["key"]]
            w.writerow([t["index"], t["key"], repr(float(s)), repr(float(best)), f"{t['seconds']:.4f}",
                        int(t["cached"]), dp, p, f, json.dumps(t["spec"], sort_keys=True)])

    top = top_trials(trials, cfg.top_k)
    rt = {r["key"]: r for r in retrained}
    header = ["rank", "index", "key", "score", "dense params", "params", "FLOPs"]
    if retrained:
        header += ["retrain test logloss", "retrain test AUC"]
    rows = []
    for i, t in enumerate(top, start=1):
        dp, p, f = sizes[t["key"]]
        row = [str(i), str(t["index"]), t["key"], _fmt(float(t["score"]), 4), f"{dp:,}", f"{p:,}", f"{f:,}"]
        if retrained:
            r = rt.get(t["key"])
            row += [_fmt(r["test_logloss"]) if r else "", _fmt(r["test_auc"]) if r else ""]
        rows.append(row)
    with open(run_dir / "top_k.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["rank", "index", "key", "score", "dense_params", "params", "flops", "spec"])
        for i, t in enumerate(top, start=1):
            dp, p, f = sizes[t["key"]]
            w.writerow([i, t["index"], t["key"], repr(float(t["score"])), dp, p, f,
                        json.dumps(t["spec"], sort_keys=True)])

    space = Path(cfg.space).stem if cfg.space.endswith((".yaml", ".yml")) else cfg.space
    title = f"{space} / {cfg.estimator.name} / {cfg.search.strategy}"
    pngs = [
        plot_score_distribution(scores, run_dir / "score_distribution.png", f"score distribution ({title})"),
        plot_best_so_far(scores, run_dir / "best_so_far.png", f"best score so far ({title})",
                         getattr(cfg.search.make(SearchSpace.load(cfg.space)), "population", None)),
        plot_table(header, rows, run_dir / "top_k.png", f"top {len(top)} ({title})"),
    ]

    n_cached = sum(1 for t in trials if t["cached"])
    est_s = [t["seconds"] for t in trials if not t["cached"]]
    lines = [
        f"# Search report: {run_dir.name}",
        "",
        f"- space: `{cfg.space}`; estimator: `{cfg.estimator.name}` {json.dumps(cfg.estimator.params)} "
        f"(init {cfg.estimator.init}, {cfg.estimator.batches} x {cfg.estimator.batch_size} scoring rows)",
        f"- strategy: `{cfg.search.strategy}` {json.dumps(cfg.search.params, sort_keys=True)} (seed {cfg.search.seed}); "
        f"budget {cfg.search.budget}",
        f"- supernet warm-up: fraction {cfg.supernet.fraction} of the training rows, batch {cfg.supernet.batch_size}, "
        f"lr {cfg.supernet.lr}" + (f", reused from `{cfg.supernet.reuse}`" if cfg.supernet.reuse else ""),
        f"- candidates in the journal: {len(trials)} ({len(trials) - n_cached} scored, {n_cached} repeats taken "
        f"from the cache, {len(sizes)} distinct architectures building {len(models)} distinct models: the others differ "
        "from one of them only in choices that do not reach the output)",
        f"- estimator time: {sum(est_s):.1f} s in all, {np.mean(est_s) if est_s else 0:.3f} s per candidate; "
        f"search loop of the last invocation {search_seconds:.1f} s",
        f"- best finite score {_fmt(float(scores[np.isfinite(scores)].max()) if np.isfinite(scores).any() else math.nan)}; "
        f"{int((~np.isfinite(scores)).sum())} candidate(s) with a non-finite score (ranked last: "
        f"{', '.join(sorted({repr(float(x)) for x in scores[~np.isfinite(scores)]})) or '-'})",
        "",
        f"## Top {len(top)} (distinct architectures, best score first)",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        "Params count the dense part and, in `params`, the embedding tables too; FLOPs are per example "
        "(2 x multiply-adds). Full rows: `results.csv`, `top_k.csv` (with the spec JSON).",
        "",
    ]
    if retrained:
        rho = _spearman([r["score"] for r in retrained], [-r["test_logloss"] for r in retrained])
        lines += [
            f"## Retrained from scratch (top {len(retrained)})",
            "",
            "| rank | key | score | val logloss | val AUC | test logloss | test AUC | steps |",
            "|---|---|---|---|---|---|---|---|",
            *(f"| {r['rank']} | {r['key']} | {_fmt(float(r['score']))} | {_fmt(r['val_logloss'])} | "
              f"{_fmt(r['val_auc'])} | {_fmt(r['test_logloss'])} | {_fmt(r['test_auc'])} | {r['steps']} |"
              for r in retrained),
            "",
            f"Spearman rank correlation of the score with -test log loss over these {len(retrained)}: "
            f"{_fmt(rho, 3)} (few architectures: a rough check of the order, not a benchmark).",
            "",
        ]
    from recnas.search.final import count_str, mean_sd_str, paired_str, status_suffix, summarize_final

    if final and cfg.final.seeds:
        summary = summarize_final(final)
        ref = summary[0]["reference"] if summary else ""

        def line(r: dict[str, Any]) -> str:
            name = r["model"] + (f" ({r['diverged']} diverged)" if r["diverged"] else "")
            if not r["seeds"]:
                return f"| {name} | 0 | | | | | | - | - |"
            return (f"| {name} | {r['seeds']} | {mean_sd_str(r, 'test_logloss', 5)} | {mean_sd_str(r, 'test_auc', 4)} | "
                    f"{mean_sd_str(r, 'val_logloss', 5)} | {mean_sd_str(r, 'val_auc', 4)} | {paired_str(r)} | "
                    f"{count_str(r['params'])} | {r['steps']} |")

        lines += [
            f"## Production training: searched vs baselines ({cfg.final.epochs} epoch(s), batch "
            f"{cfg.final.batch_size}, init {cfg.final.init}, same trainer and data; seeds "
            f"{', '.join(map(str, cfg.final.seeds))})",
            "",
            f"Mean ± sample sd over the seeds; `vs {ref}`: the mean paired difference of the test log loss "
            "over the seeds both completed (negative = better than it) and the paired t-test's p. One row "
            "per run: `final.csv`.",
            "",
            f"| model | seeds | test logloss | test AUC | val logloss | val AUC | vs {ref} (paired p) | params | steps |",
            "|---|---|---|---|---|---|---|---|---|",
            *(line(r) for r in summary),
            "",
        ]
    elif final:
        lines += [
            f"## Production training: searched vs baselines ({cfg.final.epochs} epoch(s), batch "
            f"{cfg.final.batch_size}, init {cfg.final.init}, same trainer and data)",
            "",
            "| model | test logloss | test AUC | val logloss | val AUC | params | FLOPs/example | steps |",
            "|---|---|---|---|---|---|---|---|",
            *(f"| {r['model']}{status_suffix(r)} | {_fmt(r['test_logloss'], 5)} | {_fmt(r['test_auc'])} | "
              f"{_fmt(r['val_logloss'], 5)} | {_fmt(r['val_auc'])} | {count_str(r['params'])} | "
              f"{count_str(r['flops_per_example'])} | {r['steps']} |"
              for r in final),
            "",
        ]
    lines += ["## Plots", "", "![score distribution](score_distribution.png)", "",
              "![best so far](best_so_far.png)", "", "![top k](top_k.png)", ""]
    report = run_dir / "report.md"
    report.write_text("\n".join(lines))
    return [report, run_dir / "results.csv", run_dir / "top_k.csv", *pngs]
