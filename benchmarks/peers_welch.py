"""The peer table with tests: every model of a ``benchmarks/peers.py`` per-run CSV against one reference.

    .venv/bin/python benchmarks/peers_welch.py RUNS.csv [--against MODEL] [--paired-against MODEL] [--md]

For each model: seeds, test log loss and AUC as mean ± sample sd over seeds, validation log loss, and
the difference to ``--against`` (default: the deepctr-torch model with the lowest mean test log loss,
i.e. the best peer) with Welch's t-test p (scipy, unequal variances; the two sides' seeds are
independent). ``--paired-against`` adds a paired t-test over the seeds both have, for recnas models
that share seeds with the reference (a recnas seed fixes the initialisation and the batch order, so
two recnas models with the same seed saw the batches in the same order).
"""

from __future__ import annotations

import argparse
import csv
import sys

import numpy as np
from scipy import stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs")
    p.add_argument("--against", default=None, help="reference model (default: the best deepctr-torch model)")
    p.add_argument("--paired-against", default=None, help="also a paired t-test over shared seeds against this model")
    p.add_argument("--md", action="store_true", help="a markdown table")
    a = p.parse_args(argv)
    try:
        rows = [r for r in csv.DictReader(open(a.runs)) if r["status"] == "ok"]
    except (OSError, KeyError) as e:
        print(f"peers_welch: {a.runs}: not a per-run CSV of benchmarks/peers.py ({e})", file=sys.stderr)
        return 2
    by: dict[str, dict[int, dict[str, float]]] = {}
    for r in rows:
        by.setdefault(r["model"], {})[int(r["seed"])] = {k: float(r[k]) for k in ("test_logloss", "test_auc", "val_logloss")}
    mean = lambda m, k: float(np.mean([v[k] for v in by[m].values()]))  # noqa: E731
    peers = [m for m in by if m.startswith("deepctr-torch")]
    ref = a.against or (min(peers, key=lambda m: mean(m, "test_logloss")) if peers else None)
    for name, m in (("--against", ref), ("--paired-against", a.paired_against)):
        if m is not None and m not in by:
            print(f"peers_welch: {name} {m!r} is not a model of {a.runs}; models: {sorted(by)}", file=sys.stderr)
            return 2

    def pm(m: str, k: str, nd: int) -> str:
        x = [v[k] for v in by[m].values()]
        return f"{np.mean(x):.{nd}f}" + (f" ± {np.std(x, ddof=1):.{nd}f}" if len(x) > 1 else "")

    def welch(m: str, k: str) -> str:
        x, y = [v[k] for v in by[m].values()], [v[k] for v in by[ref].values()]
        d = np.mean(x) - np.mean(y)
        if len(x) < 2 or len(y) < 2:
            return f"{d:+.4f} (p -)"
        return f"{d:+.4f} (p {stats.ttest_ind(x, y, equal_var=False).pvalue:.2f})"

    def paired(m: str, k: str) -> str:
        seeds = sorted(set(by[m]) & set(by[a.paired_against]))
        d = np.array([by[m][s][k] - by[a.paired_against][s][k] for s in seeds])
        if len(d) < 2:
            return "-"
        return f"{d.mean():+.4f} (p {stats.ttest_rel([by[m][s][k] for s in seeds], [by[a.paired_against][s][k] for s in seeds]).pvalue:.3f}, {len(d)} seeds)"

    head = ["model", "seeds", "test log loss", "test AUC", "val log loss", f"vs {ref}: log loss (Welch p)", "AUC (Welch p)"]
    if a.paired_against:
        head.append(f"vs {a.paired_against}: log loss (paired p)")
    body = []
    for m in sorted(by, key=lambda m: mean(m, "test_logloss")):
        cells = [m, str(len(by[m])), pm(m, "test_logloss", 5), pm(m, "test_auc", 4), pm(m, "val_logloss", 5)]
        cells += ["", ""] if m == ref or ref is None else [welch(m, "test_logloss"), welch(m, "test_auc")]
        if a.paired_against:
            cells.append("" if m == a.paired_against or m.startswith("deepctr") else paired(m, "test_logloss"))
        body.append(cells)
    if a.md:
        print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
        print("\n".join("| " + " | ".join(c) + " |" for c in body))
    else:
        w = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
        print("\n".join("  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in [head, *body]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
