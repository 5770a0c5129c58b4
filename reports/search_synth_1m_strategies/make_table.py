"""Builds table.csv and prints the markdown tables of reports/search_synth_1m_strategies/NOTES.md.

    python reports/search_synth_1m_strategies/make_table.py

Main table (one training path for every model: benchmarks/peers.py, i.e. recnas.export.train_export /
train_baseline with ProdTrainConfig(epochs 1, batch 512, seed 0, dense lr 0.005, table lr 0.12,
fraction 199,680 / 799,559 = exactly the first 199,680 training rows), full valid/test splits):
- evolution + SiGeo: the seed-0 rows of ../search_synth_1m_v2/synth1m_f025_searched.csv (the other run);
- WeakNAS, BONAS, EmProx-guided evolution: searched_peers_s0.csv (their exports, the same call);
- DLRM, DeepFM-like, DCN-v2-like: baselines_f025_s0.csv (DLRM equals the other run's seed-0 row bit for bit).
Second table: the pipeline's own final stage (<strategy>/final.csv, fraction 0.25 = the first 199,890 rows,
shuffled, 390 whole batches), which is another draw of the same recipe.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
V2 = HERE.parent / "search_synth_1m_v2"
STRATEGIES = [("weaknas", "WeakNAS (mlp predictor)"), ("bonas", "BONAS"), ("emprox", "EmProx-guided evolution")]


def search_stats(report: Path) -> dict[str, str]:
    text = report.read_text()
    pats = {"candidates": r"candidates in the journal: (\d+)", "scored": r"\((\d+) scored",
            "estimator_s": r"estimator time: ([\d.]+) s in all", "search_s": r"search loop of the last invocation ([\d.]+) s",
            "best_score": r"best finite score ([\d.eE+-]+)"}
    return {k: (m.group(1) if (m := re.search(p, text)) else "") for k, p in pats.items()}


def summary(name: str, searched: pd.DataFrame, stats: dict[str, str]) -> dict[str, object]:
    """``searched`` in export order (#1 = best SiGeo score)."""
    first = searched.iloc[0]
    top = searched.sort_values("test_logloss").iloc[0]
    return {
        "strategy": name,
        "#1 test logloss": f"{first.test_logloss:.5f}", "#1 test AUC": f"{first.test_auc:.4f}",
        "best of 3 test logloss": f"{top.test_logloss:.5f}", "best of 3 test AUC": f"{top.test_auc:.4f}",
        "mean of 3 test logloss": f"{searched.test_logloss.mean():.5f}", "mean of 3 test AUC": f"{searched.test_auc.mean():.4f}",
        "best SiGeo score": stats["best_score"], "candidates scored": stats["scored"],
        "search loop s": stats["search_s"], "of which SiGeo s": stats["estimator_s"],
    }


def markdown(df: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in df.itertuples(index=False)]
    return "\n".join(lines)


main, stage = [], []
v2 = pd.read_csv(V2 / "synth1m_f025_searched.csv")
main.append(summary("evolution (runs/search_synth_1m_v2)", v2[v2.seed == 0].reset_index(drop=True), search_stats(V2 / "report.md")))
peers = pd.read_csv(HERE / "searched_peers_s0.csv")
for key, label in STRATEGIES:
    stats = search_stats(HERE / key / "report.md")
    main.append(summary(label, peers[peers.model.str.startswith(f"recnas {key} ")].reset_index(drop=True), stats))
    f = pd.read_csv(HERE / key / "final.csv")
    stage.append(summary(label, f[f.kind == "search"].reset_index(drop=True), stats))
t = pd.DataFrame(main)
t.to_csv(HERE / "table.csv", index=False)
print(markdown(t))
print()
bl = pd.read_csv(HERE / "baselines_f025_s0.csv")
lib = pd.read_csv(V2 / "synth1m_f025_baselines.csv")
bl = pd.concat([bl, lib[(lib.seed == 0) & lib.name.isin(["deepfm_lib", "dcn_lib"])]])
bl = bl[["model", "test_logloss", "test_auc", "val_logloss", "val_auc"]].copy()
for c in bl.columns[1:]:
    bl[c] = bl[c].map(("{:.5f}" if "logloss" in c else "{:.4f}").format)
print(markdown(bl))
print()
print(markdown(pd.DataFrame(stage)[["strategy", "#1 test logloss", "#1 test AUC", "best of 3 test logloss",
                                     "mean of 3 test logloss", "mean of 3 test AUC"]]))
