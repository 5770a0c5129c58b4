"""`recnas demo` end to end as a real subprocess, at even smaller settings than pipelines/demo.yaml."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

from recnas.search.runner import read_journal

REPO = Path(__file__).resolve().parents[1]


def test_demo_smoke(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    out = tmp_path / "demo"
    # a run folder left by other settings (e.g. an older recnas): the demo keeps it aside and runs
    out.mkdir()
    (out / "journal.jsonl").write_text(json.dumps({"type": "header", "version": 1, "config": {"old": 1}}) + "\n")
    sets = [
        f"data.cache={tmp_path / 'cache'}", "data.synth_rows=3000", "data.hash_size=500",
        "space=tiny", "supernet.batch_size=128", "supernet.max_steps=6",
        "estimator.batches=2", "estimator.batch_size=128",
        "search.budget=12", "search.population=6", "search.sample=3", "search.children=3",
        "final.batch_size=256", "final.seeds=[0, 1]",  # (one seed: tests/test_search_pipeline.py)
    ]
    cmd = [sys.executable, "-m", "recnas", "demo", "--out", str(out), "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=400)
    assert r.returncode == 0, r.stderr[-4000:]
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("demo.old-")]
    assert len(kept) == 1 and "moved it to" in r.stderr
    assert json.loads((kept[0] / "journal.jsonl").read_text())["config"] == {"old": 1}

    # The printed comparison: the searched model and DLRM over 2 seeds (mean ± sd), the searched one
    # against DLRM paired by seed.
    lines = r.stdout.splitlines()
    assert any(line.startswith("best architecture:") for line in lines)
    table = [line for line in lines if line.startswith("searched #1") or line.startswith("dlrm")]
    assert len(table) == 2 and all("±" in line for line in table), r.stdout
    assert any("vs dlrm" in line for line in lines) and "(p " in table[0], r.stdout

    rows = list(csv.DictReader(open(out / "final.csv")))
    assert [(row["kind"], row["seed"]) for row in rows] == [("search", "0"), ("search", "1"),
                                                            ("baseline", "0"), ("baseline", "1")]
    assert rows[2]["model"] == "dlrm" and rows[0]["test_logloss"] != rows[1]["test_logloss"]
    for row in rows:
        assert 0 < float(row["test_logloss"]) < 2 and 0 <= float(row["test_auc"]) <= 1
        assert row["status"] == "completed" and int(row["steps"]) > 0
    # The exported best architecture is the search's best, and it is what was trained.
    index = json.loads((out / "export" / "index.json").read_text())
    journal = read_journal(out)  # the search's view of the run's trial store
    assert [t["index"] for t in journal] == list(range(12))
    best = max((t for t in journal if math.isfinite(t["score"])), key=lambda t: t["score"])
    assert index["exports"][0]["key"] == best["key"]
    assert best["key"] in rows[0]["model"]
    report = (out / "report.md").read_text()
    assert "Production training: searched vs baselines" in report and "seeds 0, 1)" in report
    assert "| vs dlrm (paired p) |" in report
