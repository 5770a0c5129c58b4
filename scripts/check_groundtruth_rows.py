"""Retrains ground-truth rows of a committed benchmark through the search's train-from-scratch
oracle (``recnas.study.evaluators.TrainEvaluator``) and checks them against the committed table.

The bench build and the oracle share one from-scratch path (``recnas.train.scratch``), so a row and
an oracle query of the same recipe and seed must agree bit for bit. Run from the repository root,
one thread, denormals flushed as the ``recnas`` CLI does:

    OMP_NUM_THREADS=1 python scripts/check_groundtruth_rows.py pipelines/bench_synth.yaml \
        reports/bench_synth --archs 0 1 --seeds 0 1

Exit 0 when every checked row matches exactly; 1 otherwise (the differing values are printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pipeline", type=Path)
    ap.add_argument("report", type=Path, help="a reports/ folder holding groundtruth.csv")
    ap.add_argument("--archs", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args()

    import pandas as pd
    import torch

    from recnas.bench.config import load_bench
    from recnas.bench.groundtruth import sample_archs
    from recnas.data.loader import load_prepared
    from recnas.pipeline import resolve_data
    from recnas.space import SearchSpace
    from recnas.study.evaluators import TrainEvaluator
    from recnas.train.scratch import TrainRecipe

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    cfg = load_bench(args.pipeline)
    table = pd.read_csv(args.report / "groundtruth.csv")
    specs = sample_archs(SearchSpace.load(cfg.space), cfg.num_archs, cfg.sample_seed)
    data_dir = Path(resolve_data(cfg.data, progress=False)).resolve()
    fm, splits = load_prepared(data_dir)
    recipe = TrainRecipe(**{f.name: getattr(cfg.train, f.name) for f in dataclasses.fields(TrainRecipe)} | {"validate": True})
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            ev = TrainEvaluator(recipe, seed, data_dir, fm, splits, Path(tmp), data_identity=cfg.data.identity())
            for i in args.archs:
                m = ev.evaluate([specs[i]])[0]
                row = table[(table["arch"] == i) & (table["seed"] == seed)].iloc[0]
                cols = ["test_logloss", "test_auc"] + (["val_logloss", "val_auc"] if pd.notna(row["val_logloss"]) else [])
                diff = {c: (float(row[c]), m.values[c]) for c in cols if float(row[c]) != m.values[c]}
                bad += bool(diff)
                print(f"arch {i} seed {seed}: {'identical' if not diff else f'DIFFERS {diff}'} "
                      f"(test log loss {m.values['test_logloss']!r}; {m.seconds:.1f} s, {ev.train_runs} run(s))")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
