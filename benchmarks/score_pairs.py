"""Paired Kendall differences between any two score columns of finished ``recnas bench compare`` folders.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/score_pairs.py runs/bench_ctr_interim82 runs/bench_ctr_ft_interim82 \\
        --pair "sigeo | inherit 20% -- params | none" --pair "oneshot ft500 fresh | inherit 20% -- oneshot | inherit 20%" \\
        --out reports/bench_ctr/interim_82/pairs.csv

The folders' ``scores.csv`` must hold the same architectures in the same order (checked by key); a
column is looked up in the first folder that has it. Per pair: Kendall's tau-b of each column with the
truth (the negated seed-mean test log loss), the difference and its 95 % paired percentile bootstrap
interval (1000 resamples of the architectures, seed 0: ``variant_pairs._paired``). A diagnostic over
finished runs, not a speed benchmark.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from variant_pairs import _paired  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", help="finished comparison folders (scores.csv)")
    ap.add_argument("--pair", action="append", required=True, help="'COLUMN -- BASELINE COLUMN', repeatable")
    ap.add_argument("--out", required=True, help="pairs.csv to write")
    args = ap.parse_args(argv)
    frames = [pd.read_csv(Path(f) / "scores.csv") for f in args.folders]
    for f, fr in zip(args.folders[1:], frames[1:]):
        if list(fr["key"]) != list(frames[0]["key"]):
            sys.exit(f"score_pairs: {f}/scores.csv: other architectures or order than {args.folders[0]}")
    truth = -frames[0]["test_logloss_mean"].to_numpy(np.float64)

    def col(name: str) -> np.ndarray:
        for fr in frames:
            if name in fr:
                return fr[name].to_numpy(np.float64)
        sys.exit(f"score_pairs: no column {name!r} in {', '.join(args.folders)}")

    rows = []
    for p in args.pair:
        if " -- " not in p:
            sys.exit(f"score_pairs: --pair {p!r}: expected 'COLUMN -- BASELINE COLUMN'")
        x, b = (s.strip() for s in p.split(" -- ", 1))
        rows.append({"score": x, "baseline": b, **_paired(col(x), col(b), truth, 1000, 0.05, 0)})
    pd.DataFrame(rows).to_csv(args.out, index=False)
    print(pd.DataFrame(rows).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
