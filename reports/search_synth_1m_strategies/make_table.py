"""Builds table.csv / table.md of reports/search_synth_1m_strategies from the copied runs.

    python reports/search_synth_1m_strategies/make_table.py

Reads <strategy>/final.csv and <strategy>/report.md for each new strategy, and, for evolution + SiGeo
and the baselines, the seed-0 rows of reports/search_synth_1m_v2/synth1m_f025_{searched,baselines}.csv
(benchmarks/peers.py: the same train_export / train_baseline calls and ProdTrainConfig as the
pipeline's final stage, 1 epoch on 25 % of the training rows, batch 512, dense lr 0.005, table lr
0.12, seed 0). Baseline rows of the strategies' own final.csv (if any) are used as they are.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
V2 = HERE.parent / "search_synth_1m_v2"
STRATEGIES = [("weaknas", "WeakNAS (mlp)"), ("bonas", "BONAS"), ("emprox", "EmProx-guided evolution")]


def search_stats(report: Path) -> dict[str, str]:
    text = report.read_text()
    out = {}
    m = re.search(r"candidates in the journal: (\d+) \((\d+) scored", text)
    if m:
        out["candidates"], out["scored"] = m.group(1), m.group(2)
    m = re.search(r"estimator time: ([\d.]+) s in all", text)
    if m:
        out["estimator_s"] = m.group(1)
    m = re.search(r"search loop of the last invocation ([\d.]+) s", text)
    if m:
        out["search_s"] = m.group(1)
    m = re.search(r"best finite score ([\d.eE+-]+)", text)
    if m:
        out["best_score"] = m.group(1)
    return out


def row(name: str, searched: pd.DataFrame, stats: dict[str, str]) -> dict[str, object]:
    best = searched.iloc[0]  # searched #1 = the best proxy score
    top = searched.sort_values("test_logloss").iloc[0]
    return {
        "strategy": name,
        "searched #1 test logloss": round(best.test_logloss, 5), "searched #1 test AUC": round(best.test_auc, 4),
        "best of 3 test logloss": round(top.test_logloss, 5), "best of 3 test AUC": round(top.test_auc, 4),
        "mean of 3 test logloss": round(searched.test_logloss.mean(), 5),
        "mean of 3 test AUC": round(searched.test_auc.mean(), 4),
        "best SiGeo score": stats.get("best_score", ""), "candidates scored": stats.get("scored", ""),
        "search s": stats.get("search_s", ""), "estimator s": stats.get("estimator_s", ""),
    }


def markdown(df: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in df.itertuples(index=False)]
    return "\n".join(lines)


rows = []
v2 = pd.read_csv(V2 / "synth1m_f025_searched.csv")
v2 = v2[v2.seed == 0].reset_index(drop=True)
rows.append(row("evolution (other run, v2)", v2, search_stats(V2 / "report.md")))
baselines = []
for key, label in STRATEGIES:
    d = HERE / key
    if not (d / "final.csv").exists():
        continue
    f = pd.read_csv(d / "final.csv")
    rows.append(row(label, f[f.kind == "search"].reset_index(drop=True), search_stats(d / "report.md")))
    for _, b in f[f.kind == "baseline"].iterrows():
        baselines.append({"model": b.model, "test_logloss": round(b.test_logloss, 5), "test_auc": round(b.test_auc, 4),
                          "source": f"{key}/final.csv"})
bl = pd.read_csv(V2 / "synth1m_f025_baselines.csv")
for _, b in bl[bl.seed == 0].iterrows():
    baselines.append({"model": b.model, "test_logloss": round(b.test_logloss, 5), "test_auc": round(b.test_auc, 4),
                      "source": "../search_synth_1m_v2/synth1m_f025_baselines.csv (seed 0)"})
extra = HERE / "baselines_deepfm_dcnv2.csv"
if extra.exists():
    for _, b in pd.read_csv(extra).iterrows():
        baselines.append({"model": b.model, "test_logloss": round(b.test_logloss, 5), "test_auc": round(b.test_auc, 4),
                          "source": "baselines_deepfm_dcnv2.csv"})
t = pd.DataFrame(rows)
t.to_csv(HERE / "table.csv", index=False)
pd.DataFrame(baselines).to_csv(HERE / "baselines.csv", index=False)
print(markdown(t))
print()
print(markdown(pd.DataFrame(baselines)))
