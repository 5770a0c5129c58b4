"""Paired recipe differences by model group, from ``benchmarks/recipe_study.py`` CSVs (validation only).

    .venv/bin/python benchmarks/recipe_groups.py STUDY.csv [STUDY.csv ...] [--group NAME=arch,arch ...]

For every recipe after the CSV's first one: the mean paired difference of validation log loss to the
first recipe over the (architecture, seed) pairs both finished, with its 95 % t interval (scipy) and
how many pairs it lowered, for each ``--group`` (default: the ``norm: none`` baselines ``dlrm``,
``deepfm_lib``, ``dcn_lib`` against every other architecture, i.e. the LayerNorm ones), and for all.
"""

from __future__ import annotations

import argparse
import csv
import sys

import numpy as np
from scipy import stats

NORM_NONE = ("dlrm", "deepfm_lib", "dcn_lib")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("csv", nargs="+")
    p.add_argument("--group", action="append", default=None, metavar="NAME=arch,arch",
                   help="a named group of architectures (default: norm none = dlrm, deepfm_lib, dcn_lib; and the rest)")
    a = p.parse_args(argv)
    for path in a.csv:
        try:
            rows = [r for r in csv.DictReader(open(path)) if r["status"] == "ok"]
        except (OSError, KeyError) as e:
            print(f"recipe_groups: {path}: not a recipe_study CSV ({e})", file=sys.stderr)
            return 2
        v = {(r["recipe"], r["arch"], r["seed"]): float(r["val_logloss"]) for r in rows}
        recipes = list(dict.fromkeys(r["recipe"] for r in rows))
        archs = set(r["arch"] for r in rows)
        if a.group:
            groups = {g.partition("=")[0]: set(g.partition("=")[2].split(",")) for g in a.group}
        else:
            groups = {"norm none": set(NORM_NONE) & archs, "LayerNorm (the others)": archs - set(NORM_NONE)}
        groups["all"] = archs
        print(f"{path} (validation log loss; paired over (architecture, seed))")
        for rec in recipes[1:]:
            for name, members in groups.items():
                d = np.array([v[(rec, arch, s)] - x for (r0, arch, s), x in v.items()
                              if r0 == recipes[0] and arch in members and (rec, arch, s) in v])
                if len(d) < 2:
                    continue
                lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
                print(f"  {rec} - {recipes[0]} | {name}: {d.mean():+.4f} [{lo:+.4f}, {hi:+.4f}], "
                      f"{int((d < 0).sum())}/{len(d)} pairs lower")
    return 0


if __name__ == "__main__":
    sys.exit(main())
