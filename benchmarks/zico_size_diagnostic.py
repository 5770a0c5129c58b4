"""Is SiGeo's ZiCo term a model-size count? A diagnostic over a finished benchmark comparison.

ZiCo (and SiGeo's l1 term) is a *sum* over parameter tensors of ``log(sum_w mean|g_w| / std g_w)``,
so every extra tensor adds a term of roughly the same size. This script reads a comparison's
``scores.csv`` and ``archs.jsonl`` (a ``recnas bench compare`` output folder), counts each
architecture's dense parameter tensors, and prints Kendall's tau of

- the ZiCo term with the tensor count and with the parameter count (how much of it is size);
- the ZiCo term, its per-tensor mean (sum / count) and the size counts with the ground truth
  (negated mean test log loss: higher is better, as in the report).

    .venv/bin/python benchmarks/zico_size_diagnostic.py runs/bench_synth

It is a diagnostic over a finished run, not a speed benchmark, so ``make bench`` (which runs
``benchmarks/bench_*.py``) does not run it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a bench output folder (scores.csv, archs.jsonl, build.json)")
    args = ap.parse_args()
    missing = [f for f in ("scores.csv", "archs.jsonl", "build.json") if not (args.run / f).is_file()]
    if missing:
        ap.error(f"{args.run} is not a finished bench comparison folder (missing {', '.join(missing)})")

    import torch

    from recnas.data.loader import load_prepared
    from recnas.models import CTRModel
    from recnas.space.spec import ArchSpec

    scores = pd.read_csv(args.run / "scores.csv")
    specs = [ArchSpec.from_json(line) for line in (args.run / "archs.jsonl").read_text().splitlines()]
    data = json.loads((args.run / "build.json").read_text())["data"]
    # the feature map only fixes input widths: any prepared copy of the build's data will do
    if data.get("prepared"):
        fm_dir = Path(data["prepared"])
    else:
        found = [p for p in sorted(Path("data/cache").glob(f"{data['name']}-*")) if (p / "feature_map.json").exists()]
        if not found:
            raise SystemExit(f"no prepared data/cache/{data['name']}-* (run from the repository root)")
        fm_dir = found[0]
    fm, _ = load_prepared(fm_dir)
    tensors, params = [], []
    for i in scores["arch"]:
        m = CTRModel(fm, specs[int(i)], device=torch.device("meta"))
        dense = [p for n, p in m.named_parameters() if "embedding_bags" not in n]
        tensors.append(len(dense))
        params.append(sum(p.numel() for p in dense))
    tensors, params = np.array(tensors, float), np.array(params, float)
    truth = -scores["test_logloss_mean"].to_numpy()

    def tau(a, b) -> str:
        return f"{kendalltau(a, b)[0]:+.3f}"

    print(f"{args.run}: {len(scores)} architectures; dense tensors {int(tensors.min())}-{int(tensors.max())}")
    print(f"  size vs truth:  tensors {tau(tensors, truth)}  params {tau(params, truth)}")
    cols = [c for c in scores.columns if c.startswith("sigeo[l1 (ZiCo); emb=none]")]
    print(f"  {'ZiCo term (l1)':<44}{'vs tensors':>11}{'vs params':>10}{'vs truth':>10}{'per-tensor mean vs truth':>26}")
    for c in cols:
        z = scores[c].to_numpy()
        ok = np.isfinite(z)
        print(f"  {c:<44}{tau(z[ok], tensors[ok]):>11}{tau(z[ok], params[ok]):>10}{tau(z[ok], truth[ok]):>10}"
              f"{tau(z[ok] / tensors[ok], truth[ok]):>26}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
