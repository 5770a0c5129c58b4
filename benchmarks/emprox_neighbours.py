"""Why EmProx ranks near chance on bench_ctr: its held-out Kendall at several ``k`` and whether its
embedding keeps the embedding width (the benchmark's largest factor) together.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/emprox_neighbours.py \\
        --truth reports/bench_ctr/build/groundtruth.csv --space ctr_bench --k 60 10 5

For each ``k``: EmProx (the pipeline's defaults otherwise; the autoencoder from ``--cache``, trained
there on first use) fitted on the same 20 seeded ``ShuffleSplit`` training sets as ``recnas bench
compare``'s predictor sweep (seed 0) at 20 / 40 / 80 training architectures, its mean Kendall with the
truth (negated seed-mean test log loss) on the held-out ones; and, in the autoencoder's embedding of
all the table's architectures, the share of each one's 10 nearest neighbours with its embedding
width (0.5 is chance with two equally common widths). A diagnostic over a committed table, not a
speed benchmark: ``make bench`` does not run it.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from scipy.stats import kendalltau
from sklearn.model_selection import ShuffleSplit

from recnas.estimators import make_estimator
from recnas.space import SearchSpace
from recnas.space.spec import ArchSpec


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--truth", required=True, help="a ground-truth groundtruth.csv (arch, spec, test_logloss)")
    ap.add_argument("--space", required=True)
    ap.add_argument("--k", type=int, nargs="+", default=[60, 10, 5])
    ap.add_argument("--train", type=int, nargs="+", default=[20, 40, 80])
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--cache", default="data/cache/emprox")
    a = ap.parse_args(argv)
    t = pd.read_csv(a.truth).groupby("arch").agg(y=("test_logloss", "mean"), spec=("spec", "first")).sort_index()
    specs = [ArchSpec.from_json(s) for s in t["spec"]]
    y = -t["y"].to_numpy()
    space = SearchSpace.load(a.space)
    width = np.array([s.embedding_dim for s in specs])
    print("| k | " + " | ".join(f"held-out Kendall, {n} training" for n in a.train) + " | 10 nearest with the same width |")
    print("|---|" + "---|" * (len(a.train) + 1))
    for k in a.k:
        p = make_estimator("emprox", k=k, cache_dir=a.cache)
        cells = []
        for n in a.train:
            taus = []
            for tr, te in ShuffleSplit(n_splits=a.splits, train_size=n, random_state=0).split(np.arange(len(y))):
                p.fit([specs[i] for i in tr], y[tr], space=space)
                taus.append(kendalltau(p.predict([specs[i] for i in te]), y[te]).statistic)
            cells.append(f"{np.mean(taus):.3f} ± {np.std(taus):.3f}")
        e = p.embed(specs)
        d = ((e[:, None] - e[None]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        near = np.argsort(d, axis=1)[:, :10]
        share = float((width[near] == width[:, None]).mean())
        print(f"| {k} | " + " | ".join(cells) + f" | {share:.2f} |", flush=True)


if __name__ == "__main__":
    main()
